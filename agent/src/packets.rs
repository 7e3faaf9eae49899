//! Packet detection as `swarmd run` runs it: live capture (`sensor::capture`) feeds the
//! rule engine (`detect::Engine`) on a thread of its own, and what matches goes to the
//! alerts channel that the decision stage reads.
//!
//! The capture queue is the bound between the two: when the engine falls behind, capture
//! drops and counts frames rather than waiting (see `sensor::capture`).

use std::path::PathBuf;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::api::Metrics;
use crate::config::Config;
use crate::detect::metrics::EngineMetrics;
use crate::detect::rules::Classification;
use crate::detect::{Alert, Engine, EngineConfig};
use crate::replay;
use crate::sensor::capture::{Capture, Frame};

/// How often the engine's counters are copied into the metrics.
const METRICS_EVERY: Duration = Duration::from_secs(1);

/// Packet detection while it runs; [`PacketDetection::stop`] ends it.
#[derive(Debug)]
pub struct PacketDetection {
    capture: Option<Capture>,
    worker: Option<JoinHandle<()>>,
    /// Hands a reloaded engine to the worker, which takes it before its next frame.
    swap: Option<std::sync::mpsc::SyncSender<Engine>>,
    /// How many rules are in use.
    rules: usize,
}

/// What reading the configured rule paths gave.
#[derive(Debug)]
pub struct LoadedRules {
    /// The compiled engine, when at least one rule loaded.
    pub engine: Option<Engine>,
    /// How many rules loaded.
    pub count: usize,
    /// `FILE:LINE:COL: message` for each rule that did not, or why nothing could be read.
    pub errors: Vec<String>,
}

/// What [`PacketDetection::reload`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reloaded {
    /// Whether the new rules replaced the old ones.
    pub applied: bool,
    /// Rules in use after the reload.
    pub rules: usize,
    pub errors: Vec<String>,
}

impl PacketDetection {
    /// Loads the packet rules and starts capturing on the configured interfaces. With no
    /// interface configured, or no rule that loads, nothing runs (and the log says why): a
    /// missing input is never a reason not to start.
    pub fn start(
        config: &Config,
        metrics: &Metrics,
        alerts: mpsc::Sender<Alert>,
    ) -> PacketDetection {
        let loaded = load_rules(config);
        let idle = PacketDetection {
            capture: None,
            worker: None,
            swap: None,
            rules: loaded.count,
        };
        if config.capture.interfaces.is_empty() && config.capture.files.is_empty() {
            tracing::info!("no capture interfaces configured: packet detection is off");
            return idle;
        }
        let Some(engine) = loaded.engine else {
            tracing::warn!("no packet rule loaded: packet detection is off");
            return idle;
        };
        let (capture, frames) = Capture::start(&config.capture, metrics);
        let engine_metrics = EngineMetrics::register(metrics);
        let (swap, swaps) = std::sync::mpsc::sync_channel(1);
        let worker = std::thread::Builder::new()
            .name("packet engine".to_owned())
            .spawn(move || match_frames(engine, engine_metrics, frames, swaps, alerts))
            .inspect_err(
                |err| tracing::error!(error = %err, "cannot start the packet engine thread"),
            )
            .ok();
        PacketDetection {
            capture: Some(capture),
            worker,
            swap: Some(swap),
            rules: loaded.count,
        }
    }

    /// How many packet rules are in use.
    pub fn rules(&self) -> usize {
        self.rules
    }

    /// Reads the rule paths again. Any rule that does not load keeps the old rules in use
    /// (an edit in progress must not silently drop detection), and the errors say why;
    /// otherwise the new rules replace the old ones before the next packet.
    pub fn reload(&mut self, config: &Config) -> Reloaded {
        let loaded = load_rules(config);
        if !loaded.errors.is_empty() || loaded.engine.is_none() {
            let mut errors = loaded.errors;
            if errors.is_empty() {
                errors.push("no packet rule loaded".to_owned());
            }
            return Reloaded {
                applied: false,
                rules: self.rules,
                errors,
            };
        }
        if let (Some(swap), Some(engine)) = (&self.swap, loaded.engine) {
            // A full slot holds an engine the worker has not taken yet: replace it.
            if let Err(std::sync::mpsc::TrySendError::Full(engine)) = swap.try_send(engine) {
                let _ = swap.send(engine);
            }
        }
        self.rules = loaded.count;
        Reloaded {
            applied: true,
            rules: self.rules,
            errors: Vec::new(),
        }
    }

    /// Stops capturing, lets the engine finish the frames already queued, and waits.
    pub fn stop(mut self) {
        if let Some(capture) = self.capture.take() {
            capture.stop();
        }
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

/// The configured rules that exist, compiled; missing paths are warnings.
pub fn load_rules(config: &Config) -> LoadedRules {
    let (present, missing): (Vec<PathBuf>, Vec<PathBuf>) = config
        .rule_paths
        .iter()
        .cloned()
        .partition(|path| path.exists());
    for path in &missing {
        tracing::warn!(path = %path.display(), "rule path does not exist");
    }
    let rules = match replay::load_rules(
        &present,
        config.rule_vars.clone(),
        Classification::builtin(),
    ) {
        Ok(rules) => rules,
        Err(err) => {
            tracing::error!(error = %err, "cannot read the packet rules");
            return LoadedRules {
                engine: None,
                count: 0,
                errors: vec![err.to_string()],
            };
        }
    };
    for error in &rules.errors {
        tracing::warn!("{error}");
    }
    tracing::info!(summary = %rules.summary, "packet rules loaded");
    let errors = rules.errors.iter().map(ToString::to_string).collect();
    let count = rules.rules.len();
    let engine = (count > 0).then(|| {
        let engine_config = EngineConfig {
            checksum: config.capture.checksum,
            ..EngineConfig::default()
        };
        Engine::new(rules.rules, engine_config)
    });
    LoadedRules {
        engine,
        count,
        errors,
    }
}

fn match_frames(
    mut engine: Engine,
    mut metrics: EngineMetrics,
    mut frames: mpsc::Receiver<Frame>,
    swaps: std::sync::mpsc::Receiver<Engine>,
    alerts: mpsc::Sender<Alert>,
) {
    let mut detections = Vec::new();
    let mut last_update = Instant::now();
    // The queue closes when every capture thread has stopped.
    while let Some(frame) = frames.blocking_recv() {
        if let Ok(reloaded) = swaps.try_recv() {
            // Flows and thresholds start afresh with new rules.
            engine = reloaded;
        }
        engine.process_into(frame.ts, frame.linktype, &frame.data, &mut detections);
        for detection in detections.drain(..) {
            // Waiting here pushes back on the capture queue, which drops and counts.
            if alerts.blocking_send(detection.alert).is_err() {
                return;
            }
        }
        if last_update.elapsed() >= METRICS_EVERY {
            metrics.update(&engine.stats());
            last_update = Instant::now();
        }
    }
    metrics.update(&engine.stats());
}
