//! Enforcement: makes the kernel carry out decisions. **Only this module touches the
//! kernel's packet filter.**
//!
//! A [`Backend`] receives [`Change`]s in batches and applies each batch as one unit; at
//! start it is [reconciled](Backend::reconcile) from the store's active decisions. Two
//! backends exist:
//!
//! - [`NftBackend`]: its own nftables table `inet swarmguard` with one interval set per
//!   address family, elements carrying the kernel timeout of their decision (so a stopped
//!   agent leaves nothing behind for longer than it decided), and drop rules in the input
//!   hook and, when configured, the forward hook. It speaks nft's JSON (`nft -j -f -`),
//!   built with the `nftables` crate's typed schema. `rustables` (netlink, no `nft`
//!   process) was not chosen: it is GPL-3.0, which the Apache-2.0 packages cannot ship.
//! - [`DryRun`]: logs and counts what it would do, for trials and the demo.
//!
//! A backend that cannot load its table says so (error log, `swarmguard_enforce_table_loaded
//! 0`, `swarmguard_nft_errors_total`) and returns an error; it never panics, and the agent
//! keeps detecting. The next batch tries to load the table again.

pub mod dns;
mod dry_run;
mod nftables;
mod pieces;

use std::fmt;
use std::time::SystemTime;

use ipnet::IpNet;
use prometheus::{IntCounterVec, IntGaugeVec, Opts};

pub use dry_run::DryRun;
pub use nftables::{NftBackend, NftCommand, NftConfig, TABLE};

use crate::api::Metrics;
use crate::decide::{Action, Decision};
use crate::subject::Subject;

/// One change of what the kernel blocks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Drop packets from `subject` until `until` (a later change may move `until`).
    Block { subject: Subject, until: SystemTime },
    /// Stop dropping packets from `subject`.
    Unblock { subject: Subject },
}

impl Change {
    /// The change that carries out `decision`, if this kind of backend acts on it: blocks of
    /// addresses and networks (domains go to the DNS sinkhole, alert-only to nobody).
    pub fn for_decision(decision: &Decision) -> Option<Change> {
        (decision.action == Action::Block && decision.subject.is_network()).then(|| Change::Block {
            subject: decision.subject.clone(),
            until: decision.until,
        })
    }

    /// The change that undoes `decision`, if a backend acted on it (see
    /// [`Change::for_decision`]).
    pub fn undo(decision: &Decision) -> Option<Change> {
        Change::for_decision(decision).map(|_| Change::Unblock {
            subject: decision.subject.clone(),
        })
    }

    pub fn subject(&self) -> &Subject {
        match self {
            Change::Block { subject, .. } | Change::Unblock { subject } => subject,
        }
    }
}

/// What a batch did to the kernel, counted in set elements.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Applied {
    /// Elements added.
    pub added: usize,
    /// Elements whose timeout was changed.
    pub updated: usize,
    /// Elements removed.
    pub removed: usize,
    /// Changes ignored because the backend does not act on them (domains).
    pub skipped: usize,
}

impl Applied {
    /// Whether the kernel was left as it was.
    pub fn is_noop(&self) -> bool {
        self.added == 0 && self.updated == 0 && self.removed == 0
    }
}

/// Why a backend could not do its work.
#[derive(Debug, thiserror::Error)]
pub enum EnforceError {
    /// The `nft` program could not be started.
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    /// `nft` refused the commands; `stderr` says why.
    #[error("{command} failed ({status}): {stderr}")]
    Nft {
        command: String,
        status: String,
        stderr: String,
    },
    /// `nft` printed something that is not the JSON it documents.
    #[error("unexpected output from {command}: {reason}")]
    Output { command: String, reason: String },
}

/// Makes the kernel block what the decisions say. Implementations are synchronous (a batch
/// is one short `nft` run); the agent calls them from a blocking task.
pub trait Backend: Send + fmt::Debug {
    /// `nftables` or `dry-run`.
    fn name(&self) -> &'static str;

    /// Makes the kernel block exactly `active` at `now`, creating the table if needed.
    /// Idempotent: a second run with the same decisions changes nothing.
    fn reconcile(&mut self, active: &[Decision], now: SystemTime) -> Result<Applied, EnforceError>;

    /// Applies `changes` as one transaction: all of them or none.
    fn apply(&mut self, changes: &[Change], now: SystemTime) -> Result<Applied, EnforceError>;

