//! Live capture: libpcap on each configured interface, each on a thread of its own,
//! feeding one bounded queue of [`Frame`]s (timestamp, DLT link type, bytes) that the
//! packet rule engine drains.
//!
//! The queue never blocks a capture thread: when it is full the frame is dropped and
//! counted (`swarmguard_capture_dropped_total{reason="queue"}`), so a slow engine costs
//! detections, not a stalled kernel buffer. What the kernel itself dropped (its buffer was
//! full before libpcap read it) is read from pcap's statistics every second and counted
//! with `reason="kernel"`.
//!
//! An interface that does not exist (yet) or fails is a warning, not an error: its thread
//! retries every [`RETRY`] until the capture stops, so an interface that appears later (a
//! VPN, a container bridge) is picked up.
//!
//! Threads open their device themselves, so they capture in the network namespace of the
//! thread that called [`Capture::start`] (the tests rely on that).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prometheus::{IntCounterVec, IntGauge, IntGaugeVec, Opts};
use tokio::sync::mpsc;

use crate::api::Metrics;
use crate::detect::ChecksumMode;

/// Bytes kept of each packet unless configured otherwise: whole Ethernet frames, and
/// whole jumbo and GRO-merged ones up to 64 KiB.
pub const DEFAULT_SNAPLEN: u32 = 65_535;
/// Frames the queue holds unless configured otherwise (about 1.5 s of a busy 100 Mbit/s
/// link of small packets; at most ~530 MiB of full-size frames, ~12 MiB at typical sizes).
pub const DEFAULT_QUEUE: usize = 8_192;
/// How long a failed interface waits before its thread tries again.
pub const RETRY: Duration = Duration::from_secs(5);
/// How often a capture thread wakes up without packets, to notice a stop.
const READ_TIMEOUT_MS: i32 = 250;
/// How often kernel drop statistics are read.
const STATS_EVERY: Duration = Duration::from_secs(1);

/// What to capture (`[capture]` in the configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureConfig {
    /// Interface names as `ip link` shows them; `any` captures on all of them (as Linux
    /// "cooked" frames, link type 113).
    pub interfaces: Vec<String>,
    /// Capture files (pcap, pcapng) read once at start as if their packets arrived then:
    /// times are shifted so that the first packet is "now", and the gaps between packets
    /// are kept. For trying rules on a running agent, and the demo.
    pub files: Vec<PathBuf>,
    /// A BPF filter in tcpdump syntax; `None` captures everything.
    pub bpf: Option<String>,
    /// Bytes kept of each packet.
    pub snaplen: u32,
    /// Whether to capture traffic not addressed to this host.
    pub promisc: bool,
    /// Frames the queue holds before new ones are dropped.
    pub queue: usize,
    /// Checksum validation of captured packets, as Suricata's `checksum-checks`: `Auto`
    /// stops validating once most sampled packets fail, as they do where the kernel
    /// offloads checksums (veth, locally sent traffic).
    pub checksum: ChecksumMode,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        CaptureConfig {
            interfaces: Vec::new(),
            files: Vec::new(),
            bpf: None,
            snaplen: DEFAULT_SNAPLEN,
            promisc: false,
            queue: DEFAULT_QUEUE,
            checksum: ChecksumMode::Auto,
        }
    }
}

/// One captured frame, as the rule engine takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// When the kernel received it.
    pub ts: SystemTime,
    /// The pcap link-layer type (DLT number): 1 Ethernet, 113 Linux cooked, 12 raw IP, ...
    pub linktype: u32,
    /// The frame from its link-layer header on, at most `snaplen` bytes.
    pub data: Vec<u8>,
    /// The interface it came from.
    pub interface: Arc<str>,
}

/// Checks a BPF filter's syntax without opening a device (as `check-config` does).
pub fn check_filter(bpf: &str) -> Result<(), String> {
    let dead = pcap::Capture::dead(pcap::Linktype::ETHERNET).map_err(|e| e.to_string())?;
    dead.compile(bpf, true)
        .map(drop)
        .map_err(|err| err.to_string())
}

/// Running capture threads; dropping it stops them too.
#[derive(Debug)]
pub struct Capture {
    stop: Arc<Stop>,
    threads: Vec<JoinHandle<()>>,
}

