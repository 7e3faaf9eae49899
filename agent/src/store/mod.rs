//! The agent's memory across restarts: a sled database in the state directory with one
//! tree per kind of record — decisions, offender history, swarm signals, peers.
//!
//! The API is typed: callers hand in [`Decision`]s and get them back; signals and peers,
//! whose types belong to the swarm, are kept as the bytes the swarm received (still signed,
//! so they can be re-verified and re-gossiped verbatim) under typed keys.
//!
//! Every record is `[version byte][postcard]`, for the reasons given in
//! [`crate::decide`]'s `decision` module. A record that does not decode is counted, logged and
//! skipped: one bad record never hides the rest.
//!
//! Durability: sled writes to its log in the background (every [`StoreConfig::flush_every`]).
//! A write that is acknowledged to someone — a decision `swarmctl` added or deleted — takes
//! [`Durability::Flushed`], which returns only after the log is on disk, so a crash right
//! after the reply loses nothing.
//!
//! Memory: sled's page cache defaults to 1 GiB, far beyond what a light agent may take; it is
//! set to [`StoreConfig::cache_bytes`] (16 MiB by default), which holds the hot part of a
//! few hundred thousand records. The cache is a ceiling, not an allocation.

mod records;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use prometheus::{IntCounterVec, IntGauge, IntGaugeVec, Opts};
use tokio::sync::watch;

pub use records::{Offense, StoredPeer, StoredSignal};

use crate::api::Metrics;
use crate::decide::Decision;
use crate::subject::Subject;

/// How the store is opened; see `[store]` in `docs/configuration.md`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// sled's page cache ceiling.
    pub cache_bytes: u64,
    /// How often sled writes its log in the background; `None` only on explicit flushes
    /// (the crash test uses that to prove [`Durability::Flushed`] is what saves a write).
    pub flush_every: Option<Duration>,
    /// How long a subject's ban count is remembered after its last ban (escalation memory).
    pub history_retention: Duration,
    /// How long a peer that is no longer seen is remembered.
    pub peer_retention: Duration,
    /// The most records each tree holds; beyond it, new records are refused and counted.
    pub max_entries: u64,
}

/// Default page cache: 16 MiB.
pub const DEFAULT_CACHE_BYTES: u64 = 16 * 1024 * 1024;
/// Default memory of past bans: 30 days.
pub const DEFAULT_HISTORY_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);
/// Default memory of vanished peers: 7 days.
pub const DEFAULT_PEER_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// Default limit per tree.
pub const DEFAULT_MAX_ENTRIES: u64 = 1_000_000;
/// The database's folder inside the state directory.
pub const DB_DIR: &str = "db";

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            cache_bytes: DEFAULT_CACHE_BYTES,
            flush_every: Some(Duration::from_millis(500)),
            history_retention: DEFAULT_HISTORY_RETENTION,
            peer_retention: DEFAULT_PEER_RETENTION,
            max_entries: DEFAULT_MAX_ENTRIES,
        }
    }
}

/// Whether a write must be on disk before the call returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Flush before returning: for anything acknowledged to someone.
    Flushed,
    /// Let sled's background flush write it (within `flush_every`).
    Lazy,
}

/// What went wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened (missing permissions, another agent holds the lock,
    /// a corrupt log).
    #[error("cannot open the store at {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: sled::Error,
    },
    /// A read or write failed.
    #[error("store {tree}: {source}")]
    Db {
        tree: &'static str,
        #[source]
        source: sled::Error,
    },
    /// The tree holds `max_entries` records already.
    #[error("store {tree} is full ({limit} records)")]
    Full { tree: &'static str, limit: u64 },
}

/// What a sweep removed, per tree.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    pub decisions: u64,
    pub offenders: u64,
    pub signals: u64,
    pub peers: u64,
}

/// The open database. Cheap to share behind an `Arc`; every method takes `&self`.
#[derive(Debug)]
pub struct Store {
    db: sled::Db,
    decisions: Tree,
    offenders: Tree,
    signals: Tree,
    peers: Tree,
    config: StoreConfig,
    metrics: StoreMetrics,
}

/// A sled tree with its name and an entry count kept exact from insert/remove results
/// (sled's own `len` walks the whole tree).
#[derive(Debug)]
struct Tree {
    name: &'static str,
    tree: sled::Tree,
    entries: AtomicU64,
}

