//! Packet-engine benchmark (not a test): builds `big.pcap` as `../shared/ANCHORS.md`
//! describes, then replays it through `swarmd replay` and, when installed, Suricata 7, both
//! pinned to CPU 0 with `HOME_NET=any`/`EXTERNAL_NET=any`, over (a) the bundled rules and
//! (b) the ET-open rules this engine loads. Prints packets/s, Mbit/s, the ratio and whether
//! the alert counts by sid agree.
//!
//! `cargo bench -p swarmguard-agent --bench replay` (release build). `BENCH_RUNS` (default
//! 3) sets the runs per engine and ruleset (the median is reported); `BENCH_DIR` where
//! `big.pcap` and the outputs go (default `target/bench`).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use swarmguard_agent::detect::rules::{Classification, Vars};
use swarmguard_agent::replay;

const REPEATS: usize = 60;
const GAP_MICROS: u64 = 1_000 * 1_000_000;

fn conformance() -> PathBuf {
    let beside = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance");
    if beside.exists() {
        beside
    } else {
        PathBuf::from("/work/shared/conformance")
    }
}

/// The inputs ANCHORS.md lists, in a fixed order.
fn inputs() -> Vec<PathBuf> {
    let pcaps = conformance().join("pcaps");
    let mut files = Vec::new();
    for dir in ["nmap-scans", "ppa"] {
        let mut found: Vec<PathBuf> = std::fs::read_dir(pcaps.join(dir))
            .expect("conformance pcaps")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "pcap"))
            .collect();
        found.sort();
        files.extend(found);
    }
    files.push(pcaps.join("ssh-bruteforce/hydra-1_tasks.pcap"));
    files.push(pcaps.join("ssh-bruteforce/hydra-4_tasks.pcap"));
    files
}

/// Reads every input once (libpcap reads the pcapng ones too) and writes them `REPEATS`
/// times as one microsecond pcap, timestamps monotonic with a 1000 s gap between files.
fn build_big_pcap(path: &Path) -> (u64, u64) {
    let mut files: Vec<Vec<(u64, Vec<u8>)>> = Vec::new();
    for input in inputs() {
        let mut capture = pcap::Capture::from_file(&input).expect("readable input");
        let mut frames = Vec::new();
        while let Ok(packet) = capture.next_packet() {
            let ts = packet.header.ts;
            let micros = ts.tv_sec as u64 * 1_000_000 + ts.tv_usec as u64;
            frames.push((micros, packet.data.to_vec()));
        }
        files.push(frames);
    }
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).expect("big.pcap"));
    let header: [u32; 6] = [0xa1b2_c3d4, 0x0004_0002, 0, 0, 262_144, 1];
    for word in header {
        out.write_all(&word.to_le_bytes()).expect("write");
    }
    let (mut packets, mut bytes) = (0u64, 0u64);
    let mut clock: u64 = 1_700_000_000 * 1_000_000;
    for _ in 0..REPEATS {
        for frames in &files {
            let Some(first) = frames.first().map(|f| f.0) else {
                continue;
            };
            let base = clock + GAP_MICROS;
            for (micros, data) in frames {
                clock = clock.max(base + micros.saturating_sub(first));
                let len = data.len() as u32;
                for word in [
                    (clock / 1_000_000) as u32,
                    (clock % 1_000_000) as u32,
                    len,
                    len,
                ] {
                    out.write_all(&word.to_le_bytes()).expect("write");
                }
                out.write_all(data).expect("write");
                packets += 1;
                bytes += data.len() as u64;
            }
        }
    }
    out.flush().expect("flush");
    (packets, bytes)
}

fn any_vars() -> Vars {
    let mut vars = Vars::default();
    vars.set("HOME_NET", "any");
    vars.set("EXTERNAL_NET", "any");
    vars
}

/// Writes the rules of `paths` that this engine loads (with `HOME_NET=any`) to `out`, as
/// their original lines, and returns how many.
fn loadable_rules(paths: &[PathBuf], out: &Path) -> usize {
    let set = replay::load_rules(paths, any_vars(), Classification::builtin()).expect("rules");
    let mut texts: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut lines = Vec::new();
    for rule in &set.rules {
        let file = texts.entry(rule.location.file.clone()).or_insert_with(|| {
            std::fs::read_to_string(&rule.location.file)
                .expect("rule file")
                .lines()
                .map(str::to_owned)
                .collect()
        });
        lines.push(file[rule.location.line as usize - 1].clone());
    }
    std::fs::write(out, lines.join("\n") + "\n").expect("rules file");
    set.rules.len()
}

fn count_by_sid(eve: &Path) -> BTreeMap<u64, u64> {
    let mut counts = BTreeMap::new();
    let text = std::fs::read_to_string(eve).unwrap_or_default();
    for line in text.lines() {
        let Ok(value) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if value["event_type"] == "alert" {
            *counts
                .entry(value["alert"]["signature_id"].as_u64().unwrap_or(0))
                .or_default() += 1;
        }
    }
    counts
}

fn median(mut runs: Vec<Duration>) -> Duration {
    runs.sort();
    runs[runs.len() / 2]
}

/// CPU time (user + system) of this process's waited-for children, from `/proc/self/stat`
/// (`cutime` and `cstime`, in clock ticks of 1/100 s on Linux). On a shared, busy machine
/// it says more than wall time, which includes waiting for the pinned core.
fn children_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; cutime and cstime are fields 16 and 17.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<u64> = after
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    let ticks = fields.get(13).copied().unwrap_or(0) + fields.get(14).copied().unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

