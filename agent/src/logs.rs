//! Log detection as the daemon runs it: the log sensor follows the files (and journal units)
//! the scenarios name, one task runs the scenario engine over their lines, and overflows
//! leave as [`Alert`]s; the eve sensor adds Suricata's alerts to the same stream. This is
//! the glue between `sensor` and `detect`, with the metrics of both.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use prometheus::{IntCounter, IntCounterVec, IntGauge};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::api::Metrics;
use crate::config::Config;
use crate::detect::Alert;
use crate::detect::scenario::{Engine, EngineOptions, EngineStats, Event, load_paths};
use crate::sensor::eve::{self, EveSensor};
use crate::sensor::log::{
    self, FollowOptions, LogLine, LogSensor, LogSensorOptions, StartAt, journal,
};

/// The running log detection; [`LogDetection::stop`] ends it.
#[derive(Debug)]
pub struct LogDetection {
    files: Option<LogSensor>,
    eve: Option<EveSensor>,
    engine: Option<JoinHandle<()>>,
    /// Hands reloaded scenarios to the engine task.
    swap: Option<mpsc::Sender<Vec<crate::detect::scenario::Scenario>>>,
    /// The log sources being followed: a reload cannot add new ones.
    sources: BTreeSet<String>,
    /// How many scenarios are in use.
    scenarios: usize,
}

/// What [`LogDetection::reload`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reloaded {
    pub applied: bool,
    pub scenarios: usize,
    pub errors: Vec<String>,
}

impl LogDetection {
    /// How many scenarios are in use.
    pub fn scenarios(&self) -> usize {
        self.scenarios
    }

    /// Reads the scenario paths again. A scenario that does not load keeps the old ones in
    /// use; so does a scenario reading a log source that is not followed yet (following
    /// new files needs a restart), and the errors say so.
    pub async fn reload(&mut self, config: &Config) -> Reloaded {
        let (scenarios, errors) = load_paths(&config.scenario_paths);
        let mut errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
        let new_sources: Vec<String> = scenarios
            .iter()
            .flat_map(|s| s.file_sources().map(str::to_owned))
            .filter(|source| !self.sources.contains(source))
            .collect();
        for source in new_sources {
            errors.push(format!(
                "{source}: a new log source; restart the agent to follow it"
            ));
        }
        let keep = Reloaded {
            applied: false,
            scenarios: self.scenarios,
            errors: errors.clone(),
        };
        if !errors.is_empty() {
            return keep;
        }
        let count = scenarios.len();
        match &self.swap {
            Some(swap) if swap.send(scenarios).await.is_ok() => {
                self.scenarios = count;
                Reloaded {
                    applied: true,
                    scenarios: count,
                    errors,
                }
            }
            _ if count == 0 => Reloaded {
                applied: true,
                scenarios: 0,
                errors,
            },
            _ => Reloaded {
                errors: vec!["no scenario ran at start: restart the agent to run some".to_owned()],
                ..keep
            },
        }
    }

    /// Stops the sensors; the engine task ends when their lines are drained.
    pub async fn stop(self) {
        if let Some(files) = self.files {
            let _ = tokio::task::spawn_blocking(move || files.stop()).await;
        }
        if let Some(eve) = self.eve {
            let _ = tokio::task::spawn_blocking(move || eve.stop()).await;
        }
        if let Some(engine) = self.engine {
            engine.abort();
            let _ = engine.await;
        }
    }
}

struct Counters {
    lines: IntCounter,
    truncated: IntCounter,
    rotations: IntCounter,
    matches: IntCounter,
    overflows: IntCounterVec,
    dropped: IntCounterVec,
    sessions: IntGauge,
    buckets: IntGauge,
}