impl Tree {
    fn open(db: &sled::Db, name: &'static str) -> Result<Tree, StoreError> {
        let tree = db
            .open_tree(name)
            .map_err(|source| StoreError::Db { tree: name, source })?;
        let entries = AtomicU64::new(tree.len() as u64);
        Ok(Tree {
            name,
            tree,
            entries,
        })
    }

    fn err(&self) -> impl Fn(sled::Error) -> StoreError + '_ {
        move |source| StoreError::Db {
            tree: self.name,
            source,
        }
    }

    fn len(&self) -> u64 {
        self.entries.load(Ordering::Relaxed)
    }

    /// Inserts or replaces; refuses a new key when the tree is full.
    fn put(
        &self,
        key: &[u8],
        value: Vec<u8>,
        limit: u64,
    ) -> Result<Option<sled::IVec>, StoreError> {
        if self.len() >= limit && !self.tree.contains_key(key).map_err(self.err())? {
            return Err(StoreError::Full {
                tree: self.name,
                limit,
            });
        }
        let old = self.tree.insert(key, value).map_err(self.err())?;
        if old.is_none() {
            self.entries.fetch_add(1, Ordering::Relaxed);
        }
        Ok(old)
    }

    /// Inserts only if the key is absent; `Ok(false)` when it was there already.
    fn put_new(&self, key: &[u8], value: Vec<u8>, limit: u64) -> Result<bool, StoreError> {
        if self.len() >= limit {
            if self.tree.contains_key(key).map_err(self.err())? {
                return Ok(false);
            }
            return Err(StoreError::Full {
                tree: self.name,
                limit,
            });
        }
        let swapped = self
            .tree
            .compare_and_swap(key, None::<&[u8]>, Some(value))
            .map_err(self.err())?;
        if swapped.is_ok() {
            self.entries.fetch_add(1, Ordering::Relaxed);
        }
        Ok(swapped.is_ok())
    }

    fn remove(&self, key: &[u8]) -> Result<Option<sled::IVec>, StoreError> {
        let old = self.tree.remove(key).map_err(self.err())?;
        if old.is_some() {
            self.entries.fetch_sub(1, Ordering::Relaxed);
        }
        Ok(old)
    }

    /// Removes `key` only if it still holds `value` (a sweep must not delete a record that
    /// was renewed meanwhile).
    fn remove_if_unchanged(&self, key: &[u8], value: &[u8]) -> Result<bool, StoreError> {
        let swapped = self
            .tree
            .compare_and_swap(key, Some(value), None::<&[u8]>)
            .map_err(self.err())?;
        if swapped.is_ok() {
            self.entries.fetch_sub(1, Ordering::Relaxed);
        }
        Ok(swapped.is_ok())
    }

    /// Every record, decoded; undecodable ones are reported to `bad` and skipped.
    fn decode_all<T>(
        &self,
        decode: impl Fn(&[u8], &[u8]) -> Result<T, String>,
        bad: &StoreMetrics,
    ) -> Result<Vec<(sled::IVec, sled::IVec, T)>, StoreError> {
        let mut out = Vec::new();
        for item in self.tree.iter() {
            let (key, value) = item.map_err(self.err())?;
            match decode(&key, &value) {
                Ok(record) => out.push((key, value, record)),
                Err(reason) => bad.corrupt(self.name, &key, &reason),
            }
        }
        Ok(out)
    }
}

impl Store {
    /// Opens (or creates) the database in `state_dir` and registers the store's metrics.
    pub fn open(
        state_dir: &Path,
        config: StoreConfig,
        metrics: &Metrics,
    ) -> Result<Store, StoreError> {
        let path = state_dir.join(DB_DIR);
        let sled_config = sled::Config::new()
            .path(&path)
            .cache_capacity(config.cache_bytes)
            .flush_every_ms(
                config
                    .flush_every
                    .map(|every| every.as_millis().max(1) as u64),
            )
            // The agent's data is small and mostly idle: favour disk space over write speed.
            .mode(sled::Mode::LowSpace);
        let db = open_waiting_for_lock(&sled_config)
            .map_err(|source| StoreError::Open { path, source })?;
        let store = Store {
            decisions: Tree::open(&db, "decisions")?,
            offenders: Tree::open(&db, "offenders")?,
            signals: Tree::open(&db, "signals")?,
            peers: Tree::open(&db, "peers")?,
            db,
            config,
            metrics: StoreMetrics::new(metrics),
        };
        store.update_gauges();
        Ok(store)
    }

