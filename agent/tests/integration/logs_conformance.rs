//! Log scenarios against external material: fail2ban's annotated test logs and CrowdSec's
//! hub scenario tests, read from `../shared/conformance/logs/` (never edited).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use swarmguard_agent::detect::scenario::spec::BucketSpec;
use swarmguard_agent::detect::scenario::{
    Engine, EngineOptions, Event, Scenario, load_paths, parse_ip,
};

fn conformance() -> PathBuf {
    let near = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance");
    if near.exists() {
        near
    } else {
        PathBuf::from("/work/shared/conformance")
    }
}

fn shipped() -> Vec<Scenario> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules/scenarios");
    let (scenarios, errors) = load_paths(&[dir]);
    assert!(errors.is_empty(), "{errors:?}");
    scenarios
}

fn pick(scenarios: &[Scenario], names: &[&str]) -> Vec<Scenario> {
    names
        .iter()
        .map(|name| {
            scenarios
                .iter()
                .find(|s| s.name == *name)
                .unwrap_or_else(|| panic!("no shipped scenario {name}"))
                .clone()
        })
        .collect()
}

/// An overflow as the hub's asserts state it: scenario, source address, events counted.
type Overflow = (String, IpAddr, u32);

/// Runs scenarios over a whole file; per 1-based line, the addresses that line counted for,
/// and every overflow.
fn run_file(scenarios: Vec<Scenario>, text: &str) -> (BTreeMap<usize, Vec<IpAddr>>, Vec<Overflow>) {
    let names: Vec<String> = scenarios.iter().map(|s| s.name.clone()).collect();
    let mut engine = Engine::new(
        scenarios,
        EngineOptions {
            report_matches: true,
            ..EngineOptions::default()
        },
    );
    let source = engine.source_for_all("test.log");
    let now = SystemTime::now();
    let mut matched: BTreeMap<usize, Vec<IpAddr>> = BTreeMap::new();
    let mut overflows = Vec::new();
    let mut events = Vec::new();
    for (index, line) in text.lines().enumerate() {
        events.clear();
        engine.feed(source, line, None, now, &mut events);
        for event in &events {
            match event {
                Event::Match { ip, .. } => matched.entry(index + 1).or_default().push(*ip),
                Event::Overflow {
                    scenario,
                    ip,
                    count,
                    ..
                } => overflows.push((names[*scenario].clone(), *ip, *count)),
            }
        }
    }
    (matched, overflows)
}

/// One fail2ban log, the shipped scenarios that cover its attack, and the annotated lines
/// we knowingly do not follow (by a substring of the line, or `@N` for line N), with the
/// reason.
struct Fail2banCase {
    file: &'static str,
    scenarios: &'static [&'static str],
    unsupported: &'static [(&'static str, &'static str)],
}

const FAIL2BAN: &[Fail2banCase] = &[
    Fail2banCase {
        file: "sshd",
        scenarios: &["sshd-bf", "sshd-probe"],
        unsupported: &[(
            "sshd[5672]: Disconnected from authenticating user admin 192.0.2.6",
            "expected only of fail2ban's normal mode; sshd-bf and sshd-probe together follow its aggressive mode, where the same line (sshd[19320]) matches",
        )],
    },
    Fail2banCase {
        file: "nginx-http-auth",
        scenarios: &["http-auth-bf"],
        unsupported: &[
            (
                "SSL_do_handshake() failed",
                "fail2ban's fallback mode: TLS handshake errors are not authentication failures",
            ),
            (
                "SSL_read() failed",
                "fail2ban's fallback mode: TLS errors are not authentication failures",
            ),
        ],
    },
    Fail2banCase {
        file: "apache-auth",
        scenarios: &["http-auth-bf"],
        unsupported: &[(
            "@138",
            "expected only of fail2ban's normal mode (mod_evasive denials); http-auth-bf follows its aggressive mode, where the same line (156) matches",
        )],
    },
    Fail2banCase {
        file: "nginx-bad-request",
        scenarios: &["http-4xx-flood"],
        unsupported: &[],
    },
    Fail2banCase {
        file: "nginx-botsearch",
        scenarios: &["http-4xx-flood", "http-probing"],
        unsupported: &[],
    },
    Fail2banCase {
        file: "apache-botsearch",
        scenarios: &["http-probing"],
        unsupported: &[],
    },
    Fail2banCase {
        file: "nginx-forbidden",
        scenarios: &["http-probing"],
        unsupported: &[],
    },
    Fail2banCase {
        file: "apache-nohome",
        scenarios: &["http-probing"],
        unsupported: &[],
    },
    Fail2banCase {
        file: "apache-noscript",
        scenarios: &["http-noscript"],
        unsupported: &[],
    },
    Fail2banCase {
        file: "apache-overflows",
        scenarios: &["http-exploit"],
        unsupported: &[],
    },
    Fail2banCase {
        file: "apache-shellshock",
        scenarios: &["http-exploit"],
        unsupported: &[],
    },
    Fail2banCase {
        file: "apache-modsecurity",
        scenarios: &["http-exploit"],
        unsupported: &[],
    },
    Fail2banCase {
        file: "nginx-limit-req",
        scenarios: &["http-limit-req"],
        unsupported: &[],
    },
];

