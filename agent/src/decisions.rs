//! The decision stage as `swarmd run` runs it: one task owns the [`Policy`], and turns
//! alerts, swarm events and operator commands into decisions, which it stores, hands to
//! the enforcement backend in batches, and (when local) publishes to the swarm.
//!
//! Everything that changes decisions goes through this one task, so the store, the kernel
//! and the policy never disagree about ordering. Operator commands (`swarmctl decisions
//! add|delete`) are answered only after the decision is flushed to disk and applied to the
//! kernel.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec};
use tokio::sync::{mpsc, oneshot, watch};

use crate::api::Metrics;
use crate::api::alerts::{AlertLog, AlertRecord};
use crate::decide::policy::{OPERATOR_BLOCK, OPERATOR_LIFT};
use crate::decide::{
    Decision, OperatorDecision, Origin, Outcome, Policy, PolicyConfig, Proposal, Refusal,
};
use crate::detect::Alert;
use crate::enforce::dns::SinkholeHandle;
use crate::enforce::{Backend, Change};
use crate::store::{Durability, Store, StoreError, StoredSignal};
use crate::subject::Subject;
use crate::swarm::{Event, PeerId, Reason, Signal, SignalBody, SwarmLink, SwarmView};

/// Alerts and events handled before one batch goes to the kernel: enough to make a flood
/// cheap (one `nft` run per batch), small enough to keep latency low.
pub const BATCH: usize = 10_000;
/// How often lapsed records are swept, the quorum pruned and this host's addresses re-read.
pub const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(5);
/// Operator commands waiting for the stage.
const COMMAND_QUEUE: usize = 64;
/// The longest a published signal may live (the swarm refuses longer ones).
const MAX_SIGNAL_TTL: Duration = Duration::from_secs(24 * 3600);

/// What an operator asks of the stage; each carries where to send the answer.
#[derive(Debug)]
pub enum Command {
    /// `swarmctl decisions add [--swarm]`.
    Add {
        decision: OperatorDecision,
        /// Also sign it and tell the swarm (needs an operator credential).
        swarm: bool,
        reply: oneshot::Sender<Result<Decision, CommandError>>,
    },
    /// `swarmctl decisions delete [--swarm]`: the removed decision, if there was one.
    Delete {
        subject: Subject,
        /// Also lift it swarm-wide (needs an operator credential).
        swarm: bool,
        reply: oneshot::Sender<Result<Option<Decision>, CommandError>>,
    },
}

/// Why an operator command failed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The policy refused (allowlist).
    #[error("refused: {subject} is {reason}", reason = refusal_text(*.refusal))]
    Refused { subject: Subject, refusal: Refusal },
    /// The store could not keep it.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// The decision is stored but the kernel was not changed.
    #[error("stored, but the enforcement backend failed: {0}")]
    Enforce(String),
    /// A swarm-wide command from an agent that may not give one.
    #[error("{0}")]
    Forbidden(String),
    /// A request the swarm cannot carry (a swarm-wide decision longer than a signal lives).
    #[error("{0}")]
    Invalid(String),
    /// Done on this host, but the swarm was not told.
    #[error("{0}")]
    Unpublished(String),
    /// The stage has stopped.
    #[error("the agent is shutting down")]
    Stopped,
}

fn refusal_text(refusal: Refusal) -> &'static str {
    match refusal {
        Refusal::Allowlisted => "in an allowlisted network",
        Refusal::SwarmMember => "a swarm member's address",
        Refusal::Loopback => "a loopback address",
        Refusal::OwnAddress => "one of this host's own addresses",
        Refusal::QuorumFull => "not tracked: the quorum table is full",
    }
}

/// What `swarmctl status` shows of the stage.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StageStatus {
    /// `nftables` or `dry-run`.
    pub backend: &'static str,
    /// Whether the backend's last load or batch succeeded.
    pub backend_loaded: bool,
    /// Active decisions by origin kind (`local`, `quorum`, `operator`).
    pub active: BTreeMap<&'static str, u64>,
    /// Alerts the stage has seen since start.
    pub alerts: u64,
}

/// The admin API's handle on the stage.
#[derive(Debug, Clone)]
pub struct StageHandle {
    commands: mpsc::Sender<Command>,
    pub status: watch::Receiver<StageStatus>,
}