    /// Removes everything the backend put in the kernel (`swarmd cleanup`).
    fn cleanup(&mut self) -> Result<(), EnforceError>;
}

/// Which backend the agent runs (`enforce.backend`, `swarmd run --enforce`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    Nftables,
    DryRun,
}

impl BackendKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Nftables => "nftables",
            BackendKind::DryRun => "dry-run",
        }
    }

    pub fn from_name(name: &str) -> Option<BackendKind> {
        match name {
            "nftables" => Some(BackendKind::Nftables),
            "dry-run" => Some(BackendKind::DryRun),
            _ => None,
        }
    }
}

/// Enforcement settings (`[enforce]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnforceConfig {
    pub backend: BackendKind,
    pub nft: NftConfig,
}

impl Default for EnforceConfig {
    fn default() -> Self {
        EnforceConfig {
            backend: BackendKind::Nftables,
            nft: NftConfig::default(),
        }
    }
}

/// The configured backend, with its metrics registered.
pub fn backend(config: &EnforceConfig, metrics: &Metrics) -> Box<dyn Backend> {
    match config.backend {
        BackendKind::Nftables => Box::new(NftBackend::new(config.nft.clone(), metrics)),
        BackendKind::DryRun => Box::new(DryRun::new(metrics)),
    }
}

/// The network a subject blocks (`None` for domains), host bits cleared.
fn blocked_net(subject: &Subject) -> Option<IpNet> {
    match subject {
        Subject::Ip(ip) => Some(IpNet::from(*ip)),
        Subject::Net(net) => Some(net.trunc()),
        Subject::Domain(_) => None,
    }
}

/// Metrics every backend shares.
#[derive(Debug, Clone)]
struct EnforceMetrics {
    /// `swarmguard_enforce_changes_total{backend, change}`: changes applied.
    changes: IntCounterVec,
    /// `swarmguard_enforce_table_loaded{backend}`: 1 when the backend's table is in place.
    loaded: IntGaugeVec,
    /// `swarmguard_enforce_elements{backend, family}`: elements the backend holds.
    elements: IntGaugeVec,
    /// `swarmguard_nft_operations_total{op}`: nft runs (list, apply, cleanup).
    operations: IntCounterVec,
    /// `swarmguard_nft_errors_total{op}`: nft runs that failed.
    errors: IntCounterVec,
}

impl EnforceMetrics {
    fn new(metrics: &Metrics) -> EnforceMetrics {
        let counters = |name: &str, help: &str, labels: &[&str]| {
            metrics.register(
                IntCounterVec::new(Opts::new(name, help), labels)
                    .expect("static metric definition"),
            )
        };
        let gauges = |name: &str, help: &str, labels: &[&str]| {
            metrics.register(
                IntGaugeVec::new(Opts::new(name, help), labels).expect("static metric definition"),
            )
        };
        EnforceMetrics {
            changes: counters(
                "swarmguard_enforce_changes_total",
                "Block and unblock changes applied, by backend.",
                &["backend", "change"],
            ),
            loaded: gauges(
                "swarmguard_enforce_table_loaded",
                "1 when the backend's table is loaded; 0 means nothing is being blocked.",
                &["backend"],
            ),
            elements: gauges(
                "swarmguard_enforce_elements",
                "Set elements the backend holds in the kernel, by address family.",
                &["backend", "family"],
            ),
            operations: counters(
                "swarmguard_nft_operations_total",
                "nft runs, by operation.",
                &["op"],
            ),
            errors: counters(
                "swarmguard_nft_errors_total",
                "nft runs that failed, by operation.",
                &["op"],
            ),
        }
    }

    fn count_changes(&self, backend: &str, changes: &[Change]) {
        let blocks = changes
            .iter()
            .filter(|change| matches!(change, Change::Block { .. }))
            .count();
        self.changes
            .with_label_values(&[backend, "block"])
            .inc_by(blocks as u64);
        self.changes
            .with_label_values(&[backend, "unblock"])
            .inc_by((changes.len() - blocks) as u64);
    }

    fn set_elements<'a>(&self, backend: &str, nets: impl Iterator<Item = &'a IpNet>) {
        let (mut v4, mut v6) = (0i64, 0i64);
        for net in nets {
            match net {
                IpNet::V4(_) => v4 += 1,
                IpNet::V6(_) => v6 += 1,
            }
        }
        self.elements.with_label_values(&[backend, "ipv4"]).set(v4);
        self.elements.with_label_values(&[backend, "ipv6"]).set(v6);
    }
}
