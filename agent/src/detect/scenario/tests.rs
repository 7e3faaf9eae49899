//! Engine tests: sessions, buckets and blackholes driven by lines.

use std::path::Path;
use std::time::{Duration, SystemTime};

use super::*;
use crate::detect::{Action, Severity};

const SSH: &str = r#"
name = "ssh-test"
severity = "high"
action = "drop"
sources = ["/var/log/auth.log"]
prefix = 'sshd\[(?P<pid>\d+)\]: '

[session]
key = "pid"

[bucket]
capacity = 2
leak = "10s"
blackhole = "1m"

[[pattern]]
regex = 'Failed password for (?P<user>\S+) from <IP>'
[[pattern]]
regex = 'Disconnecting: Too many authentication failures'
[[pattern]]
kind = "pending"
regex = 'pam_unix\(sshd:auth\): authentication failure;.* rhost=<IP>(?:\s+user=(?P<user>\S+))?'
[[pattern]]
kind = "success"
regex = 'Accepted \S+ for (?P<user>\S+) from <IP>'
[[pattern]]
kind = "close"
regex = 'Connection closed by <IP>'
[[pattern]]
kind = "info"
regex = 'Connection from <IP>'
"#;

fn engine(text: &str) -> (Engine, SourceId) {
    let scenario = parse_scenario(Path::new("t.toml"), text).unwrap();
    let mut engine = Engine::new(
        vec![scenario],
        EngineOptions {
            report_matches: true,
            ..EngineOptions::default()
        },
    );
    let source = engine.source("/var/log/auth.log");
    (engine, source)
}

fn at(seconds: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + seconds)
}

/// Feeds lines (time = index in seconds) and returns, per line, "M ip" for a match and
/// "O ip count" for an overflow.
fn run(engine: &mut Engine, source: SourceId, lines: &[&str]) -> Vec<Vec<String>> {
    lines
        .iter()
        .enumerate()
        .map(|(i, line)| {
            let mut out = Vec::new();
            engine.feed(source, line, Some(at(i as u64)), at(i as u64), &mut out);
            out.iter()
                .map(|event| match event {
                    Event::Match { ip, .. } => format!("M {ip}"),
                    Event::Overflow { ip, count, .. } => format!("O {ip} {count}"),
                })
                .collect()
        })
        .collect()
}

#[test]
fn failures_fill_the_bucket_and_overflow_raises_an_alert() {
    let (mut engine, source) = engine(SSH);
    let line = "sshd[1]: Failed password for root from 192.0.2.1 port 22 ssh2";
    let mut out = Vec::new();
    for i in 0..3 {
        engine.feed(source, line, Some(at(i)), at(i), &mut out);
    }
    let overflow = out
        .iter()
        .find_map(|e| match e {
            Event::Overflow { alert, count, .. } => Some((alert, *count)),
            _ => None,
        })
        .unwrap();
    assert_eq!(overflow.1, 3);
    let alert = overflow.0;
    assert_eq!(alert.rule.id(), "ssh-test");
    assert_eq!(alert.action, Action::Drop);
    assert_eq!(alert.severity, Severity::High);
    assert_eq!(alert.src, Some("192.0.2.1".parse().unwrap()));
    assert_eq!(alert.time, at(2));
    assert_eq!(
        alert.evidence,
        Evidence::LogLine {
            source: "/var/log/auth.log".into(),
            line_sha256: sha256_hex(line),
        }
    );
    // Blackholed for a minute after the overflow.
    engine.feed(source, line, Some(at(10)), at(10), &mut out);
    assert_eq!(engine.stats().blackholed, 1);
}

#[test]
fn fields_are_reported() {
    let (mut engine, source) = engine(SSH);
    let mut out = Vec::new();
    engine.feed(
        source,
        "sshd[7]: Failed password for admin from ::ffff:192.0.2.9 port 22 ssh2",
        None,
        at(0),
        &mut out,
    );
    let Event::Match { fields, .. } = &out[0] else {
        panic!("{out:?}")
    };
    let fields: Vec<_> = fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
    assert_eq!(fields, ["pid=7", "user=admin", "ip=192.0.2.9"]);
}

#[test]
fn a_close_counts_only_after_a_failure_in_its_session() {
    let (mut engine, source) = engine(SSH);
    let got = run(
        &mut engine,
        source,
        &[
            "sshd[1]: Connection closed by 192.0.2.1 [preauth]",
            "sshd[2]: Failed password for root from 192.0.2.2 port 22 ssh2",
            "sshd[3]: Connection closed by 192.0.2.2 [preauth]",
            "sshd[2]: Connection closed by 192.0.2.2 [preauth]",
        ],
    );
    assert_eq!(got[0], Vec::<String>::new());
    assert_eq!(got[1], ["M 192.0.2.2"]);
    assert_eq!(got[2], Vec::<String>::new(), "another pid");
    assert_eq!(got[3], ["M 192.0.2.2"]);
}