impl StageHandle {
    pub async fn add(
        &self,
        decision: OperatorDecision,
        swarm: bool,
    ) -> Result<Decision, CommandError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Add {
                decision,
                swarm,
                reply,
            })
            .await
            .map_err(|_| CommandError::Stopped)?;
        answer.await.map_err(|_| CommandError::Stopped)?
    }

    pub async fn delete(
        &self,
        subject: Subject,
        swarm: bool,
    ) -> Result<Option<Decision>, CommandError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Delete {
                subject,
                swarm,
                reply,
            })
            .await
            .map_err(|_| CommandError::Stopped)?;
        answer.await.map_err(|_| CommandError::Stopped)?
    }
}

/// The stage's metrics.
#[derive(Debug, Clone)]
struct StageMetrics {
    /// `swarmguard_decisions_total{origin}`: decisions made (new or renewed).
    made: IntCounterVec,
    /// `swarmguard_decisions_active{origin}`: decisions in force.
    active: IntGaugeVec,
    /// `swarmguard_decisions_refused_total{reason}`.
    refused: IntCounterVec,
    /// `swarmguard_alerts_total{rule}`: alerts the stage received.
    alerts: IntCounterVec,
    /// `swarmguard_signals_published_total`, and `..._publish_dropped_total` when the
    /// swarm's queue was full.
    published: IntCounter,
    publish_dropped: IntCounter,
    /// `swarmguard_signals_received_total`: signals the swarm handed to the stage.
    received: IntCounter,
    /// `swarmguard_quorum_subjects`: subjects with votes in the window.
    quorum_subjects: IntGauge,
    /// `swarmguard_operator_lifts`: subjects whose swarm-wide lift is remembered.
    lifts: IntGauge,
}

impl StageMetrics {
    fn new(metrics: &Metrics) -> StageMetrics {
        let vec = |name: &str, help: &str, label: &str| metrics.counter_vec(name, help, &[label]);
        let counter = |name: &str, help: &str| metrics.counter(name, help);
        let made = vec(
            "swarmguard_decisions_total",
            "Decisions made or renewed, by origin.",
            "origin",
        );
        let refused = vec(
            "swarmguard_decisions_refused_total",
            "Blocks the policy refused, by reason (allowlist, own address, ...).",
            "reason",
        );
        for refusal in Refusal::ALL {
            refused.with_label_values(&[refusal.as_str()]);
        }
        let active = metrics.gauge_vec(
            "swarmguard_decisions_active",
            "Decisions in force, by origin.",
            &["origin"],
        );
        for origin in ["local", "quorum", "operator"] {
            made.with_label_values(&[origin]);
            active.with_label_values(&[origin]);
        }
        StageMetrics {
            made,
            active,
            refused,
            alerts: vec(
                "swarmguard_alerts_total",
                "Alerts received by the decision stage, by rule.",
                "rule",
            ),
            published: counter(
                "swarmguard_signals_published_total",
                "Local decisions handed to the swarm as signals.",
            ),
            publish_dropped: counter(
                "swarmguard_signals_publish_dropped_total",
                "Local decisions not published because the swarm's queue was full.",
            ),
            received: counter(
                "swarmguard_signals_received_total",
                "Signals from the swarm handed to the decision stage.",
            ),
            quorum_subjects: metrics.gauge(
                "swarmguard_quorum_subjects",
                "Subjects with swarm votes within the quorum window.",
            ),
            lifts: metrics.gauge(
                "swarmguard_operator_lifts",
                "Subjects an operator lifted swarm-wide, remembered so that older signals \
                 about them do not count.",
            ),
        }
    }
}

fn origin_kind(origin: &Origin) -> &'static str {
    match origin {
        Origin::Local { .. } => "local",
        Origin::Quorum { .. } => "quorum",
        Origin::Operator { .. } => "operator",
    }
}

