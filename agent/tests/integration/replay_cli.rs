//! `swarmd replay` and `swarmctl rules test`, run as the real binaries in temporary
//! folders: exit codes, eve output, summaries and the JSON shape are contracts.

use std::path::Path;
use std::process::Command;

use crate::default_rules::rules_dir;
use crate::fixtures::{Frame, T0, tcp, write_pcap};

fn swarmd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_swarmd"))
}

fn swarmctl() -> Command {
    Command::new(env!("CARGO_BIN_EXE_swarmctl"))
}

fn null_scan(path: &Path) {
    let frames: Vec<Frame> = (0..3)
        .map(|i| Frame {
            micros: T0 + i * 1000,
            data: tcp(
                [203, 0, 113, 9],
                4000,
                [10, 1, 1, 1],
                22 + i as u16,
                0,
                1,
                b"",
            ),
        })
        .collect();
    write_pcap(path, &frames);
}

#[test]
fn replay_writes_eve_and_a_summary_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("scan.pcap");
    null_scan(&pcap);
    let eve = dir.path().join("eve.json");
    let output = swarmd()
        .args(["replay", "--pcap"])
        .arg(&pcap)
        .arg("--rules")
        .arg(rules_dir())
        .arg("--eve")
        .arg(&eve)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("packets: 3"), "{stderr}");
    assert!(stderr.contains("1:9000001  1"), "{stderr}");
    assert!(
        stderr.contains("loaded, 0 unsupported, 0 invalid"),
        "{stderr}"
    );
    let lines = std::fs::read_to_string(&eve).unwrap();
    let line: serde_json::Value = serde_json::from_str(lines.lines().next().unwrap()).unwrap();
    assert_eq!(line["event_type"], "alert");
    assert_eq!(line["src_ip"], "203.0.113.9");
    assert_eq!(line["alert"]["signature_id"], 9000001);
    assert_eq!(line["alert"]["category"], "Attempted Information Leak");
    assert_eq!(line["alert"]["severity"], 2);
}

#[test]
fn replay_var_overrides_home_net() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("scan.pcap");
    null_scan(&pcap);
    let output = swarmd()
        .args(["replay", "--pcap"])
        .arg(&pcap)
        .arg("--rules")
        .arg(rules_dir())
        .args(["--var", "HOME_NET=[192.0.2.0/24]"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    // To stdout, and nothing: the scanned host is no longer ours.
    assert!(
        output.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
}

#[test]
fn replay_exit_codes_and_eve_always_created() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("scan.pcap");
    null_scan(&pcap);
    let bad_rules = dir.path().join("bad.rules");
    std::fs::write(
        &bad_rules,
        "alert http any any -> any any (sid:1;)\nnot a rule\n",
    )
    .unwrap();
    let eve = dir.path().join("eve.json");
    let run = |pcap: &Path, rules: &Path| {
        swarmd()
            .args(["replay", "--pcap"])
            .arg(pcap)
            .arg("--rules")
            .arg(rules)
            .arg("--eve")
            .arg(&eve)
            .output()
            .unwrap()
    };
    let no_rules = run(&pcap, &bad_rules);
    assert_eq!(no_rules.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&no_rules.stderr);
    assert!(
        stderr.contains("bad.rules:1:7: unsupported protocol \"http\""),
        "{stderr}"
    );
    assert!(stderr.contains("bad.rules:2:11: expected '('"), "{stderr}");
    assert!(
        stderr.contains("0 loaded, 1 unsupported, 1 invalid"),
        "{stderr}"
    );
    assert_eq!(std::fs::read(&eve).unwrap(), b"");

    std::fs::remove_file(&eve).unwrap();
    let missing_rules = run(&pcap, &dir.path().join("absent.rules"));
    assert_eq!(missing_rules.status.code(), Some(2));
    assert!(eve.exists());

    let garbage = dir.path().join("garbage.pcap");
    std::fs::write(&garbage, b"this is not a capture").unwrap();
    let unreadable = run(&garbage, &rules_dir());
    assert_eq!(unreadable.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unreadable.stderr).contains("garbage.pcap"));
}

#[test]
fn replay_reads_pcapng_and_sees_the_hydra_brute_force() {
    let dir = tempfile::tempdir().unwrap();
    // A pcapng file despite its name; the attacker 240.0.1.3 (hydra-4_tasks.txt) attacks 240.125.0.2, which
    // the default HOME_NET does not cover.
    let file =
        crate::conformance::conformance_dir().join("pcaps/ssh-bruteforce/hydra-4_tasks.pcap");
    assert_eq!(&std::fs::read(&file).unwrap()[..4], b"\x0a\x0d\x0d\x0a");
    let eve = dir.path().join("eve.json");
    let output = swarmd()
        .args(["replay", "--pcap"])
        .arg(&file)
        .arg("--rules")
        .arg(rules_dir())
        .args(["--var", "HOME_NET=240.125.0.0/16", "--eve"])
        .arg(&eve)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("1:9000101"),
        "the SSH brute force is seen: {stderr}"
    );
    let eve = std::fs::read_to_string(&eve).unwrap();
    assert!(
        eve.lines()
            .all(|line| line.contains("\"src_ip\":\"240.0.1.3\"")),
        "{eve}"
    );
}

#[test]
fn rules_test_lints_with_locations_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.rules");
    std::fs::write(
        &good,
        "alert tcp any any -> any 22 (msg:\"x\"; flags:S; sid:1;)\n",
    )
    .unwrap();
    let bad = dir.path().join("bad.rules");
    std::fs::write(
        &bad,
        "alert tcp any any -> any any (msg:\"x\"; dns.query; sid:2;)\nalert tcp any any -> any any (msg:\"x\"; ttl:999; sid:3;)\n",
    )
    .unwrap();
    let ok = swarmctl()
        .args(["rules", "test"])
        .arg(&good)
        .output()
        .unwrap();
    assert_eq!(ok.status.code(), Some(0));
    let failing = swarmctl()
        .args(["rules", "test"])
        .arg(&good)
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(failing.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&failing.stdout);
    assert!(
        stdout.contains(&format!(
            "{}:1:40: unsupported keyword \"dns.query\"",
            bad.display()
        )),
        "{stdout}"
    );
    let json = swarmctl()
        .args(["rules", "test", "--json"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(json.status.code(), Some(1));
    let text = String::from_utf8(json.stdout).unwrap();
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(value["loaded"], 0);
    assert_eq!(value["unsupported"], 1);
    assert_eq!(value["invalid"], 1);
    assert_eq!(value["errors"][1]["line"], 2);
    assert_eq!(value["errors"][1]["col"], 40);
    assert_eq!(value["errors"][0]["file"], bad.display().to_string());
    assert!(
        value["errors"][1]["message"]
            .as_str()
            .unwrap()
            .contains("999")
    );
    assert!(
        text.starts_with("{\"loaded\":"),
        "documented key order: {text}"
    );
}

#[test]
fn rules_reload_is_not_implemented_yet() {
    let output = swarmctl().args(["rules", "reload"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
}
