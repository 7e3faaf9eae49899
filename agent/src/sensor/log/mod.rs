//! The log sensor: follows log files (globs) like `tail -F` and, optionally, the systemd
//! journal, and hands every line to detection through a bounded channel.
//!
//! - [`follow`]: [`FileFollower`], the synchronous core that follows one path.
//! - [`journal`]: reads `journalctl -f -o json` as a child process.
//!
//! [`spawn`] runs the followers on one thread of their own (file reads block). It wakes on
//! inotify events (through the `notify` crate) and, as a fallback that also covers file
//! systems without inotify, every `poll_interval`. When detection falls behind, the bounded
//! channel makes the thread wait: files keep their lines, so backpressure loses nothing.

pub mod follow;
pub mod journal;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc as std_mpsc;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use notify::Watcher;
use tokio::sync::mpsc;

pub use follow::{FileFollower, FollowOptions, FollowStats, FollowedLine, Polled, StartAt};

/// One line from a log source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// The file path, or `journal:UNIT` for journal entries.
    pub source: Arc<str>,
    pub text: String,
    /// The time the source itself recorded, when it has one outside the text (the
    /// journal's `__REALTIME_TIMESTAMP`); otherwise detection parses it from the text.
    pub time: Option<SystemTime>,
    /// The line was longer than the limit and was cut.
    pub truncated: bool,
}

/// How the log sensor follows its files.
#[derive(Debug, Clone)]
pub struct LogSensorOptions {
    pub follow: FollowOptions,
    /// How often files are checked when no inotify event arrives.
    pub poll_interval: Duration,
    /// How often globs are expanded again to find new files.
    pub rescan_interval: Duration,
    /// At most this many files are followed; more are refused and counted.
    pub max_files: usize,
}

impl Default for LogSensorOptions {
    fn default() -> Self {
        LogSensorOptions {
            follow: FollowOptions::default(),
            poll_interval: Duration::from_millis(250),
            rescan_interval: Duration::from_secs(10),
            max_files: 1024,
        }
    }
}

/// Counters shared with the metrics endpoint.
#[derive(Debug, Default)]
pub struct LogSensorCounters {
    pub lines: AtomicU64,
    pub truncated_lines: AtomicU64,
    pub rotations: AtomicU64,
    pub truncations: AtomicU64,
    pub read_errors: AtomicU64,
    pub files: AtomicU64,
    pub files_refused: AtomicU64,
}

/// The running sensor. Dropping it does not stop the thread; call [`LogSensor::stop`].
#[derive(Debug)]
pub struct LogSensor {
    stop: Arc<AtomicBool>,
    wake: std_mpsc::SyncSender<()>,
    thread: Option<thread::JoinHandle<()>>,
    counters: Arc<LogSensorCounters>,
    /// Kept alive for its inotify watches; `None` when inotify is unavailable.
    _watcher: Option<notify::RecommendedWatcher>,
}

impl LogSensor {
    pub fn counters(&self) -> &Arc<LogSensorCounters> {
        &self.counters
    }