/// The decision stage, before it runs.
#[derive(Debug)]
pub struct Stage {
    policy: Policy,
    store: Arc<Store>,
    backend: Arc<Mutex<Box<dyn Backend>>>,
    backend_name: &'static str,
    link: Option<SwarmLink>,
    /// `None` once every detection sender is gone (no packet or log input configured).
    alerts: Option<mpsc::Receiver<Alert>>,
    /// `None` once the admin API is gone (or was never started).
    commands: Option<mpsc::Receiver<Command>>,
    alert_log: Arc<AlertLog>,
    metrics: StageMetrics,
    status: watch::Sender<StageStatus>,
    /// The DNS sinkhole, when `dns.listen` runs one: it answers for domain decisions.
    sinkhole: Option<SinkholeHandle>,
    /// This agent in the swarm, and the role its credential grants (from the node's view).
    me: Option<PeerId>,
    role: Option<String>,
}

impl Stage {
    /// Builds the stage and the handle the admin API uses.
    pub fn new(
        config: PolicyConfig,
        store: Arc<Store>,
        backend: Box<dyn Backend>,
        link: Option<SwarmLink>,
        alerts: mpsc::Receiver<Alert>,
        alert_log: Arc<AlertLog>,
        metrics: &Metrics,
    ) -> (Stage, StageHandle) {
        let (commands_tx, commands) = mpsc::channel(COMMAND_QUEUE);
        let backend_name = backend.name();
        let (status, status_rx) = watch::channel(StageStatus {
            backend: backend_name,
            ..StageStatus::default()
        });
        let stage = Stage {
            policy: Policy::new(config),
            store,
            backend: Arc::new(Mutex::new(backend)),
            backend_name,
            link,
            alerts: Some(alerts),
            commands: Some(commands),
            alert_log,
            metrics: StageMetrics::new(metrics),
            status,
            sinkhole: None,
            me: None,
            role: None,
        };
        let handle = StageHandle {
            commands: commands_tx,
            status: status_rx,
        };
        (stage, handle)
    }

    /// Domain decisions also go to this sinkhole (nftables cannot block a name).
    pub fn with_sinkhole(mut self, sinkhole: Option<SinkholeHandle>) -> Stage {
        self.sinkhole = sinkhole;
        self
    }

    /// Restores the swarm votes and reconciles the kernel from the store: what `swarmd`
    /// does before it says it is ready.
    pub async fn start(&mut self) {
        let now = SystemTime::now();
        self.refresh_own_addresses();
        if let Some(link) = &self.link {
            let view = link.view.borrow().clone();
            self.refresh_view(&view);
        }
        self.restore_votes(now, None);
        match self.store.active_decisions(now) {
            Ok(active) => {
                let count = active.len();
                let loaded = self.with_backend(move |b| b.reconcile(&active, now)).await;
                let ok = loaded.is_ok();
                match loaded {
                    Ok(applied) => tracing::info!(
                        backend = self.backend_name,
                        decisions = count,
                        added = applied.added,
                        updated = applied.updated,
                        removed = applied.removed,
                        "enforcement reconciled from the store"
                    ),
                    Err(err) => tracing::error!(
                        backend = self.backend_name,
                        error = %err,
                        "THE ENFORCEMENT BACKEND DID NOT LOAD: nothing is being blocked; \
                         detection goes on and every batch retries"
                    ),
                }
                self.status.send_modify(|s| s.backend_loaded = ok);
            }
            Err(err) => tracing::error!(error = %err, "cannot read decisions from the store"),
        }
        self.update_active(now);
    }