    /// The configuration the store was opened with.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// Writes everything pending to disk.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush().map(drop).map_err(|source| StoreError::Db {
            tree: "database",
            source,
        })
    }

    fn finish(&self, durability: Durability) -> Result<(), StoreError> {
        self.update_gauges();
        match durability {
            Durability::Flushed => self.flush(),
            Durability::Lazy => Ok(()),
        }
    }

    // --- decisions -------------------------------------------------------------------

    /// Stores `decision`, replacing any decision on the same subject; returns the old one.
    pub fn put_decision(
        &self,
        decision: &Decision,
        durability: Durability,
    ) -> Result<Option<Decision>, StoreError> {
        let key = decision.subject.to_string();
        let old = self
            .decisions
            .put(key.as_bytes(), decision.encode(), self.config.max_entries);
        let old = self.refused_if_full(old)?;
        self.finish(durability)?;
        Ok(old.and_then(|bytes| Decision::decode(&bytes).ok()))
    }

    /// The decision on `subject`, if any (lapsed or not).
    pub fn decision(&self, subject: &Subject) -> Result<Option<Decision>, StoreError> {
        let key = subject.to_string();
        let Some(bytes) = self
            .decisions
            .tree
            .get(key.as_bytes())
            .map_err(self.decisions.err())?
        else {
            return Ok(None);
        };
        match Decision::decode(&bytes) {
            Ok(decision) => Ok(Some(decision)),
            Err(err) => {
                self.metrics
                    .corrupt(self.decisions.name, key.as_bytes(), &err.to_string());
                Ok(None)
            }
        }
    }

    /// Removes the decision on `subject`; returns it.
    pub fn remove_decision(
        &self,
        subject: &Subject,
        durability: Durability,
    ) -> Result<Option<Decision>, StoreError> {
        let old = self.decisions.remove(subject.to_string().as_bytes())?;
        self.finish(durability)?;
        Ok(old.and_then(|bytes| Decision::decode(&bytes).ok()))
    }

    /// Every stored decision, in subject order (lapsed ones until the next sweep).
    pub fn decisions(&self) -> Result<Vec<Decision>, StoreError> {
        Ok(self
            .decisions
            .decode_all(
                |_, value| Decision::decode(value).map_err(|e| e.to_string()),
                &self.metrics,
            )?
            .into_iter()
            .map(|(_, _, decision)| decision)
            .collect())
    }

    /// The decisions that still hold at `now`: what the kernel is reconciled from at start.
    pub fn active_decisions(&self, now: SystemTime) -> Result<Vec<Decision>, StoreError> {
        let mut decisions = self.decisions()?;
        decisions.retain(|decision| decision.is_active(now));
        Ok(decisions)
    }

    // --- offender history ------------------------------------------------------------

    /// Counts one more ban of `subject` at `now`; returns the updated history (the first ban
    /// gives `bans == 1`). The decision policy scales the ban time from it.
    pub fn record_ban(&self, subject: &Subject, now: SystemTime) -> Result<Offense, StoreError> {
        let key = subject.to_string();
        let key = key.as_bytes();
        let tree = &self.offenders;
        if tree.len() >= self.config.max_entries
            && !tree.tree.contains_key(key).map_err(tree.err())?
        {
            self.metrics.refused.with_label_values(&[tree.name]).inc();
            return Err(StoreError::Full {
                tree: tree.name,
                limit: self.config.max_entries,
            });
        }
        let old = tree
            .tree
            .fetch_and_update(key, |old| {
                let previous = old.and_then(|bytes| Offense::decode(bytes).ok());
                Some(Offense::after(previous, now).encode())
            })
            .map_err(tree.err())?;
        if old.is_none() {
            tree.entries.fetch_add(1, Ordering::Relaxed);
        }
        let previous = old.and_then(|bytes| Offense::decode(&bytes).ok());
        self.update_gauges();
        Ok(Offense::after(previous, now))
    }

    /// The ban history of `subject`, if it has one.
    pub fn offense(&self, subject: &Subject) -> Result<Option<Offense>, StoreError> {
        let key = subject.to_string();
        let bytes = self
            .offenders
            .tree
            .get(key.as_bytes())
            .map_err(self.offenders.err())?;
        Ok(bytes.and_then(|bytes| match Offense::decode(&bytes) {
            Ok(offense) => Some(offense),
            Err(reason) => {
                self.metrics
                    .corrupt(self.offenders.name, key.as_bytes(), &reason);
                None
            }
        }))
    }

    // --- signals ---------------------------------------------------------------------

    /// Stores a signal unless one with the same `(origin, seq)` is stored already; returns
    /// whether it was new (a replay returns `false`).
    pub fn put_signal(&self, signal: &StoredSignal) -> Result<bool, StoreError> {
        let new = self
            .signals
            .put_new(&signal.key(), signal.encode(), self.config.max_entries);
        let new = self.refused_if_full(new)?;
        self.update_gauges();
        Ok(new)
    }

    /// Every stored signal, ordered by origin then sequence number.
    pub fn signals(&self) -> Result<Vec<StoredSignal>, StoreError> {
        Ok(self
            .signals
            .decode_all(StoredSignal::decode, &self.metrics)?
            .into_iter()
            .map(|(_, _, signal)| signal)
            .collect())
    }

    // --- peers -----------------------------------------------------------------------

    /// Stores or refreshes what is known of a peer.
    pub fn put_peer(&self, peer: &StoredPeer) -> Result<(), StoreError> {
        let put = self
            .peers
            .put(peer.did.as_bytes(), peer.encode(), self.config.max_entries);
        self.refused_if_full(put)?;
        self.update_gauges();
        Ok(())
    }

    /// Forgets a peer (expelled, or gone for good).
    pub fn remove_peer(&self, did: &str) -> Result<bool, StoreError> {
        let old = self.peers.remove(did.as_bytes())?;
        self.update_gauges();
        Ok(old.is_some())
    }

    /// Every stored peer, ordered by DID.
    pub fn peers(&self) -> Result<Vec<StoredPeer>, StoreError> {
        Ok(self
            .peers
            .decode_all(StoredPeer::decode, &self.metrics)?
            .into_iter()
            .map(|(_, _, peer)| peer)
            .collect())
    }

    // --- housekeeping ----------------------------------------------------------------

    /// Removes what has lapsed at `now`: decisions past `until`, signals past their expiry,
    /// ban histories older than the retention, peers not seen within theirs. Undecodable
    /// records go too (they were counted when found).
    pub fn sweep(&self, now: SystemTime) -> Result<Swept, StoreError> {
        let history = self.config.history_retention;
        let peers = self.config.peer_retention;
        let swept = Swept {
            decisions: self.sweep_tree(&self.decisions, |_, value| {
                Decision::decode(value).is_ok_and(|d| d.is_active(now))
            })?,
            offenders: self.sweep_tree(&self.offenders, |_, value| {
                Offense::decode(value).is_ok_and(|o| lapsed_after(o.last_ban, history) > now)
            })?,
            signals: self.sweep_tree(&self.signals, |key, value| {
                StoredSignal::decode(key, value).is_ok_and(|s| s.expires_at > now)
            })?,
            peers: self.sweep_tree(&self.peers, |key, value| {
                StoredPeer::decode(key, value).is_ok_and(|p| lapsed_after(p.last_seen, peers) > now)
            })?,
        };
        self.update_gauges();
        Ok(swept)
    }

    fn sweep_tree(
        &self,
        tree: &Tree,
        keep: impl Fn(&[u8], &[u8]) -> bool,
    ) -> Result<u64, StoreError> {
        let mut removed = 0;
        for item in tree.tree.iter() {
            let (key, value) = item.map_err(tree.err())?;
            if !keep(&key, &value) && tree.remove_if_unchanged(&key, &value)? {
                removed += 1;
            }
        }
        self.metrics
            .swept
            .with_label_values(&[tree.name])
            .inc_by(removed);
        Ok(removed)
    }

    fn refused_if_full<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        if let Err(StoreError::Full { tree, .. }) = &result {
            self.metrics.refused.with_label_values(&[tree]).inc();
        }
        result
    }

    /// Number of records per tree: decisions, offenders, signals, peers.
    pub fn entries(&self) -> [(&'static str, u64); 4] {
        [&self.decisions, &self.offenders, &self.signals, &self.peers].map(|t| (t.name, t.len()))
    }

    fn update_gauges(&self) {
        for (tree, entries) in self.entries() {
            self.metrics
                .entries
                .with_label_values(&[tree])
                .set(entries as i64);
        }
        if let Ok(bytes) = self.db.size_on_disk() {
            self.metrics.bytes.set(bytes as i64);
        }
    }
}

