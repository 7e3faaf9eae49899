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
        let idle = PacketDetection {
            capture: None,
            worker: None,
        };
        if config.capture.interfaces.is_empty() {
            tracing::info!("no capture interfaces configured: packet detection is off");
            return idle;
        }
        let Some(engine) = load_engine(config) else {
            return idle;
        };
        let (capture, frames) = Capture::start(&config.capture, metrics);
        let engine_metrics = EngineMetrics::register(metrics);
        let worker = std::thread::Builder::new()
            .name("packet engine".to_owned())
            .spawn(move || match_frames(engine, engine_metrics, frames, alerts))
            .inspect_err(
                |err| tracing::error!(error = %err, "cannot start the packet engine thread"),
            )
            .ok();
        PacketDetection {
            capture: Some(capture),
            worker,
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

/// The configured rules that exist, compiled; `None` (logged) when none loads.
fn load_engine(config: &Config) -> Option<Engine> {
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
            tracing::error!(error = %err, "cannot read the packet rules: packet detection is off");
            return None;
        }
    };
    for error in &rules.errors {
        tracing::warn!("{error}");
    }
    tracing::info!(summary = %rules.summary, "packet rules loaded");
    if rules.rules.is_empty() {
        tracing::warn!("no packet rule loaded: packet detection is off");
        return None;
    }
    let engine_config = EngineConfig {
        checksum: config.capture.checksum,
        ..EngineConfig::default()
    };
    Some(Engine::new(rules.rules, engine_config))
}

fn match_frames(
    mut engine: Engine,
    mut metrics: EngineMetrics,
    mut frames: mpsc::Receiver<Frame>,
    alerts: mpsc::Sender<Alert>,
) {
    let mut detections = Vec::new();
    let mut last_update = Instant::now();
    // The queue closes when every capture thread has stopped.
    while let Some(frame) = frames.blocking_recv() {
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