    /// Stops the thread and waits for it.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.wake.try_send(());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Starts following `patterns` (paths or globs). Files that exist now are opened before
/// this returns, so everything written afterwards is seen.
pub fn spawn(
    patterns: Vec<String>,
    options: LogSensorOptions,
    tx: mpsc::Sender<LogLine>,
) -> std::io::Result<LogSensor> {
    let (wake_tx, wake_rx) = std_mpsc::sync_channel::<()>(1);
    let watcher = watch_dirs(&patterns, wake_tx.clone());
    let counters = Arc::new(LogSensorCounters::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut state = Followers {
        patterns,
        options: options.clone(),
        followers: BTreeMap::new(),
        counters: counters.clone(),
    };
    state.rescan(options.follow.start);
    let thread = {
        let stop = stop.clone();
        thread::Builder::new()
            .name("swarmd-logs".to_owned())
            .spawn(move || state.run(&stop, &wake_rx, &tx))?
    };
    Ok(LogSensor {
        stop,
        wake: wake_tx,
        thread: Some(thread),
        counters,
        _watcher: watcher,
    })
}

/// The directories to watch: for `/var/log/nginx/*.log`, `/var/log/nginx`.
fn watch_dirs(
    patterns: &[String],
    wake: std_mpsc::SyncSender<()>,
) -> Option<notify::RecommendedWatcher> {
    let mut watcher = notify::recommended_watcher(move |_event| {
        // A full channel already holds a wakeup; losing this one loses nothing.
        let _ = wake.try_send(());
    })
    .map_err(|err| tracing::warn!(error = %err, "no inotify: log files are polled"))
    .ok()?;
    for pattern in patterns {
        let fixed: PathBuf = Path::new(pattern)
            .components()
            .take_while(|part| !part.as_os_str().to_string_lossy().contains(['*', '?', '[']))
            .collect();
        let dir = if fixed.as_os_str() == pattern.as_str() {
            fixed.parent().map(Path::to_path_buf).unwrap_or_default()
        } else {
            fixed
        };
        if dir.is_dir()
            && let Err(err) = watcher.watch(&dir, notify::RecursiveMode::NonRecursive)
        {
            tracing::debug!(dir = %dir.display(), error = %err, "cannot watch; polling it");
        }
    }
    Some(watcher)
}

struct Followers {
    patterns: Vec<String>,
    options: LogSensorOptions,
    followers: BTreeMap<PathBuf, (Arc<str>, FileFollower, FollowStats)>,
    counters: Arc<LogSensorCounters>,
}

impl Followers {
    /// Expands the patterns; new files are followed from `start`.
    fn rescan(&mut self, start: StartAt) {
        for pattern in &self.patterns {
            let has_glob = pattern.contains(['*', '?', '[']);
            let paths: Vec<PathBuf> = if has_glob {
                match glob::glob(pattern) {
                    Ok(paths) => paths.filter_map(Result::ok).collect(),
                    Err(err) => {
                        tracing::warn!(pattern, error = %err, "bad log path pattern");
                        Vec::new()
                    }
                }
            } else {
                // A plain path is followed even before it exists.
                vec![PathBuf::from(pattern)]
            };
            for path in paths {
                if self.followers.contains_key(&path) {
                    continue;
                }
                if self.followers.len() >= self.options.max_files {
                    self.counters.files_refused.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let options = FollowOptions {
                    start,
                    ..self.options.follow
                };
                let name: Arc<str> = path.to_string_lossy().into();
                let follower = FileFollower::new(&path, options);
                self.followers
                    .insert(path, (name, follower, FollowStats::default()));
                self.counters.files.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn run(mut self, stop: &AtomicBool, wake: &std_mpsc::Receiver<()>, tx: &mpsc::Sender<LogLine>) {
        let mut last_scan = Instant::now();
        while !stop.load(Ordering::SeqCst) {
            let mut more = false;
            for (name, follower, seen) in self.followers.values_mut() {
                let mut batch = Vec::new();
                if follower.poll(&mut |line| batch.push(line)) == Polled::More {
                    more = true;
                }
                let stats = follower.stats();
                let counters = &self.counters;
                counters
                    .lines
                    .fetch_add(stats.lines - seen.lines, Ordering::Relaxed);
                counters.truncated_lines.fetch_add(
                    stats.truncated_lines - seen.truncated_lines,
                    Ordering::Relaxed,
                );
                counters
                    .rotations
                    .fetch_add(stats.rotations - seen.rotations, Ordering::Relaxed);
                counters
                    .truncations
                    .fetch_add(stats.truncations - seen.truncations, Ordering::Relaxed);
                counters
                    .read_errors
                    .fetch_add(stats.read_errors - seen.read_errors, Ordering::Relaxed);
                *seen = stats;
                for line in batch {
                    let line = LogLine {
                        source: name.clone(),
                        text: line.text,
                        time: None,
                        truncated: line.truncated,
                    };
                    if tx.blocking_send(line).is_err() {
                        return; // detection is gone: nothing left to feed
                    }
                }
            }
            if last_scan.elapsed() >= self.options.rescan_interval {
                // Files that appear after start hold only new lines: read them whole.
                self.rescan(StartAt::Beginning);
                last_scan = Instant::now();
            }
            if !more {
                let _ = wake.recv_timeout(self.options.poll_interval);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn append(path: &Path, text: &str) {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        file.write_all(text.as_bytes()).unwrap();
    }

    async fn next(rx: &mut mpsc::Receiver<LogLine>) -> LogLine {
        // A generous bound so that a broken sensor fails the test instead of hanging it.
        tokio::time::timeout(Duration::from_secs(30), rx.recv())
            .await
            .expect("no line arrived")
            .expect("sensor stopped")
    }

    #[tokio::test]
    async fn follows_globs_rotation_and_late_files() {
        let dir = tempfile::tempdir().unwrap();
        let auth = dir.path().join("auth.log");
        append(&auth, "old line\n");
        let options = LogSensorOptions {
            poll_interval: Duration::from_millis(20),
            rescan_interval: Duration::from_millis(20),
            ..LogSensorOptions::default()
        };
        let (tx, mut rx) = mpsc::channel(16);
        let sensor = spawn(
            vec![
                auth.to_string_lossy().into_owned(),
                dir.path().join("*.access").to_string_lossy().into_owned(),
            ],
            options,
            tx,
        )
        .unwrap();

        append(&auth, "first\n");
        let line = next(&mut rx).await;
        assert_eq!(
            (line.text.as_str(), &*line.source),
            ("first", &*auth.to_string_lossy())
        );

        std::fs::rename(&auth, dir.path().join("auth.log.1")).unwrap();
        append(&auth, "after rotation\n");
        assert_eq!(next(&mut rx).await.text, "after rotation");

        // A file matching the glob that appears later is read from its start.
        let late = dir.path().join("site.access");
        append(&late, "late 1\nlate 2\n");
        assert_eq!(next(&mut rx).await.text, "late 1");
        assert_eq!(next(&mut rx).await.text, "late 2");

        let counters = sensor.counters().clone();
        sensor.stop();
        assert_eq!(counters.rotations.load(Ordering::Relaxed), 1);
        assert_eq!(counters.files.load(Ordering::Relaxed), 2);
    }
}
