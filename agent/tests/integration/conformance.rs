//! Conformance against material we did not write: the Suricata project's own regression
//! cases (`suricata-verify`), run through the same code as `swarmd replay`, and the
//! Emerging Threats Open rules, which must load without a panic.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use swarmguard_agent::detect::flow::FlowConfig;
use swarmguard_agent::detect::rules::{Classification, ErrorKind, Vars};
use swarmguard_agent::detect::{ChecksumMode, EngineConfig};
use swarmguard_agent::replay;

/// `../shared/conformance` next to the workspace, or the machine-wide copy.
pub(crate) fn conformance_dir() -> PathBuf {
    let beside = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance");
    if beside.exists() {
        beside
    } else {
        PathBuf::from("/work/shared/conformance")
    }
}

/// Cases we do not claim to pass, and why. Each is still run: one that starts passing must
/// leave this list.
const UNSUPPORTED: &[(&str, &str)] = &[(
    "bug-6244-tcp-rst-with-data",
    "sid 4's content \"Please Let Me In!\" spans four TCP segments; matching is per packet, \
     without stream reassembly (docs/rules.md)",
)];

/// Runs one case the way `swarmd replay` would, returning alert counts by sid and in total.
fn run_case(dir: &Path, case: &serde_json::Value) -> (BTreeMap<u64, u64>, u64) {
    let pcap = dir.join(case["pcap"].as_str().unwrap());
    let rules_path = dir.join(case["rules"].as_str().unwrap());
    let args: Vec<String> = case["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect();
    let args = args.join(" ");
    let rules = replay::load_rules(&[rules_path], Vars::default(), Classification::builtin())
        .expect("rules are readable");
    let config = EngineConfig {
        checksum: if args.contains("-k none") {
            ChecksumMode::No
        } else {
            ChecksumMode::Auto
        },
        flow: FlowConfig {
            midstream: args.contains("stream.midstream=true"),
            ..FlowConfig::default()
        },
        ..EngineConfig::default()
    };
    let mut eve = Vec::new();
    replay::run(&pcap, &rules, config, &mut eve).expect("capture is readable");
    let mut by_sid = BTreeMap::new();
    let mut total = 0;
    for line in String::from_utf8(eve).unwrap().lines() {
        let value: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(value["event_type"], "alert");
        *by_sid
            .entry(value["alert"]["signature_id"].as_u64().unwrap())
            .or_default() += 1;
        total += 1;
    }
    (by_sid, total)
}

#[test]
fn suricata_verify_cases_pass_except_the_ones_listed_as_unsupported() {
    let root = conformance_dir().join("suricata-verify");
    let cases: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(root.join("expected.json")).unwrap())
            .unwrap();
    assert_eq!(cases.len(), 28);
    let (mut passed, mut failed, mut unsupported) = (0, Vec::new(), 0);
    let mut unexpectedly_passing = Vec::new();
    for case in &cases {
        let name = case["test"].as_str().unwrap();
        let (by_sid, total) = run_case(&root.join("tests"), case);
        let mismatches: Vec<String> = case["expected"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|expected| {
                let want = expected["count"].as_u64().unwrap();
                let (label, got) = match expected["sid"].as_u64() {
                    Some(sid) => (format!("sid {sid}"), by_sid.get(&sid).copied().unwrap_or(0)),
                    None => ("all alerts".to_owned(), total),
                };
                (got != want).then(|| format!("{label}: expected {want}, got {got}"))
            })
            .collect();
        let claimed_unsupported = UNSUPPORTED.iter().find(|(case, _)| *case == name);
        match (claimed_unsupported, mismatches.is_empty()) {
            (Some(_), true) => unexpectedly_passing.push(name.to_owned()),
            (Some((_, why)), false) => {
                unsupported += 1;
                println!("unsupported {name}: {why}");
            }
            (None, true) => passed += 1,
            (None, false) => failed.push(format!("{name}: {}", mismatches.join("; "))),
        }
    }
    println!(
        "{passed} passed, {} failed, {unsupported} unsupported",
        failed.len()
    );
    assert!(failed.is_empty(), "failing cases:\n{}", failed.join("\n"));
    assert!(
        unexpectedly_passing.is_empty(),
        "these pass now; remove them from UNSUPPORTED: {unexpectedly_passing:?}"
    );
}

#[test]
fn every_et_open_file_loads_without_panics_and_errors_point_at_rules() {
    let dir = conformance_dir().join("rules/et-open");
    let (classes, class_errors) =
        Classification::parse(&std::fs::read_to_string(dir.join("classification.config")).unwrap());
    assert!(class_errors.is_empty(), "{class_errors:?}");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "rules"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 12);
    let (mut loaded, mut unsupported, mut invalid) = (0, 0, 0);
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let set = replay::load_rules(std::slice::from_ref(file), Vars::default(), classes.clone())
            .unwrap();
        let s = set.summary;
        println!(
            "{}: {} loaded, {} unsupported, {} invalid",
            file.file_name().unwrap().to_string_lossy(),
            s.loaded,
            s.unsupported,
            s.invalid
        );
        let lines: Vec<&str> = text.lines().collect();
        for error in &set.errors {
            // Every error names a real line that holds a rule.
            let line = lines[error.line as usize - 1];
            assert!(
                line.trim_start().starts_with("alert") || line.trim_start().starts_with("drop"),
                "{error}"
            );
            assert!(
                error.col >= 1 && error.col as usize <= line.len() + 1,
                "{error}"
            );
            if error.kind == ErrorKind::Unsupported {
                assert!(error.message.starts_with("unsupported "), "{error}");
            }
        }
        loaded += s.loaded;
        unsupported += s.unsupported;
        invalid += s.invalid;
    }
    println!("et-open: {loaded} loaded, {unsupported} unsupported, {invalid} invalid");
    // ET rules are valid Suricata: whatever we do not load must be unsupported, not invalid.
    assert_eq!(invalid, 0);
    assert!(loaded > 700, "{loaded}");
}

#[test]
fn et_open_with_any_home_net_rejects_the_rule_whose_group_becomes_empty() {
    // ANCHORS.md: with HOME_NET=any and EXTERNAL_NET=any, Suricata fails to load sid
    // 2011802 because its address becomes `!any`. So do we, as an invalid rule.
    let dir = conformance_dir().join("rules/et-open");
    let mut vars = Vars::default();
    vars.set("HOME_NET", "any");
    vars.set("EXTERNAL_NET", "any");
    let files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "rules"))
        .collect();
    let set = replay::load_rules(&files, vars, Classification::builtin()).unwrap();
    let invalid: Vec<String> = set
        .errors
        .iter()
        .filter(|e| e.kind == ErrorKind::Invalid)
        .map(ToString::to_string)
        .collect();
    println!("{invalid:?}");
    assert!(set.rules.iter().all(|r| r.sid != 2011802));
}