#[test]
fn a_line_without_address_takes_it_from_its_session() {
    let (mut engine, source) = engine(SSH);
    let got = run(
        &mut engine,
        source,
        &[
            "sshd[5]: Connection from 192.0.2.5 port 4000",
            "sshd[5]: Disconnecting: Too many authentication failures [preauth]",
            "sshd[6]: Disconnecting: Too many authentication failures [preauth]",
            "sshd[6]: Connection closed by 192.0.2.6 [preauth]",
        ],
    );
    assert_eq!(got[0], Vec::<String>::new());
    assert_eq!(got[1], ["M 192.0.2.5"]);
    assert_eq!(got[2], Vec::<String>::new(), "address not known yet");
    assert_eq!(got[3], ["M 192.0.2.6"]);
}

#[test]
fn pending_failures_count_on_another_user_and_are_forgotten_by_success() {
    let (mut engine, source) = engine(SSH);
    let pam = |pid: u32, user: &str| {
        format!(
            "sshd[{pid}]: pam_unix(sshd:auth): authentication failure; logname= uid=0 rhost=192.0.2.{pid} user={user}"
        )
    };
    let lines = [
        pam(1, "rda"),
        pam(1, "rda"),
        "sshd[1]: Accepted password for rda from 192.0.2.1 port 1 ssh2".to_owned(),
        "sshd[1]: Connection closed by 192.0.2.1".to_owned(),
        pam(2, "root"),
        pam(2, "sudoer"),
        "sshd[2]: Accepted password for known from 192.0.2.2 port 1 ssh2".to_owned(),
    ];
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    let got = run(&mut engine, source, &lines);
    let matched: Vec<bool> = got.iter().map(|events| !events.is_empty()).collect();
    assert_eq!(matched, [false, false, false, false, false, true, true]);
}

#[test]
fn ignore_regexes_and_bad_addresses() {
    let text = SSH.replace("prefix =", "ignore = ['from 10\\.']\nprefix =");
    let (mut engine, source) = engine(&text);
    let got = run(
        &mut engine,
        source,
        &[
            "sshd[1]: Failed password for root from 10.0.0.1 port 22 ssh2",
            "sshd[2]: Failed password for root from 999.1.1.1 port 22 ssh2",
        ],
    );
    assert!(got.iter().all(Vec::is_empty), "{got:?}");
    assert_eq!(engine.stats().bad_address, 1);
}

#[test]
fn sources_select_scenarios() {
    let (mut engine, _) = engine(SSH);
    let other = engine.source("/var/log/nginx/access.log");
    let mut out = Vec::new();
    engine.feed(
        other,
        "sshd[1]: Failed password for root from 192.0.2.1 port 22 ssh2",
        None,
        at(0),
        &mut out,
    );
    assert!(out.is_empty());
    let all = engine.source_for_all("/tmp/x.log");
    engine.feed(
        all,
        "sshd[1]: Failed password for root from 192.0.2.1 port 22 ssh2",
        None,
        at(0),
        &mut out,
    );
    assert_eq!(out.len(), 1);
}

#[test]
fn the_line_time_drives_the_bucket() {
    let (mut engine, source) = engine(SSH);
    let mut out = Vec::new();
    // Three failures 20 s apart by their own timestamps, fed at the same instant: the
    // bucket leaks between them and never overflows.
    for clock in ["10:00:00", "10:00:20", "10:00:40"] {
        let line = format!(
            "2024-05-01T{clock}Z host sshd[9]: Failed password for x from 192.0.2.9 port 1 ssh2"
        );
        engine.feed(source, &line, None, at(0), &mut out);
    }
    assert!(
        !out.iter().any(|e| matches!(e, Event::Overflow { .. })),
        "{out:?}"
    );
}

#[test]
fn addresses_are_parsed_leniently_and_canonically() {
    assert_eq!(parse_ip("192.030.0.6"), Some("192.30.0.6".parse().unwrap()));
    assert_eq!(parse_ip("::ffff:1.2.3.4"), Some("1.2.3.4".parse().unwrap()));
    assert_eq!(
        parse_ip("2001:db8::1"),
        Some("2001:db8::1".parse().unwrap())
    );
    assert_eq!(parse_ip("example.com"), None);
    assert_eq!(parse_ip("1.2.3.4.5"), None);
}