    /// Runs until `stop` turns true ([`Stage::start`] first).
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut events = self.link.as_mut().map(|link| {
            // The stage reads events through its own receiver; the link keeps the rest.
            std::mem::replace(&mut link.events, mpsc::channel(1).1)
        });
        let mut view = self.link.as_ref().map(|link| link.view.clone());
        let mut ticks = tokio::time::interval(HOUSEKEEPING_EVERY);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            let mut changes = Vec::new();
            let wake = tokio::select! {
                alert = next(&mut self.alerts) => Wake::Alert(alert),
                event = next(&mut events) => Wake::Event(event),
                changed = view_changed(&mut view) => Wake::View(changed),
                command = next(&mut self.commands) => Wake::Command(command),
                _ = ticks.tick() => Wake::Tick,
                _ = async { stop.wait_for(|stop| *stop).await.map(drop) } => Wake::Stop,
            };
            match wake {
                Wake::Alert(Some(alert)) => self.on_alert(alert, &mut changes),
                // No detection input (or it stopped); keep serving the rest until shutdown.
                Wake::Alert(None) => self.alerts = None,
                Wake::Event(Some(event)) => self.on_event(event, &mut changes),
                Wake::Event(None) => events = None,
                Wake::View(Some(snapshot)) => self.refresh_view(&snapshot),
                Wake::View(None) => view = None,
                Wake::Command(Some(command)) => {
                    self.on_command(command).await;
                    continue;
                }
                Wake::Command(None) => {
                    self.commands = None;
                    continue;
                }
                Wake::Tick => {
                    self.housekeeping().await;
                    continue;
                }
                Wake::Stop => break,
            }
            // Whatever else is already waiting joins this batch.
            while changes.len() < BATCH {
                if let Some(Ok(alert)) = self.alerts.as_mut().map(|a| a.try_recv()) {
                    self.on_alert(alert, &mut changes);
                } else if let Some(Ok(event)) = events.as_mut().map(|e| e.try_recv()) {
                    self.on_event(event, &mut changes);
                } else {
                    break;
                }
            }
            if !changes.is_empty() {
                let _ = self.apply(changes).await;
                self.update_active(SystemTime::now());
            }
        }
        if let Err(err) = self.store.flush() {
            tracing::warn!(error = %err, "cannot flush the store at shutdown");
        }
    }

    fn on_alert(&mut self, alert: Alert, changes: &mut Vec<Change>) {
        self.metrics
            .alerts
            .with_label_values(&[&alert.rule.id()])
            .inc();
        self.status.send_modify(|s| s.alerts += 1);
        let now = SystemTime::now();
        let outcome = match self.policy.on_alert(&alert) {
            Outcome::Propose(proposal) => {
                match self.enact(now, &proposal, Durability::Lazy, changes) {
                    Ok(Some(decision)) => {
                        tracing::warn!(
                            subject = %decision.subject,
                            rule = %alert.rule,
                            until = %humantime::format_rfc3339_seconds(decision.until),
                            "blocking: local detection"
                        );
                        "blocked".to_owned()
                    }
                    Ok(None) => "already-blocked".to_owned(),
                    Err(err) => {
                        tracing::error!(error = %err, "cannot store a decision");
                        format!("error: {err}")
                    }
                }
            }
            Outcome::Refused { subject, refusal } => {
                self.refused(&subject, refusal, &alert.rule.id());
                format!("refused: {}", refusal.as_str())
            }
            Outcome::Nothing | Outcome::Lift { .. } => "none".to_owned(),
        };
        self.alert_log.push(AlertRecord::new(&alert, outcome));
    }

    fn on_event(&mut self, event: Event, changes: &mut Vec<Change>) {
        let now = SystemTime::now();
        match event {
            Event::SignalReceived(signal) => {
                // The node has stored it (for the votes to survive a restart).
                self.metrics.received.inc();
                match self.policy.on_signal(now, &signal) {
                    Outcome::Propose(proposal) => {
                        match self.enact(now, &proposal, Durability::Lazy, changes) {
                            Ok(Some(decision)) => tracing::warn!(
                                subject = %decision.subject,
                                origin = %decision.origin,
                                until = %humantime::format_rfc3339_seconds(decision.until),
                                "blocking: the swarm decided"
                            ),
                            Ok(None) => {}
                            Err(err) => tracing::error!(error = %err, "cannot store a decision"),
                        }
                    }
                    Outcome::Refused { subject, refusal } => {
                        self.refused(&subject, refusal, &signal.origin().to_did());
                    }
                    Outcome::Lift { subject, operator } => {
                        self.metrics.lifts.set(self.policy.lifts() as i64);
                        match self.remove(&subject, Durability::Lazy, changes) {
                            Ok(Some(removed)) => {
                                tracing::warn!(subject = %subject, %operator, origin = %removed.origin, "decision lifted swarm-wide by an operator");
                            }
                            Ok(None) => {
                                tracing::info!(subject = %subject, %operator, "an operator lifted a subject this agent had not decided on")
                            }
                            Err(err) => tracing::error!(error = %err, "cannot remove a decision"),
                        }
                    }
                    Outcome::Nothing => {}
                }
            }
            Event::SignalsWithdrawn { origin, count } => {
                tracing::info!(origin = %origin, count, "an expelled member's signals no longer count");
                self.policy.withdraw(&origin);
            }
            Event::MemberDown(member) => {
                tracing::info!(peer = %member.peer, addr = %member.addr, "member down");
            }
            other => tracing::debug!(event = ?other, "swarm event"),
        }
    }

    async fn on_command(&mut self, command: Command) {
        match command {
            Command::Add {
                decision,
                swarm,
                reply,
            } => {
                let result = self.add(decision, swarm).await;
                self.update_active(SystemTime::now());
                let _ = reply.send(result);
            }
            Command::Delete {
                subject,
                swarm,
                reply,
            } => {
                let result = self.delete(subject, swarm).await;
                self.update_active(SystemTime::now());
                let _ = reply.send(result);
            }
        }
    }

    /// `swarmctl decisions add`: stored (flushed) and in the kernel before the answer;
    /// with `swarm`, then signed and handed to the swarm as this operator's decision.
    async fn add(
        &mut self,
        mut decision: OperatorDecision,
        swarm: bool,
    ) -> Result<Decision, CommandError> {
        let now = SystemTime::now();
        if swarm {
            decision.operator = self.operator_did()?;
            if decision.duration > MAX_SIGNAL_TTL {
                return Err(CommandError::Invalid(format!(
                    "a swarm-wide decision lasts at most {} (the longest a signal lives); \
                     add a local one, or add it again before it lapses",
                    humantime::format_duration(MAX_SIGNAL_TTL)
                )));
            }
        }
        let mut changes = Vec::new();
        let proposal = match self.policy.on_operator(decision) {
            Outcome::Propose(proposal) => proposal,
            Outcome::Refused { subject, refusal } => {
                self.refused(&subject, refusal, "operator");
                return Err(CommandError::Refused { subject, refusal });
            }
            Outcome::Nothing | Outcome::Lift { .. } => {
                return Err(CommandError::Enforce("nothing to do".into()));
            }
        };
        let decision = match self.enact(now, &proposal, Durability::Flushed, &mut changes)? {
            // An operator's decision replaces whatever was there.
            Some(decision) => decision,
            None => self
                .store
                .decision(&proposal.subject)?
                .ok_or(CommandError::Enforce("decision vanished".into()))?,
        };
        self.apply(changes).await.map_err(CommandError::Enforce)?;
        tracing::warn!(subject = %decision.subject, reason = %decision.reason, swarm, "operator decision added");
        if swarm {
            // Carried with millisecond precision: the lifetime stays what was asked.
            let observed_at = crate::swarm::signal::from_millis(
                crate::swarm::signal::to_millis(now).unwrap_or_default(),
            )
            .unwrap_or(now);
            self.publish_operator(SignalBody {
                subject: decision.subject.clone(),
                reason: Reason {
                    rule: truncate(&decision.reason),
                    class: OPERATOR_BLOCK.to_owned(),
                },
                severity: crate::detect::Severity::High,
                observed_at,
                expires_at: observed_at + proposal.duration.unwrap_or(MAX_SIGNAL_TTL),
            })?;
        }
        Ok(decision)
    }

    /// `swarmctl decisions delete`: removed from disk and kernel; with `swarm`, then a
    /// signed lift is handed to the swarm (even when this host had no decision on it).
    async fn delete(
        &mut self,
        subject: Subject,
        swarm: bool,
    ) -> Result<Option<Decision>, CommandError> {
        let operator = if swarm {
            Some(self.operator_did()?)
        } else {
            None
        };
        let mut changes = Vec::new();
        let removed = self.remove(&subject, Durability::Flushed, &mut changes)?;
        if removed.is_some() {
            tracing::warn!(subject = %subject, swarm, "decision deleted by an operator");
            self.apply(changes).await.map_err(CommandError::Enforce)?;
        }
        if let Some(operator) = operator {
            let now = SystemTime::now();
            tracing::warn!(subject = %subject, %operator, "lifting swarm-wide");
            self.publish_operator(SignalBody {
                subject,
                reason: Reason {
                    rule: "operator".to_owned(),
                    class: OPERATOR_LIFT.to_owned(),
                },
                severity: crate::detect::Severity::Info,
                observed_at: now,
                // As long as any decision it lifts may still be gossiped.
                expires_at: now + MAX_SIGNAL_TTL,
            })?;
        }
        Ok(removed)
    }

    /// Removes the decision on `subject` from the store and queues its kernel change.
    fn remove(
        &self,
        subject: &Subject,
        durability: Durability,
        changes: &mut Vec<Change>,
    ) -> Result<Option<Decision>, StoreError> {
        let removed = self.store.remove_decision(subject, durability)?;
        changes.extend(removed.as_ref().and_then(Change::undo));
        Ok(removed)
    }

    /// This agent's DID, when its membership credential lets it give swarm-wide orders.
    fn operator_did(&self) -> Result<String, CommandError> {
        if self.link.is_none() {
            return Err(CommandError::Forbidden(
                "this agent runs standalone (it has no membership credential): \
                 there is no swarm to tell"
                    .to_owned(),
            ));
        }
        match (self.me, self.role.as_deref()) {
            (Some(me), Some("operator")) => Ok(me.to_did()),
            (_, role) => Err(CommandError::Forbidden(format!(
                "this agent's membership credential grants the role {}, not operator: \
                 a swarm-wide decision needs an operator credential \
                 (swarmctl credential request --role operator)",
                role.unwrap_or("(unknown)")
            ))),
        }
    }

    /// Hands an operator's signal to the swarm; unlike detections, a full queue is the
    /// operator's error to see, not only a metric.
    fn publish_operator(&self, body: SignalBody) -> Result<(), CommandError> {
        let link = self.link.as_ref().ok_or_else(|| {
            CommandError::Unpublished("done on this host; there is no swarm".to_owned())
        })?;
        match link.publish.try_send(body) {
            Ok(()) => {
                self.metrics.published.inc();
                Ok(())
            }
            Err(_) => {
                self.metrics.publish_dropped.inc();
                Err(CommandError::Unpublished(
                    "done on this host, but the swarm's publish queue is full: \
                     the swarm was not told; try again"
                        .to_owned(),
                ))
            }
        }
    }

    /// Stores the decision a proposal leads to, queues its kernel change and publishes it
    /// when local. `None` when a decision in force already covers it.
    fn enact(
        &mut self,
        now: SystemTime,
        proposal: &Proposal,
        durability: Durability,
        changes: &mut Vec<Change>,
    ) -> Result<Option<Decision>, StoreError> {
        let existing = self.store.decision(&proposal.subject)?;
        let bans = if Policy::counts_as_ban(now, proposal, existing.as_ref()) {
            self.store.record_ban(&proposal.subject, now)?.bans
        } else {
            self.store
                .offense(&proposal.subject)?
                .map_or(1, |offense| offense.bans)
        };
        // Operators replace; the others only extend.
        let existing = existing.filter(|_| proposal.duration.is_none());
        let Some(decision) = self.policy.decide(now, proposal, bans, existing.as_ref()) else {
            return Ok(None);
        };
        self.store.put_decision(&decision, durability)?;
        self.metrics
            .made
            .with_label_values(&[origin_kind(&decision.origin)])
            .inc();
        if let Some(change) = Change::for_decision(&decision) {
            changes.push(change);
        }
        if let (Some(publish), Some(link)) = (&proposal.publish, &self.link) {
            // An alert from a replayed or late log line keeps its time only while it is
            // recent enough to count in a quorum window; the decision is made now.
            let observed_at = if publish.observed_at + self.policy.config().quorum.window > now {
                publish.observed_at.min(now)
            } else {
                now
            };
            let body = SignalBody {
                subject: decision.subject.clone(),
                reason: Reason {
                    rule: truncate(&publish.rule),
                    class: truncate(&publish.class),
                },
                severity: publish.severity,
                observed_at,
                expires_at: decision.until.min(observed_at + MAX_SIGNAL_TTL),
            };
            match link.publish.try_send(body) {
                Ok(()) => self.metrics.published.inc(),
                Err(_) => self.metrics.publish_dropped.inc(),
            }
        }
        Ok(Some(decision))
    }

    fn refused(&self, subject: &Subject, refusal: Refusal, by: &str) {
        self.metrics
            .refused
            .with_label_values(&[refusal.as_str()])
            .inc();
        tracing::warn!(
            subject = %subject,
            reason = refusal.as_str(),
            by,
            "not blocking: {}",
            refusal_text(refusal)
        );
    }

    /// Sends one batch to the backend. Errors are logged (the backend says what failed)
    /// and returned for operator commands; detection goes on either way.
    async fn apply(&mut self, changes: Vec<Change>) -> Result<(), String> {
        if changes.is_empty() {
            return Ok(());
        }
        let now = SystemTime::now();
        let result = self.with_backend(move |b| b.apply(&changes, now)).await;
        let loaded = result.is_ok();
        self.status.send_modify(|s| s.backend_loaded = loaded);
        result.map(drop).map_err(|err| err.to_string())
    }

    async fn with_backend<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Box<dyn Backend>) -> Result<T, crate::enforce::EnforceError>
        + Send
        + 'static,
    ) -> Result<T, crate::enforce::EnforceError> {
        let backend = Arc::clone(&self.backend);
        // nft is a process run; keep it off the async workers.
        tokio::task::spawn_blocking(move || {
            let mut backend = backend.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut backend)
        })
        .await
        .unwrap_or_else(|err| {
            Err(crate::enforce::EnforceError::Output {
                command: "enforce".to_owned(),
                reason: format!("the backend task failed: {err}"),
            })
        })
    }

    async fn housekeeping(&mut self) {
        let now = SystemTime::now();
        let store = Arc::clone(&self.store);
        match tokio::task::spawn_blocking(move || store.sweep(now)).await {
            Ok(Ok(swept)) if swept.decisions > 0 => {
                tracing::info!(decisions = swept.decisions, "lapsed decisions swept")
            }
            Ok(Ok(_)) => {}
            Ok(Err(err)) => tracing::warn!(error = %err, "store sweep failed"),
            Err(err) => tracing::warn!(error = %err, "store sweep task failed"),
        }
        // Kernel elements carry their own timeout and lapse with their decision: nothing
        // to remove there.
        self.policy.prune(now);
        self.metrics
            .quorum_subjects
            .set(self.policy.tracked_subjects() as i64);
        self.metrics.lifts.set(self.policy.lifts() as i64);
        self.refresh_own_addresses();
        self.update_active(now);
    }

    fn update_active(&self, now: SystemTime) {
        let mut active: BTreeMap<&'static str, u64> =
            [("local", 0), ("quorum", 0), ("operator", 0)].into();
        match self.store.active_decisions(now) {
            Ok(decisions) => {
                for decision in &decisions {
                    *active.entry(origin_kind(&decision.origin)).or_default() += 1;
                }
                // Called after every change and sweep: the sinkhole answers for the
                // domain decisions in force (nftables cannot block a name).
                if let Some(sinkhole) = &self.sinkhole {
                    sinkhole.set_decisions(&decisions);
                }
            }
            Err(err) => tracing::warn!(error = %err, "cannot read the decisions in force"),
        }
        for (origin, count) in &active {
            self.metrics
                .active
                .with_label_values(&[origin])
                .set(*count as i64);
        }
        self.status.send_modify(|s| s.active = active);
    }

    fn refresh_view(&mut self, view: &SwarmView) {
        self.me = view.me;
        self.role = view.role.clone();
        self.policy
            .allowlist_mut()
            .set_members(view.members.iter().map(|m| m.addr.ip()));
        let added = self.policy.set_operators(
            view.members
                .iter()
                .filter(|m| m.role == "operator")
                .map(|m| m.peer),
        );
        if !added.is_empty() {
            // Their stored signals were counted before they were known as operators (at
            // start the view is empty): their lifts must void older signals again.
            let added: HashSet<String> = added.iter().map(PeerId::to_did).collect();
            self.restore_votes(SystemTime::now(), Some(&added));
        }
    }

    fn refresh_own_addresses(&mut self) {
        let own = own_addresses();
        self.policy.allowlist_mut().set_own(own);
    }

    /// Counts the stored, still live signals again (of the origins in `only`, when given),
    /// so that a quorum in progress and operators' lifts survive a restart. Each is
    /// re-verified: the store is not trusted more than the network.
    fn restore_votes(&mut self, now: SystemTime, only: Option<&HashSet<String>>) {
        let Ok(signals) = self.store.signals() else {
            return;
        };
        let mut restored = 0;
        // The node stores what it publishes too; live, our own signals are no votes here.
        let me = self.me.map(|me| me.to_did());
        let wanted = |s: &&StoredSignal| {
            s.expires_at > now
                && me.as_ref() != Some(&s.origin)
                && only.is_none_or(|origins| origins.contains(&s.origin))
        };
        for stored in signals.iter().filter(wanted) {
            let Ok(signal) = Signal::decode(&stored.body) else {
                continue;
            };
            if signal.verify() {
                // Decisions they led to are in the store already; only the votes matter.
                let _ = self.policy.on_signal(now, &signal);
                restored += 1;
            }
        }
        self.metrics.lifts.set(self.policy.lifts() as i64);
        if restored > 0 {
            tracing::info!(signals = restored, "swarm votes restored from the store");
        }
    }
}

