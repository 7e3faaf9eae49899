//! Benchmark (not a test): lines per second, on one core, of the shipped log scenarios over
//! a large sshd log and a large nginx log, beside `fail2ban-regex` (Debian's fail2ban) with
//! the equivalent filter on the same files, in the same run. Prints ours, theirs and the
//! ratio. The logs are built as `../shared/ANCHORS.md` describes: the fail2ban test logs
//! without `#` and blank lines, repeated (sshd: 155 lines x 3,226 = 500,030 lines).
//!
//! `cargo bench -p swarmguard-agent --bench log_scenarios`; `BENCH_RUNS=N` (default 3)
//! runs each side N times and reports the median. Without `fail2ban-regex` installed (or
//! with `BENCH_THEIRS=0`), only our figures are printed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use swarmguard_agent::detect::scenario::{Engine, EngineOptions, Event, Scenario, load_paths};

fn conformance() -> PathBuf {
    let near = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance");
    if near.exists() {
        near
    } else {
        PathBuf::from("/work/shared/conformance")
    }
}

/// The non-comment, non-blank lines of fail2ban test logs, repeated to about `target` lines.
fn build(files: &[&str], target: usize, out: &Path) -> usize {
    let base = conformance().join("logs/fail2ban/logs");
    let mut lines = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(base.join(file)).expect("fail2ban test log");
        lines.extend(
            text.lines()
                .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
                .map(str::to_owned),
        );
    }
    let repeats = target.div_ceil(lines.len());
    let mut text = String::new();
    for _ in 0..repeats {
        for line in &lines {
            text.push_str(line);
            text.push('\n');
        }
    }
    std::fs::write(out, text).expect("write the benchmark log");
    lines.len() * repeats
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

/// Our lines per second over `path`, one thread; and the lines that counted.
fn ours(scenarios: &[Scenario], path: &Path, runs: usize) -> (f64, u64, u64) {
    let text = std::fs::read_to_string(path).expect("read the benchmark log");
    let mut rates = Vec::new();
    let (mut matched, mut overflows) = (0, 0);
    for _ in 0..runs {
        let mut engine = Engine::new(scenarios.to_vec(), EngineOptions::default());
        let source = engine.source_for_all(&path.to_string_lossy());
        let now = SystemTime::now();
        let mut events: Vec<Event> = Vec::new();
        let start = Instant::now();
        let mut lines = 0u64;
        for line in text.lines() {
            events.clear();
            engine.feed(source, line, None, now, &mut events);
            lines += 1;
        }
        let elapsed = start.elapsed();
        rates.push(lines as f64 / elapsed.as_secs_f64());
        matched = engine.stats().matched;
        overflows = engine.stats().overflows;
    }
    (median(rates), matched, overflows)
}

/// fail2ban-regex's lines per second over `path` with `filter`, pinned to one core when
/// `taskset` exists; and its "matched" count.
fn theirs(filter: &str, path: &Path, lines: usize, runs: usize) -> Option<(f64, String)> {
    if std::env::var("BENCH_THEIRS").is_ok_and(|v| v == "0") {
        return None;
    }
    if Command::new("fail2ban-regex")
        .arg("--version")
        .output()
        .is_err()
    {
        return None;
    }
    let pinned = Command::new("taskset").arg("--version").output().is_ok();
    let mut rates = Vec::new();
    let mut summary = String::new();
    for _ in 0..runs {
        let mut command = if pinned {
            let mut c = Command::new("taskset");
            c.args(["-c", "0", "fail2ban-regex"]);
            c
        } else {
            Command::new("fail2ban-regex")
        };
        command
            .arg(path)
            .arg(filter)
            .args(["--print-no-missed", "--print-no-ignored"]);
        let start = Instant::now();
        let output = command.output().ok()?;
        let elapsed = start.elapsed().max(Duration::from_millis(1));
        if !output.status.success() {
            eprintln!(
                "fail2ban-regex failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            return None;
        }
        rates.push(lines as f64 / elapsed.as_secs_f64());
        summary = String::from_utf8_lossy(&output.stdout)
            .lines()
            .find(|l| l.starts_with("Lines:"))
            .unwrap_or("")
            .to_owned();
    }
    Some((median(rates), summary))
}

fn main() {
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .max(1);
    let dir = tempfile::tempdir().expect("temp dir");
    let scenarios_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules/scenarios");
    let (all, errors) = load_paths(&[scenarios_dir]);
    assert!(errors.is_empty(), "{errors:?}");
    let pick = |names: &[&str]| -> Vec<Scenario> {
        all.iter()
            .filter(|s| names.contains(&s.name.as_str()))
            .cloned()
            .collect()
    };

    let cases: [(&str, &[&str], &[&str], &str); 2] = [
        (
            "sshd",
            &["sshd"],
            &["sshd-bf", "sshd-slow-bf", "sshd-probe"],
            "/etc/fail2ban/filter.d/sshd.conf[mode=aggressive]",
        ),
        (
            "nginx",
            &[
                "nginx-http-auth",
                "nginx-botsearch",
                "nginx-bad-request",
                "nginx-forbidden",
            ],
            &[
                "http-auth-bf",
                "http-401-bf",
                "http-4xx-flood",
                "http-probing",
                "http-sqli-probing",
            ],
            "/etc/fail2ban/filter.d/nginx-http-auth.conf",
        ),
    ];
    println!("log scenarios benchmark: median of {runs} run(s), one core each side");
    for (name, logs, scenario_names, filter) in cases {
        let path = dir.path().join(format!("big-{name}.log"));
        let lines = build(logs, 500_000, &path);
        let scenarios = pick(scenario_names);
        let (rate, matched, overflows) = ours(&scenarios, &path, runs);
        println!(
            "{name}: {lines} lines; swarmguard ({} scenarios): {:.0} lines/s, {matched} counted, {overflows} overflows",
            scenarios.len(),
            rate
        );
        match theirs(filter, &path, lines, runs) {
            Some((their_rate, summary)) => println!(
                "{name}: fail2ban-regex {filter}: {their_rate:.0} lines/s ({summary}); ratio {:.1}x",
                rate / their_rate
            ),
            None => println!("{name}: fail2ban-regex not available (apt-get install fail2ban)"),
        }
    }
}