impl Capture {
    /// Starts one thread per configured interface; returns the queue they feed. The queue
    /// closes (`recv` gives `None`) once every thread has ended: at once when no interface
    /// is configured, otherwise after [`Capture::stop`].
    pub fn start(config: &CaptureConfig, metrics: &Metrics) -> (Capture, mpsc::Receiver<Frame>) {
        let (tx, rx) = mpsc::channel(config.queue.max(1));
        let metrics = CaptureMetrics::new(metrics, config.queue);
        let stop = Arc::new(Stop::default());
        let threads = config
            .interfaces
            .iter()
            .enumerate()
            .filter_map(|(slot, interface)| {
                let worker = Worker {
                    slot,
                    interface: Arc::from(interface.as_str()),
                    config: config.clone(),
                    tx: tx.clone(),
                    stop: Arc::clone(&stop),
                    metrics: metrics.clone(),
                };
                std::thread::Builder::new()
                    .name(format!("capture {interface}"))
                    .spawn(move || worker.run())
                    .inspect_err(|err| {
                        tracing::error!(interface = %interface, error = %err, "cannot start a capture thread");
                    })
                    .ok()
            })
            .collect::<Vec<_>>();
        let mut threads = threads;
        for path in &config.files {
            let path = path.clone();
            let tx = tx.clone();
            let stop = Arc::clone(&stop);
            let metrics = metrics.clone();
            let spawned = std::thread::Builder::new()
                .name("capture file".to_owned())
                .spawn(move || replay_file(&path, &tx, &stop, &metrics));
            match spawned {
                Ok(thread) => threads.push(thread),
                Err(err) => tracing::error!(error = %err, "cannot start a capture file thread"),
            }
        }
        (Capture { stop, threads }, rx)
    }

    /// Stops every capture thread and waits for them.
    pub fn stop(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        self.stop.trigger();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// Feeds one capture file into the queue, paced as it was recorded and shifted to now.
/// The queue waits rather than drops: a file is not a live link that cannot wait.
fn replay_file(path: &Path, tx: &mpsc::Sender<Frame>, stop: &Stop, metrics: &CaptureMetrics) {
    let mut file = match crate::sensor::pcap_file::CaptureFile::open(path) {
        Ok(file) => file,
        Err(err) => {
            tracing::warn!(error = %err, "capture file skipped");
            return;
        }
    };
    let label: Arc<str> = Arc::from(path.display().to_string());
    let (started, wall) = (Instant::now(), SystemTime::now());
    let mut first = None;
    let mut frames = 0u64;
    loop {
        let frame = match file.next_frame() {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(err) => {
                tracing::warn!(error = %err, "capture file read stopped");
                break;
            }
        };
        let offset = frame
            .time
            .duration_since(*first.get_or_insert(frame.time))
            .unwrap_or_default();
        let due = started + offset;
        let now = Instant::now();
        if due > now && stop.wait(due - now) {
            return;
        }
        let frame = Frame {
            ts: wall + offset,
            linktype: frame.linktype,
            data: frame.data.to_vec(),
            interface: Arc::clone(&label),
        };
        metrics.packets.with_label_values(&[&label]).inc();
        if tx.blocking_send(frame).is_err() || stop.is_set() {
            return;
        }
        frames += 1;
    }
    tracing::info!(file = %label, frames, "capture file read");
}

/// The stop signal the threads share: a flag, a condition variable for their retry waits,
/// and pcap's break handles to wake a thread blocked in a read.
#[derive(Default)]
struct Stop {
    stopped: AtomicBool,
    wait: Mutex<()>,
    wake: Condvar,
    /// One slot per interface thread, replaced on each reopen, so that a flapping
    /// interface does not grow it.
    breakers: Mutex<Vec<Option<pcap::BreakLoop>>>,
}

impl std::fmt::Debug for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stop")
            .field("stopped", &self.is_set())
            .finish_non_exhaustive()
    }
}

