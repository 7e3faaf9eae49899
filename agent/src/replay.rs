//! `swarmd replay`: rule files and a capture file in, eve.json alert lines and a summary
//! out. This is the I/O edge around `detect` (which reads nothing itself), and the same
//! code the conformance tests run, so what they prove is what teams get.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::detect::eve;
use crate::detect::rules::{Classification, ErrorKind, RuleError, RuleLoader, RuleSet, Vars};
use crate::detect::{Engine, EngineConfig, EngineStats, RuleRef};
use crate::sensor::pcap_file::{CaptureError, CaptureFile};

/// What can stop a replay.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// A rule file or folder could not be read.
    #[error("{path}: cannot read rules: {source}")]
    RulePath {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Capture(#[from] CaptureError),
    /// Writing eve.json failed.
    #[error("cannot write eve output: {0}")]
    Output(std::io::Error),
}

/// Reads rule files, and the `*.rules` files of folders (sorted by name), into one set.
pub fn load_rules(
    paths: &[PathBuf],
    vars: Vars,
    classes: Classification,
) -> Result<RuleSet, ReplayError> {
    let mut loader = RuleLoader::new(vars, classes);
    for path in paths {
        let read_error = |source| ReplayError::RulePath {
            path: path.display().to_string(),
            source,
        };
        if path.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(read_error)?
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|ext| ext == "rules") && p.is_file())
                .collect();
            files.sort();
            for file in files {
                add_file(&mut loader, &file)?;
            }
        } else {
            add_file(&mut loader, path)?;
        }
    }
    Ok(loader.finish())
}

fn add_file(loader: &mut RuleLoader, path: &Path) -> Result<(), ReplayError> {
    let bytes = std::fs::read(path).map_err(|source| ReplayError::RulePath {
        path: path.display().to_string(),
        source,
    })?;
    // Rule files are ASCII in practice; a stray Latin-1 byte should cost one rule at most,
    // not the file, so decode lossily and let the parser reject what it cannot read.
    let text = String::from_utf8_lossy(&bytes);
    loader.add_text(&path.display().to_string(), &text);
    Ok(())
}

/// What a replay did.
#[derive(Debug, Default)]
pub struct ReplayReport {
    pub stats: EngineStats,
    /// Alerts per `(gid, sid)`.
    pub alerts_by_sid: BTreeMap<(u32, u32), u64>,
    /// A read error after some frames had been processed (a truncated file).
    pub truncated: Option<String>,
}

/// Runs `rules` over the capture at `pcap`, writing one eve.json line per alert to `eve`.
pub fn run(
    pcap: &Path,
    rules: &RuleSet,
    config: EngineConfig,
    eve_out: &mut dyn Write,
) -> Result<ReplayReport, ReplayError> {
    let mut capture = CaptureFile::open(pcap)?;
    let mut engine = Engine::new(rules.rules.clone(), config);
    let mut report = ReplayReport::default();
    let mut detections = Vec::new();
    loop {
        let frame = match capture.next_frame() {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(err) => {
                report.truncated = Some(err.to_string());
                break;
            }
        };
        detections.clear();
        engine.process_into(frame.time, frame.linktype, frame.data, &mut detections);
        for detection in &detections {
            if let RuleRef::Packet { gid, sid, .. } = &detection.alert.rule {
                *report.alerts_by_sid.entry((*gid, *sid)).or_default() += 1;
            }
            let mut line = eve::alert_line(detection);
            line.push('\n');
            eve_out
                .write_all(line.as_bytes())
                .map_err(ReplayError::Output)?;
        }
    }
    eve_out.flush().map_err(ReplayError::Output)?;
    report.stats = engine.stats();
    Ok(report)
}

/// The summary `swarmd replay` prints on stderr.
pub fn summary(rules: &RuleSet, report: &ReplayReport) -> String {
    let stats = &report.stats;
    let mut out = format!(
        "rules: {}\npackets: {} ({} bytes), {} not IP, {} malformed, {} bad checksum, {} unknown link type\nflows: {} created, {} timed out, {} evicted\nalerts: {}\n",
        rules.summary,
        stats.packets,
        stats.bytes,
        stats.not_ip,
        stats.malformed,
        stats.bad_checksum,
        stats.unknown_linktype,
        stats.flows.created,
        stats.flows.timed_out,
        stats.flows.evicted,
        stats.alerts,
    );
    for ((gid, sid), count) in &report.alerts_by_sid {
        out.push_str(&format!("  {gid}:{sid}  {count}\n"));
    }
    if let Some(truncated) = &report.truncated {
        out.push_str(&format!("warning: capture ends early: {truncated}\n"));
    }
    out
}

/// Errors as `FILE:LINE:COL: message`, one per line.
pub fn error_lines(errors: &[RuleError]) -> String {
    errors.iter().map(|e| format!("{e}\n")).collect()
}

/// `swarmctl rules test --json`'s object, keys in the documented order:
/// `{"loaded", "unsupported", "invalid", "errors": [{"file", "line", "col", "message"}]}`.
pub fn rules_test_json(rules: &RuleSet) -> String {
    #[derive(serde::Serialize)]
    struct Report<'a> {
        loaded: usize,
        unsupported: usize,
        invalid: usize,
        errors: Vec<ErrorEntry<'a>>,
    }
    #[derive(serde::Serialize)]
    struct ErrorEntry<'a> {
        file: &'a str,
        line: u32,
        col: u32,
        message: &'a str,
    }
    let report = Report {
        loaded: rules.summary.loaded,
        unsupported: rules.summary.unsupported,
        invalid: rules.summary.invalid,
        errors: rules
            .errors
            .iter()
            .map(|e| ErrorEntry {
                file: &e.file,
                line: e.line,
                col: e.col,
                message: &e.message,
            })
            .collect(),
    };
    // Plain strings and numbers always serialize.
    serde_json::to_string(&report).unwrap_or_default()
}

/// Whether an error is about something unsupported rather than wrong.
pub fn is_unsupported(error: &RuleError) -> bool {
    error.kind == ErrorKind::Unsupported
}
