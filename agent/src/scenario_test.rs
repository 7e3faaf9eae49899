//! `swarmctl scenarios test --log FILE`: runs log scenarios over a file and explains the
//! outcome, as `fail2ban-regex` and `cscli explain` do: which line matched which scenario
//! with which fields, and which buckets overflowed. Its `--json` output is a contract that
//! scripts and tests rely on:
//!
//! ```text
//! {"line": 12, "scenario": "sshd-bf", "fields": {"ip": "192.0.2.1", "user": "root"}}
//! {"overflow": "sshd-bf", "ip": "192.0.2.1", "count": 6}
//! ```
//!
//! `line` is the 1-based physical line number in the file, comment lines included.

use std::io::Write;
use std::time::SystemTime;

use serde_json::{Map, Value, json};

use crate::cli::ScenariosTestArgs;
use crate::detect::scenario::{Engine, EngineOptions, Event, load_paths, time::rfc3339};

/// Exit status when the log cannot be read or no scenario loaded.
const EXIT_FAILURE: u8 = 1;
/// Exit status for a `--scenario` that names no loaded scenario.
const EXIT_USAGE: u8 = 64;

/// Runs the command; returns the exit status. Bad scenario files are reported on `err` as
/// `FILE:LINE: message` and the others still run.
pub fn run(
    args: &ScenariosTestArgs,
    as_json: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> u8 {
    let (mut scenarios, errors) = load_paths(std::slice::from_ref(&args.scenarios));
    for error in &errors {
        let _ = writeln!(err, "{error}");
    }
    if let Some(name) = &args.scenario {
        scenarios.retain(|s| &s.name == name);
        if scenarios.is_empty() {
            let _ = writeln!(
                err,
                "swarmctl scenarios test: no scenario named \"{name}\" in {}",
                args.scenarios.display()
            );
            return EXIT_USAGE;
        }
    }
    if scenarios.is_empty() {
        let _ = writeln!(
            err,
            "swarmctl scenarios test: no scenario loaded from {}",
            args.scenarios.display()
        );
        return EXIT_FAILURE;
    }
    let bytes = match std::fs::read(&args.log) {
        Ok(bytes) => bytes,
        Err(error) => {
            let _ = writeln!(
                err,
                "swarmctl scenarios test: cannot read {}: {error}",
                args.log.display()
            );
            return EXIT_FAILURE;
        }
    };
    if !as_json {
        let _ = writeln!(
            out,
            "{} scenario(s) from {}, {} file(s) with errors; reading {}",
            scenarios.len(),
            args.scenarios.display(),
            errors.len(),
            args.log.display()
        );
    }
    let names: Vec<String> = scenarios.iter().map(|s| s.name.clone()).collect();
    let mut engine = Engine::new(
        scenarios,
        EngineOptions {
            report_matches: true,
            ..EngineOptions::default()
        },
    );
    let source = engine.source_for_all(&args.log.to_string_lossy());
    let now = SystemTime::now();
    let mut events = Vec::new();
    let mut lines = 0usize;
    let mut matched_lines = 0usize;
    let mut overflows = 0usize;
    let mut physical: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
    if bytes.ends_with(b"\n") {
        physical.pop(); // the empty remainder after a final newline is not a line
    }
    for (index, raw) in physical.into_iter().enumerate() {
        lines += 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let text = String::from_utf8_lossy(raw);
        events.clear();
        engine.feed(source, &text, None, now, &mut events);
        let number = index + 1;
        if events.iter().any(|e| matches!(e, Event::Match { .. })) {
            matched_lines += 1;
        }
        for event in &events {
            let written = match event {
                Event::Match {
                    scenario, fields, ..
                } => {
                    if as_json {
                        let fields: Map<String, Value> = fields
                            .iter()
                            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                            .collect();
                        writeln!(
                            out,
                            "{}",
                            json!({"line": number, "scenario": names[*scenario], "fields": fields})
                        )
                    } else {
                        let fields: Vec<String> =
                            fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
                        writeln!(
                            out,
                            "line {number}: {} {}",
                            names[*scenario],
                            fields.join(" ")
                        )
                    }
                }
                Event::Overflow {
                    scenario,
                    ip,
                    count,
                    alert,
                } => {
                    overflows += 1;
                    if as_json {
                        writeln!(
                            out,
                            "{}",
                            json!({"overflow": names[*scenario], "ip": ip.to_string(), "count": count})
                        )
                    } else {
                        writeln!(
                            out,
                            "line {number}: OVERFLOW {} ip={ip} count={count} at {} severity={} action={}",
                            names[*scenario],
                            rfc3339(alert.time),
                            alert.severity,
                            alert.action.as_str()
                        )
                    }
                }
            };
            if written.is_err() {
                return EXIT_FAILURE; // stdout closed (a pipe to `head`): nothing left to do
            }
        }
    }
    if !as_json {
        let stats = engine.stats();
        let _ = writeln!(
            out,
            "{lines} lines, {matched_lines} matched, {overflows} overflow(s); {} ignored by blackhole, {} duplicate(s), {} unusable address(es)",
            stats.blackholed, stats.duplicates, stats.bad_address
        );
    }
    0
}