/// fail2ban logs of nginx/Apache for which no scenario ships, and why.
const FAIL2BAN_NOT_COVERED: &[(&str, &str)] = &[
    (
        "apache-badbots",
        "a list of e-mail harvesters' user agents; no scenario ships one (fail2ban's list is GPL)",
    ),
    (
        "apache-fakegooglebot",
        "needs reverse DNS of the client, which the agent never does for log lines",
    ),
    (
        "apache-pass",
        "fail2ban's port-knocking allow action, not an attack",
    ),
];

#[test]
fn fail2ban_annotated_logs() {
    let all = shipped();
    let base = conformance().join("logs/fail2ban/logs");
    let mut failures = Vec::new();
    for case in FAIL2BAN {
        let text = std::fs::read_to_string(base.join(case.file)).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let (matched, _) = run_file(pick(&all, case.scenarios), &text);
        let (mut pass, mut fail, mut unsupported) = (0, 0, Vec::new());
        for (index, line) in lines.iter().enumerate() {
            let Some(json) = line.strip_prefix("# failJSON:") else {
                continue;
            };
            let expect: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
            // The annotation is for the next line that is not a comment.
            let Some(target) = (index + 1..lines.len()).find(|&i| !lines[i].starts_with('#'))
            else {
                continue;
            };
            let target_line = lines[target];
            // Constraints are read as fail2ban's aggressive mode, which our scenarios follow.
            if let Some(constraint) = expect.get("constraint").and_then(|c| c.as_str())
                && constraint.contains("!= 'aggressive'")
            {
                continue;
            }
            // A needle is a substring of the line, or "@N" for line N.
            if let Some((_, reason)) =
                case.unsupported
                    .iter()
                    .find(|(needle, _)| match needle.strip_prefix('@') {
                        Some(number) => number.parse() == Ok(target + 1),
                        None => target_line.contains(needle),
                    })
            {
                unsupported.push(format!("line {}: {reason}", target + 1));
                continue;
            }
            let got = matched.get(&(target + 1)).cloned().unwrap_or_default();
            let should = expect["match"].as_bool().unwrap();
            let ok = if should {
                match expect.get("host").and_then(|h| h.as_str()) {
                    Some(host) => match parse_ip(host) {
                        Some(ip) => got.contains(&ip),
                        None => {
                            unsupported.push(format!(
                                "line {}: host \"{host}\" is a DNS name; addresses in logs are never resolved",
                                target + 1
                            ));
                            continue;
                        }
                    },
                    None => !got.is_empty(),
                }
            } else {
                got.is_empty()
            };
            if ok {
                pass += 1;
            } else {
                fail += 1;
                failures.push(format!(
                    "{}:{}: expected match={should} host={:?}, got {got:?}: {target_line}",
                    case.file,
                    target + 1,
                    expect.get("host")
                ));
            }
        }
        println!(
            "fail2ban {}: {pass}/{} passed, {fail} failed, {} unsupported",
            case.file,
            pass + fail,
            unsupported.len()
        );
        for note in unsupported {
            println!("    unsupported {note}");
        }
    }
    for (file, reason) in FAIL2BAN_NOT_COVERED {
        println!("fail2ban {file}: not covered ({reason})");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The bucket parameters of a CrowdSec scenario, from the hub's `scenarios/*.yaml`.
fn crowdsec_bucket(name: &str) -> BucketSpec {
    let dir = conformance().join("logs/crowdsec-hub/scenarios");
    for entry in std::fs::read_dir(dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for document in text.split("\n---") {
            let field = |key: &str| {
                document.lines().find_map(|l| {
                    l.strip_prefix(key)
                        .map(|v| v.trim().trim_matches('"').trim_matches('\'').to_owned())
                })
            };
            if field("name:").as_deref() != Some(name) {
                continue;
            }
            let duration = |v: String| humantime::parse_duration(&v).unwrap();
            return BucketSpec {
                capacity: field("capacity:").unwrap().parse().unwrap(),
                leak: duration(field("leakspeed:").unwrap()),
                distinct: field("distinct:").map(|d| {
                    match d.as_str() {
                        "evt.Meta.target_user" => "user",
                        "evt.Meta.http_path" => "path",
                        "evt.Parsed.http_args" => "query",
                        other => panic!("no field for {other}"),
                    }
                    .to_owned()
                }),
                blackhole: field("blackhole:").map(duration).unwrap_or(Duration::ZERO),
            };
        }
    }
    panic!("no CrowdSec scenario {name}");
}

/// Expected overflows of a hub test: (scenario, ip, count), sorted.
fn crowdsec_expected(test: &str) -> Vec<Overflow> {
    let path = conformance().join(format!("logs/crowdsec-hub/tests/{test}/scenario.assert"));
    let text = std::fs::read_to_string(path).unwrap();
    type Partial = (Option<String>, Option<IpAddr>, Option<u32>);
    let mut results: BTreeMap<usize, Partial> = BTreeMap::new();
    let index = |line: &str| -> Option<usize> {
        let start = line.find("results[")? + 8;
        line[start..].split(']').next()?.parse().ok()
    };
    let quoted = |line: &str| line.split('"').nth(1).map(str::to_owned);
    let mut total = None;
    for line in text.lines() {
        if let Some(n) = line.strip_prefix("len(results) == ") {
            total = n.trim().parse::<usize>().ok();
        }
        let Some(i) = index(line) else { continue };
        let entry = results.entry(i).or_default();
        if line.contains("in results[") && line.contains("GetSources()") {
            entry.1 = quoted(line).and_then(|ip| ip.parse().ok());
        } else if line.contains("Alert.GetScenario() == ") {
            entry.0 = quoted(line);
        } else if line.contains("GetEventsCount() == ") {
            entry.2 = line
                .rsplit("== ")
                .next()
                .and_then(|n| n.trim().parse().ok());
        }
    }
    let mut expected: Vec<_> = results
        .into_values()
        .map(|(s, ip, n)| (s.unwrap(), ip.unwrap(), n.unwrap()))
        .collect();
    assert_eq!(
        Some(expected.len()),
        total,
        "{test}: assert file not understood"
    );
    expected.sort();
    expected
}

#[test]
fn crowdsec_hub_scenario_tests() {
    let all = shipped();
    // Hub test -> (CrowdSec scenario, the shipped scenario whose lines it counts). The
    // bucket comes from the hub's scenarios/ folder, except http-sensitive-files, which the
    // snapshot lacks: its hub values (capacity 4, leak 5s, distinct path, blackhole 5m)
    // are written here.
    let cases: &[(&str, &[(&str, &str)])] = &[
        (
            "ssh-bf",
            &[
                ("crowdsecurity/ssh-bf", "sshd-bf"),
                ("crowdsecurity/ssh-bf_user-enum", "sshd-bf"),
            ],
        ),
        (
            "ssh-slow-bf",
            &[
                ("crowdsecurity/ssh-slow-bf", "sshd-slow-bf"),
                ("crowdsecurity/ssh-bf", "sshd-bf"),
            ],
        ),
        (
            "nginx-http-generic-bf",
            &[
                ("crowdsecurity/http-generic-bf", "http-auth-bf"),
                ("LePresidente/http-generic-401-bf", "http-401-bf"),
            ],
        ),
        (
            "nginx-http-sensitive-files",
            &[("crowdsecurity/http-sensitive-files", "http-probing")],
        ),
        (
            "nginx-http-sqli-probing",
            &[(
                "crowdsecurity/http-sqli-probbing-detection",
                "http-sqli-probing",
            )],
        ),
    ];
    let mut failures = Vec::new();
    for (test, mapping) in cases {
        let scenarios: Vec<Scenario> = mapping
            .iter()
            .map(|(crowdsec, ours)| {
                let mut scenario = pick(&all, &[ours]).remove(0);
                scenario.name = (*crowdsec).to_owned();
                scenario.bucket = if *crowdsec == "crowdsecurity/http-sensitive-files" {
                    BucketSpec {
                        capacity: 4,
                        leak: Duration::from_secs(5),
                        distinct: Some("path".to_owned()),
                        blackhole: Duration::from_secs(300),
                    }
                } else if *crowdsec == "crowdsecurity/http-sqli-probbing-detection" {
                    crowdsec_bucket("crowdsecurity/http-sqli-probbing-detection")
                } else {
                    crowdsec_bucket(crowdsec)
                };
                scenario
            })
            .collect();
        let dir = conformance().join(format!("logs/crowdsec-hub/tests/{test}"));
        let text = std::fs::read_to_string(dir.join(format!("{test}.log"))).unwrap();
        let (_, mut got) = run_file(scenarios, &text);
        got.sort();
        let expected = crowdsec_expected(test);
        let verdict = if got == expected { "pass" } else { "FAIL" };
        println!("crowdsec {test}: {verdict}: expected {expected:?}, got {got:?}");
        if got != expected {
            failures.push(format!("{test}: expected {expected:?}, got {got:?}"));
        }
    }
    for test in ["sshd-refused-conn", "ssh-generic-test", "http-generic-test"] {
        println!(
            "crowdsec {test}: not covered (a test-only or refused-connection scenario; none ships)"
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