impl Stop {
    fn is_set(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    fn trigger(&self) {
        self.stopped.store(true, Ordering::Release);
        let _guard = self
            .wait
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        self.wake.notify_all();
        for breaker in self
            .breakers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
            .flatten()
        {
            breaker.breakloop();
        }
    }

    /// Waits up to `timeout`; true when stopped.
    fn wait(&self, timeout: Duration) -> bool {
        let guard = self
            .wait
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let _ = self
            .wake
            .wait_timeout_while(guard, timeout, |_| !self.is_set());
        self.is_set()
    }

    fn register(&self, slot: usize, breaker: pcap::BreakLoop) {
        let mut breakers = self
            .breakers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if breakers.len() <= slot {
            breakers.resize_with(slot + 1, || None);
        }
        breakers[slot] = Some(breaker);
    }
}

/// Why a capture loop ended.
enum Ended {
    Stopped,
    Failed(pcap::Error),
}

/// One interface's thread.
struct Worker {
    /// Its slot among the break handles.
    slot: usize,
    interface: Arc<str>,
    config: CaptureConfig,
    tx: mpsc::Sender<Frame>,
    stop: Arc<Stop>,
    metrics: CaptureMetrics,
}

impl Worker {
    fn run(self) {
        let name = &*self.interface;
        let mut warned = false;
        while !self.stop.is_set() {
            match self.open() {
                Ok(capture) => {
                    warned = false;
                    self.metrics.up.with_label_values(&[name]).set(1);
                    let ended = self.capture(capture);
                    self.metrics.up.with_label_values(&[name]).set(0);
                    match ended {
                        Ended::Stopped => break,
                        Ended::Failed(err) => {
                            tracing::warn!(interface = name, error = %err, "capture failed; retrying");
                        }
                    }
                }
                Err(err) if !warned => {
                    warned = true;
                    tracing::warn!(
                        interface = name,
                        error = %err,
                        retry_every = ?RETRY,
                        "cannot capture on this interface; the agent runs without it and retries"
                    );
                }
                Err(_) => {}
            }
            if self.stop.wait(RETRY) {
                break;
            }
        }
    }

    fn open(&self) -> Result<pcap::Capture<pcap::Active>, pcap::Error> {
        let mut capture = pcap::Capture::from_device(&*self.interface)?
            .snaplen(i32::try_from(self.config.snaplen).unwrap_or(i32::MAX))
            .promisc(self.config.promisc)
            .timeout(READ_TIMEOUT_MS)
            // Deliver each packet at once rather than per filled kernel block: blocking an
            // attacker sooner is worth more than the CPU that batching saves.
            .immediate_mode(true)
            .open()?;
        if let Some(bpf) = &self.config.bpf {
            capture.filter(bpf, true)?;
        }
        Ok(capture)
    }