/// Sweeps `store` every `every` until `stop` turns true (or its sender is gone): the task
/// the daemon runs next to the store.
pub async fn sweep_every(store: Arc<Store>, every: Duration, mut stop: watch::Receiver<bool>) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let stopped = tokio::select! {
            _ = ticks.tick() => false,
            _ = stop.wait_for(|stop| *stop) => true,
        };
        if stopped {
            break;
        }
        let store = Arc::clone(&store);
        // sled blocks; keep it off the async workers.
        match tokio::task::spawn_blocking(move || store.sweep(SystemTime::now())).await {
            Ok(Ok(swept)) if swept != Swept::default() => {
                tracing::debug!(?swept, "store swept");
            }
            Ok(Ok(_)) => {}
            Ok(Err(err)) => tracing::warn!(error = %err, "store sweep failed"),
            Err(err) => tracing::warn!(error = %err, "store sweep task failed"),
        }
    }
}

/// `time + retention`, saturating far in the future.
fn lapsed_after(time: SystemTime, retention: Duration) -> SystemTime {
    time.checked_add(retention)
        .unwrap_or(SystemTime::UNIX_EPOCH + Duration::from_secs(u64::from(u32::MAX) * 4))
}

/// The store's Prometheus metrics.
#[derive(Debug, Clone)]
struct StoreMetrics {
    /// `swarmguard_store_entries{tree}`: records per tree.
    entries: IntGaugeVec,
    /// `swarmguard_store_bytes`: the database's size on disk.
    bytes: IntGauge,
    /// `swarmguard_store_refused_total{tree}`: writes refused because the tree was full.
    refused: IntCounterVec,
    /// `swarmguard_store_swept_total{tree}`: records removed by sweeps.
    swept: IntCounterVec,
    /// `swarmguard_store_corrupt_total{tree}`: records that did not decode.
    corrupt: IntCounterVec,
}