/// Median wall time and median CPU time over `runs`.
fn time_runs(runs: usize, mut command: impl FnMut() -> Command) -> (Duration, Duration) {
    let (mut wall, mut cpu) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let cpu_before = children_cpu();
        let start = Instant::now();
        let status = command().status().expect("engine runs");
        assert!(status.success(), "engine failed: {status}");
        wall.push(start.elapsed());
        cpu.push(children_cpu().saturating_sub(cpu_before));
    }
    (median(wall), median(cpu))
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is taken from the command line.
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let dir = std::env::var("BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench"));
    std::fs::create_dir_all(&dir).expect("bench dir");
    let big = dir.join("big.pcap");
    let (packets, bytes) = build_big_pcap(&big);
    println!(
        "big.pcap: {packets} packets, {:.0} MB captured, {} bytes/packet",
        bytes as f64 / 1e6,
        bytes / packets.max(1)
    );

    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let bundled = dir.join("bundled.rules");
    let bundled_count = loadable_rules(&[root.join("rules/suricata")], &bundled);
    let et_dir = conformance().join("rules/et-open");
    let mut et_files: Vec<PathBuf> = std::fs::read_dir(&et_dir)
        .expect("et-open")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "rules"))
        .collect();
    et_files.sort();
    let et = dir.join("et-open-loadable.rules");
    let et_count = loadable_rules(&et_files, &et);
    let classification = root.join("rules/suricata/classification.config");
    let swarmd = env!("CARGO_BIN_EXE_swarmd");
    let suricata = Command::new("suricata").arg("-V").output().is_ok();
    if !suricata {
        println!("suricata is not installed: only our figures are printed");
    }

    for (name, rules, count) in [
        ("bundled", &bundled, bundled_count),
        ("et-open", &et, et_count),
    ] {
        let ours_eve = dir.join(format!("ours-{name}.json"));
        let (ours, ours_cpu) = time_runs(runs, || {
            let mut command = Command::new("taskset");
            command
                .args(["-c", "0", swarmd, "replay", "--pcap"])
                .arg(&big)
                .arg("--rules")
                .arg(rules)
                .args(["--var", "HOME_NET=any", "--var", "EXTERNAL_NET=any"])
                .args(["--checksum", "no", "--eve"])
                .arg(&ours_eve)
                .stderr(std::process::Stdio::null());
            command
        });
        let rate = |d: Duration| packets as f64 / d.as_secs_f64();
        let mbit = |d: Duration| bytes as f64 * 8.0 / d.as_secs_f64() / 1e6;
        println!(
            "[{name}, {count} rules] swarmd:   wall {:>6.2} s  {:>9.0} packets/s  {:>6.0} Mbit/s | cpu {:>6.2} s  {:>9.0} packets/s",
            ours.as_secs_f64(),
            rate(ours),
            mbit(ours),
            ours_cpu.as_secs_f64(),
            rate(ours_cpu)
        );
        if !suricata {
            continue;
        }
        let log = dir.join(format!("suricata-{name}"));
        let _ = std::fs::remove_dir_all(&log);
        std::fs::create_dir_all(&log).expect("log dir");
        let (theirs, theirs_cpu) = time_runs(runs, || {
            let _ = std::fs::remove_file(log.join("eve.json"));
            let mut command = Command::new("taskset");
            command
                .args(["-c", "0", "suricata", "-c", "/etc/suricata/suricata.yaml"])
                .arg("--set")
                .arg(format!("classification-file={}", classification.display()))
                .args([
                    "--set",
                    "vars.address-groups.HOME_NET=any",
                    "--set",
                    "vars.address-groups.EXTERNAL_NET=any",
                    "--runmode",
                    "single",
                    "-k",
                    "none",
                    "-r",
                ])
                .arg(&big)
                .arg("-S")
                .arg(rules)
                .arg("-l")
                .arg(&log)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null());
            command
        });
        println!(
            "[{name}, {count} rules] suricata: wall {:>6.2} s  {:>9.0} packets/s  {:>6.0} Mbit/s | cpu {:>6.2} s  {:>9.0} packets/s",
            theirs.as_secs_f64(),
            rate(theirs),
            mbit(theirs),
            theirs_cpu.as_secs_f64(),
            rate(theirs_cpu)
        );
        println!(
            "[{name}] ours/theirs packet rate: {:.2} by wall time, {:.2} by CPU time",
            theirs.as_secs_f64() / ours.as_secs_f64(),
            theirs_cpu.as_secs_f64() / ours_cpu.as_secs_f64().max(0.001)
        );
        let ours_counts = count_by_sid(&ours_eve);
        let theirs_counts = count_by_sid(&log.join("eve.json"));
        let total = |c: &BTreeMap<u64, u64>| c.values().sum::<u64>();
        if ours_counts == theirs_counts {
            println!(
                "[{name}] alert counts by sid agree: {} alerts from {} sids",
                total(&ours_counts),
                ours_counts.len()
            );
        } else {
            println!("[{name}] alert counts by sid DIFFER (sid: ours / suricata):");
            let sids: std::collections::BTreeSet<u64> = ours_counts
                .keys()
                .chain(theirs_counts.keys())
                .copied()
                .collect();
            for sid in sids {
                let (a, b) = (
                    ours_counts.get(&sid).copied().unwrap_or(0),
                    theirs_counts.get(&sid).copied().unwrap_or(0),
                );
                println!("  {sid}: {a} / {b}{}", if a == b { "" } else { "  <--" });
            }
        }
    }
}