    fn capture(&self, mut capture: pcap::Capture<pcap::Active>) -> Ended {
        let name = &*self.interface;
        // The DLT number is small and non-negative; pcap hands it out as i32.
        let linktype = u32::try_from(capture.get_datalink().0).unwrap_or(0);
        tracing::info!(interface = name, linktype, bpf = ?self.config.bpf, "capturing");
        self.stop.register(self.slot, capture.breakloop_handle());
        let packets = self.metrics.packets.with_label_values(&[name]);
        let queue_drops = self.metrics.dropped.with_label_values(&[name, "queue"]);
        let mut kernel = KernelDrops::default();
        let mut next_stats = Instant::now() + STATS_EVERY;
        loop {
            if self.stop.is_set() {
                return Ended::Stopped;
            }
            match capture.next_packet() {
                Ok(packet) => {
                    packets.inc();
                    let frame = Frame {
                        ts: timestamp(packet.header.ts.tv_sec, packet.header.ts.tv_usec),
                        linktype,
                        data: packet.data.to_vec(),
                        interface: Arc::clone(&self.interface),
                    };
                    match self.tx.try_send(frame) {
                        Ok(()) => {}
                        Err(mpsc::error::TrySendError::Full(_)) => queue_drops.inc(),
                        // The engine is gone: nobody will read what we capture.
                        Err(mpsc::error::TrySendError::Closed(_)) => return Ended::Stopped,
                    }
                }
                Err(pcap::Error::TimeoutExpired) => {}
                Err(_) if self.stop.is_set() => return Ended::Stopped,
                Err(err) => return Ended::Failed(err),
            }
            if Instant::now() >= next_stats {
                next_stats = Instant::now() + STATS_EVERY;
                if let Ok(stats) = capture.stats() {
                    let new = kernel.update(stats.dropped, stats.if_dropped);
                    self.metrics
                        .dropped
                        .with_label_values(&[name, "kernel"])
                        .inc_by(new);
                }
                self.metrics
                    .queue_depth
                    .set((self.tx.max_capacity() - self.tx.capacity()) as i64);
            }
        }
    }
}

/// pcap's drop counters are totals since the device was opened, 32 bits wide; this turns
/// them into increments.
#[derive(Debug, Default)]
struct KernelDrops {
    dropped: u32,
    if_dropped: u32,
}

impl KernelDrops {
    fn update(&mut self, dropped: u32, if_dropped: u32) -> u64 {
        let new = u64::from(dropped.wrapping_sub(self.dropped))
            + u64::from(if_dropped.wrapping_sub(self.if_dropped));
        self.dropped = dropped;
        self.if_dropped = if_dropped;
        new
    }
}

/// A pcap timestamp (seconds and microseconds since 1970) as a `SystemTime`.
fn timestamp(secs: i64, micros: i64) -> SystemTime {
    let secs = u64::try_from(secs).unwrap_or(0);
    let micros = u64::try_from(micros).unwrap_or(0).min(999_999);
    UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_micros(micros)
}

/// The capture's Prometheus metrics.
#[derive(Debug, Clone)]
struct CaptureMetrics {
    /// `swarmguard_capture_packets_total{interface}`.
    packets: IntCounterVec,
    /// `swarmguard_capture_dropped_total{interface, reason="kernel"|"queue"}`.
    dropped: IntCounterVec,
    /// `swarmguard_capture_up{interface}`: 1 while the interface is being captured.
    up: IntGaugeVec,
    /// `swarmguard_capture_queue_depth`: frames waiting for the engine.
    queue_depth: IntGauge,
}

impl CaptureMetrics {
    fn new(metrics: &Metrics, queue: usize) -> CaptureMetrics {
        let capacity = metrics.register(
            IntGauge::new(
                "swarmguard_capture_queue_capacity",
                "Frames the capture queue holds before dropping.",
            )
            .expect("static metric definition"),
        );
        capacity.set(queue as i64);
        CaptureMetrics {
            packets: metrics.register(
                IntCounterVec::new(
                    Opts::new("swarmguard_capture_packets_total", "Packets captured."),
                    &["interface"],
                )
                .expect("static metric definition"),
            ),
            dropped: metrics.register(
                IntCounterVec::new(
                    Opts::new(
                        "swarmguard_capture_dropped_total",
                        "Packets lost: by the kernel before libpcap read them, or because the \
                         engine's queue was full.",
                    ),
                    &["interface", "reason"],
                )
                .expect("static metric definition"),
            ),
            up: metrics.register(
                IntGaugeVec::new(
                    Opts::new(
                        "swarmguard_capture_up",
                        "1 while an interface is being captured, 0 while it is missing or failed.",
                    ),
                    &["interface"],
                )
                .expect("static metric definition"),
            ),
            queue_depth: metrics.register(
                IntGauge::new(
                    "swarmguard_capture_queue_depth",
                    "Frames waiting in the capture queue.",
                )
                .expect("static metric definition"),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_checked_without_a_device() {
        assert!(check_filter("udp and dst port 4789").is_ok());
        assert!(check_filter("").is_ok());
        let err = check_filter("udp and port banana").unwrap_err();
        assert!(!err.is_empty());
    }

    #[test]
    fn kernel_drop_totals_become_increments_across_wraparound() {
        let mut drops = KernelDrops::default();
        assert_eq!(drops.update(5, 1), 6);
        assert_eq!(drops.update(5, 1), 0);
        assert_eq!(drops.update(u32::MAX, 1), u64::from(u32::MAX - 5));
        assert_eq!(drops.update(3, 1), 4);
    }

    #[test]
    fn pcap_timestamps_map_to_system_time() {
        assert_eq!(
            timestamp(1_700_000_000, 250_000),
            UNIX_EPOCH + Duration::from_millis(1_700_000_000_250)
        );
        assert_eq!(timestamp(-1, -1), UNIX_EPOCH);
    }

    #[test]
    fn a_missing_interface_is_not_fatal_and_stop_ends_the_threads() {
        let metrics = Metrics::new();
        let config = CaptureConfig {
            interfaces: vec!["sg-absent0".to_owned()],
            ..CaptureConfig::default()
        };
        let (capture, mut rx) = Capture::start(&config, &metrics);
        capture.stop();
        // Every sender is gone once the threads have ended.
        assert!(rx.blocking_recv().is_none());
        assert!(
            metrics
                .render()
                .contains("swarmguard_capture_queue_capacity 8192")
        );
    }
}
