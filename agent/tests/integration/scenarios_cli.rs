//! `swarmctl scenarios test`, run as the real binary on files in a temp dir.

use std::process::Command;

const SCENARIO: &str = r#"
name = "demo-bf"
severity = "high"
sources = ["/var/log/auth.log"]

[bucket]
capacity = 2
leak = "1m"

[[pattern]]
regex = 'Failed password for (?P<user>\S+) from <IP>'
"#;

fn swarmctl(args: &[&str]) -> (u8, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_swarmctl"))
        .args(args)
        .output()
        .unwrap();
    (
        output.status.code().unwrap() as u8,
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

#[test]
fn json_lines_name_lines_fields_and_overflows() {
    let dir = tempfile::tempdir().unwrap();
    let scenarios = dir.path().join("scenarios.d");
    std::fs::create_dir(&scenarios).unwrap();
    std::fs::write(scenarios.join("demo.toml"), SCENARIO).unwrap();
    std::fs::write(
        scenarios.join("broken.toml"),
        "name = \"x\"\nseverity = 3\n",
    )
    .unwrap();
    let log = dir.path().join("auth.log");
    std::fs::write(
        &log,
        "# a comment line still counts as line 1\n\
         Jan  1 00:00:01 h sshd[1]: Failed password for root from 192.0.2.7 port 1 ssh2\n\
         Jan  1 00:00:02 h sshd[1]: Accepted password for bob from 192.0.2.8 port 1 ssh2\n\
         Jan  1 00:00:03 h sshd[1]: Failed password for admin from 192.0.2.7 port 1 ssh2\n\
         Jan  1 00:00:04 h sshd[1]: Failed password for guest from 192.0.2.7 port 1 ssh2\n",
    )
    .unwrap();
    let (code, out, err) = swarmctl(&[
        "scenarios",
        "test",
        "--log",
        log.to_str().unwrap(),
        "--scenarios",
        scenarios.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let objects: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        objects,
        [
            serde_json::json!({"line": 2, "scenario": "demo-bf", "fields": {"ip": "192.0.2.7", "user": "root"}}),
            serde_json::json!({"line": 4, "scenario": "demo-bf", "fields": {"ip": "192.0.2.7", "user": "admin"}}),
            serde_json::json!({"line": 5, "scenario": "demo-bf", "fields": {"ip": "192.0.2.7", "user": "guest"}}),
            serde_json::json!({"overflow": "demo-bf", "ip": "192.0.2.7", "count": 3}),
        ]
    );
    // The bad file is reported as FILE:LINE: message, and did not stop the good one.
    let broken = scenarios.join("broken.toml");
    assert!(err.contains(&format!("{}:2: ", broken.display())), "{err}");
}

#[test]
fn human_output_and_unknown_scenario() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("demo.toml"), SCENARIO).unwrap();
    let log = dir.path().join("auth.log");
    std::fs::write(
        &log,
        "sshd[1]: Failed password for root from 192.0.2.7 port 1 ssh2\n",
    )
    .unwrap();
    let base = [
        "scenarios",
        "test",
        "--log",
        log.to_str().unwrap(),
        "--scenarios",
        dir.path().to_str().unwrap(),
    ];
    let (code, out, _) = swarmctl(&base);
    assert_eq!(code, 0);
    assert!(
        out.contains("line 1: demo-bf user=root ip=192.0.2.7"),
        "{out}"
    );
    let mut args = base.to_vec();
    args.extend(["--scenario", "nope"]);
    let (code, _, err) = swarmctl(&args);
    assert_eq!(code, 64);
    assert!(err.contains("no scenario named \"nope\""), "{err}");
}

#[test]
fn the_shipped_scenarios_load() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../rules/scenarios");
    let (scenarios, errors) =
        swarmguard_agent::detect::scenario::load_paths(&[std::path::PathBuf::from(dir)]);
    assert!(errors.is_empty(), "{errors:?}");
    assert!(scenarios.len() >= 10, "{}", scenarios.len());
}