/// Loads the scenarios, starts following their sources and eve.json, and sends every
/// alert to `alerts`. Scenario files that do not load are logged and skipped.
pub fn start(
    config: &Config,
    metrics: &Metrics,
    alerts: mpsc::Sender<Alert>,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<LogDetection> {
    let (scenarios, errors) = load_paths(&config.scenario_paths);
    for error in &errors {
        tracing::warn!(%error, "scenario not loaded");
    }
    tracing::info!(
        loaded = scenarios.len(),
        invalid = errors.len(),
        "log scenarios"
    );
    let options = LogSensorOptions {
        follow: FollowOptions {
            start: StartAt::End,
            max_line: config.logs.max_line,
            ..FollowOptions::default()
        },
        poll_interval: config.logs.poll_interval,
        ..LogSensorOptions::default()
    };
    let counters = Counters {
        lines: metrics.counter(
            "swarmguard_log_lines_total",
            "Log lines read for scenarios.",
        ),
        truncated: metrics.counter(
            "swarmguard_log_lines_truncated_total",
            "Log lines longer than logs.max_line, cut.",
        ),
        rotations: metrics.counter(
            "swarmguard_log_rotations_total",
            "Log file rotations (rename or truncation) followed.",
        ),
        matches: metrics.counter(
            "swarmguard_scenario_matches_total",
            "Log lines counted as attempts by a scenario.",
        ),
        overflows: metrics.counter_vec(
            "swarmguard_scenario_overflows_total",
            "Scenario bucket overflows (alerts).",
            &["scenario"],
        ),
        dropped: metrics.counter_vec(
            "swarmguard_scenario_dropped_total",
            "Scenario events not poured, by reason.",
            &["reason"],
        ),
        sessions: metrics.gauge("swarmguard_scenario_sessions", "Open scenario sessions."),
        buckets: metrics.gauge("swarmguard_scenario_buckets", "Scenario buckets in use."),
    };

    let detection_stop = stop.clone();
    let mut detection = LogDetection {
        files: None,
        eve: None,
        engine: None,
        swap: None,
        sources: BTreeSet::new(),
        scenarios: scenarios.len(),
    };
    if !scenarios.is_empty() {
        let files: BTreeSet<String> = scenarios
            .iter()
            .flat_map(|s| s.file_sources().map(str::to_owned))
            .collect();
        let units: BTreeSet<String> = scenarios
            .iter()
            .flat_map(|s| s.journal_units().map(str::to_owned))
            .collect();
        let (tx, mut rx) = mpsc::channel::<LogLine>(config.logs.queue);
        let files_followed = files.clone();
        let sensor = log::spawn(files.into_iter().collect(), options.clone(), tx.clone())?;
        if config.logs.journal && !units.is_empty() {
            let units: Vec<String> = units.into_iter().collect();
            let max_line = config.logs.max_line;
            let counters = Arc::new(journal::JournalCounters::default());
            std::thread::Builder::new()
                .name("swarmd-journal".to_owned())
                .spawn(move || {
                    if let Err(err) = journal::run(
                        journal::journalctl_command(&units),
                        max_line,
                        &tx,
                        &counters,
                    ) {
                        tracing::warn!(error = %err, "cannot read the journal");
                    }
                })?;
        }
        let file_counters = sensor.counters().clone();
        detection.files = Some(sensor);
        detection.sources = files_followed;
        let (swap, mut swaps) = mpsc::channel(1);
        detection.swap = Some(swap);
        let mut engine = Engine::new(scenarios, EngineOptions::default());
        let alerts = alerts.clone();
        detection.engine = Some(tokio::spawn(async move {
            let mut events = Vec::new();
            let mut seen = EngineStats::default();
            let (mut truncated, mut rotations) = (0, 0);
            let mut report = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    Some(reloaded) = swaps.recv() => {
                        // Buckets and sessions start afresh with the new scenarios.
                        engine = Engine::new(reloaded, EngineOptions::default());
                    }
                    line = rx.recv() => {
                        let Some(line) = line else { break };
                        let source = engine.source(&line.source);
                        events.clear();
                        engine.feed(source, &line.text, line.time, SystemTime::now(), &mut events);
                        for event in events.drain(..) {
                            if let Event::Overflow { alert, count, .. } = event {
                                counters.overflows.with_label_values(&[&alert.rule.id()]).inc();
                                tracing::info!(rule = %alert.rule, src = ?alert.src, count, "scenario overflow");
                                if alerts.send(alert).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                    _ = report.tick() => {
                        let stats = engine.stats();
                        counters.lines.inc_by(stats.lines - seen.lines);
                        counters.matches.inc_by(stats.matched - seen.matched);
                        for (reason, now, before) in [
                            ("blackholed", stats.blackholed, seen.blackholed),
                            ("duplicate", stats.duplicates, seen.duplicates),
                            ("bad_address", stats.bad_address, seen.bad_address),
                            ("buckets_full", stats.buckets_full, seen.buckets_full),
                            ("sessions_evicted", stats.sessions_evicted, seen.sessions_evicted),
                        ] {
                            counters.dropped.with_label_values(&[reason]).inc_by(now - before);
                        }
                        seen = stats;
                        let (sessions, buckets) = engine.table_sizes();
                        counters.sessions.set(sessions as i64);
                        counters.buckets.set(buckets as i64);
                        let t = file_counters.truncated_lines.load(Ordering::Relaxed);
                        counters.truncated.inc_by(t - truncated);
                        truncated = t;
                        let r = file_counters.rotations.load(Ordering::Relaxed)
                            + file_counters.truncations.load(Ordering::Relaxed);
                        counters.rotations.inc_by(r - rotations);
                        rotations = r;
                    }
                    _ = async { stop.wait_for(|stopped| *stopped).await.map(|_| ()) } => break,
                }
            }
        }));
    }
    if !config.logs.eve.is_empty() {
        let paths = config
            .logs
            .eve
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        let sensor = eve::spawn(paths, options, alerts)?;
        let records = metrics.counter_vec(
            "swarmguard_eve_records_total",
            "Suricata eve.json records read, by kind (alert, other, malformed).",
            &["kind"],
        );
        let eve_counters = sensor.counters().clone();
        let mut stop = detection_stop;
        tokio::spawn(async move {
            let mut seen = [0u64; 3];
            let mut report = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = report.tick() => {}
                    _ = async { stop.wait_for(|stopped| *stopped).await.map(|_| ()) } => break,
                }
                let now = [
                    eve_counters.alerts.load(Ordering::Relaxed),
                    eve_counters.other.load(Ordering::Relaxed),
                    eve_counters.malformed.load(Ordering::Relaxed),
                ];
                for ((kind, now), before) in ["alert", "other", "malformed"]
                    .iter()
                    .zip(now)
                    .zip(&mut seen)
                {
                    records.with_label_values(&[kind]).inc_by(now - *before);
                    *before = now;
                }
            }
        });
        detection.eve = Some(sensor);
    }
    Ok(detection)
}