fn truncate(text: &str) -> String {
    let mut end = text.len().min(crate::swarm::signal::MAX_REASON_LEN);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let out = &text[..end];
    if out.is_empty() {
        "local".to_owned()
    } else {
        out.to_owned()
    }
}

/// What woke the stage up.
enum Wake {
    Alert(Option<Alert>),
    Event(Option<Event>),
    View(Option<SwarmView>),
    Command(Option<Command>),
    Tick,
    Stop,
}

/// The next message of a channel that may be gone: a gone one never wakes the stage.
async fn next<T>(channel: &mut Option<mpsc::Receiver<T>>) -> Option<T> {
    match channel {
        Some(channel) => channel.recv().await,
        None => std::future::pending().await,
    }
}

async fn view_changed(view: &mut Option<watch::Receiver<SwarmView>>) -> Option<SwarmView> {
    match view {
        Some(view) => match view.changed().await {
            Ok(()) => Some(view.borrow_and_update().clone()),
            Err(_) => None,
        },
        None => std::future::pending().await,
    }
}

/// This host's addresses (in the agent's network namespace): never blocked. Read from
/// `/proc/net/fib_trie` (IPv4 `host LOCAL` routes) and `/proc/net/if_inet6`; a host
/// without them (or a test sandbox) simply has none listed.
pub fn own_addresses() -> Vec<IpAddr> {
    let mut out = Vec::new();
    if let Ok(trie) = std::fs::read_to_string("/proc/net/fib_trie") {
        out.extend(local_ipv4(&trie));
    }
    if let Ok(table) = std::fs::read_to_string("/proc/net/if_inet6") {
        out.extend(table.lines().filter_map(|line| {
            let hex = line.split_whitespace().next()?;
            let bits = u128::from_str_radix(hex, 16).ok()?;
            Some(IpAddr::V6(std::net::Ipv6Addr::from(bits)))
        }));
    }
    out.sort();
    out.dedup();
    out
}