impl StoreMetrics {
    fn new(metrics: &Metrics) -> StoreMetrics {
        let gauge_vec = |name: &str, help: &str| {
            IntGaugeVec::new(Opts::new(name, help), &["tree"]).expect("static metric definition")
        };
        let counter_vec = |name: &str, help: &str| {
            IntCounterVec::new(Opts::new(name, help), &["tree"]).expect("static metric definition")
        };
        StoreMetrics {
            entries: metrics.register(gauge_vec(
                "swarmguard_store_entries",
                "Records in the store, per tree.",
            )),
            bytes: metrics.register(
                IntGauge::new("swarmguard_store_bytes", "Size of the store on disk.")
                    .expect("static metric definition"),
            ),
            refused: metrics.register(counter_vec(
                "swarmguard_store_refused_total",
                "Writes refused because the tree held its maximum of records.",
            )),
            swept: metrics.register(counter_vec(
                "swarmguard_store_swept_total",
                "Lapsed records removed by sweeps.",
            )),
            corrupt: metrics.register(counter_vec(
                "swarmguard_store_corrupt_total",
                "Stored records that could not be decoded and were skipped.",
            )),
        }
    }

    fn corrupt(&self, tree: &'static str, key: &[u8], reason: &str) {
        self.corrupt.with_label_values(&[tree]).inc();
        tracing::warn!(
            tree,
            key = %String::from_utf8_lossy(key),
            reason,
            "skipping a stored record that does not decode"
        );
    }
}

/// How long [`Store::open`] waits for the database lock of a handle that is closing.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Opens the database, waiting a little while its file lock is still held. sled releases
/// the lock only when its background flusher has finished with a dropped handle, so a quick
/// reopen (a restart by systemd while the old process exits, a test reopening a store)
/// would otherwise fail for no lasting reason.
fn open_waiting_for_lock(config: &sled::Config) -> sled::Result<sled::Db> {
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        match config.open() {
            Err(sled::Error::Io(err))
                if err.to_string().starts_with("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests;