/// The addresses of `/32 host LOCAL` entries: each follows the `|-- ADDR` line it belongs to.
fn local_ipv4(trie: &str) -> Vec<IpAddr> {
    let mut out = Vec::new();
    let mut last: Option<IpAddr> = None;
    for line in trie.lines() {
        let line = line.trim();
        if let Some(addr) = line.strip_prefix("|-- ") {
            last = addr.parse().ok();
        } else if line.starts_with("/32 host LOCAL") {
            out.extend(last);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_ipv4_addresses_come_from_the_fib_trie() {
        let trie = "Main:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 0.0.0.0\n        /0 universe UNICAST\n     +-- 10.77.0.0/24 2 0 2\n        |-- 10.77.0.0\n           /24 link UNICAST\n        |-- 10.77.0.1\n           /32 host LOCAL\nLocal:\n     |-- 127.0.0.1\n        /32 host LOCAL\n";
        assert_eq!(
            local_ipv4(trie),
            [
                "10.77.0.1".parse::<IpAddr>().unwrap(),
                "127.0.0.1".parse().unwrap()
            ]
        );
    }

    #[test]
    fn reasons_are_cut_to_what_a_signal_carries() {
        assert_eq!(truncate(&"é".repeat(40)).len(), 64);
        assert_eq!(truncate(""), "local");
    }
}
