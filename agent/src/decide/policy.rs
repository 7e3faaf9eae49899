//! [`Policy`]: the rules of `DESIGN.md` that turn what this host saw and what the swarm
//! says into [`Decision`]s. Sans-IO: every input comes with `now`, the offender history
//! comes in as a number, and the outputs are values — the daemon stores, enforces and
//! publishes them.
//!
//! A subject is blocked when
//! 1. a local alert's rule says `drop`/`reject`, or its severity reaches
//!    [`PolicyConfig::block_severity`];
//! 2. [`Quorum`] distinct members signalled it within the window, or their summed
//!    severity passed the threshold (each origin counted once);
//! 3. an operator decided so: `swarmctl decisions add` on this host, or a signed signal
//!    from a member whose credential grants the `operator` role. Such a member lifts its
//!    decision swarm-wide with a signal of class [`OPERATOR_LIFT`]: every decision on the
//!    subject goes, and whatever was observed about it before the lift no longer counts.
//!
//! The [`Allowlist`] always wins: a subject that is, or covers, a configured network, a
//! swarm member's address, loopback or one of this host's own addresses is refused, with
//! the [`Refusal`] saying which.
//!
//! Ban time grows for repeat offenders: `base * factor^(bans - 1)`, capped
//! ([`BanTime::for_ban`]). Domains are sinkholed rather than blocked.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use ipnet::IpNet;

use super::quorum::{Quorum, QuorumConfig, Tally};
use super::{Action, Decision, Origin};
use crate::detect::{Alert, Severity};
use crate::subject::Subject;
use crate::swarm::{PeerId, Signal};

/// `reason.class` of a swarm-wide operator decision (`swarmctl decisions add --swarm`).
pub const OPERATOR_BLOCK: &str = "operator-block";
/// `reason.class` of an operator's swarm-wide lift (`swarmctl decisions delete --swarm`).
pub const OPERATOR_LIFT: &str = "operator-lift";
/// How many lifts are remembered, and for how long: as long as any signal they cancel
/// may still be gossiped (a signal lives at most 24 h).
pub const MAX_LIFTS: usize = 4096;
pub const LIFT_MEMORY: Duration = Duration::from_secs(24 * 3600);

/// How long bans last, and how they grow for repeat offenders.
#[derive(Debug, Clone, PartialEq)]
pub struct BanTime {
    /// The first ban of a subject.
    pub base: Duration,
    /// Each further ban (within the store's history retention) lasts this much longer.
    pub factor: f64,
    /// No ban lasts longer.
    pub cap: Duration,
}

impl Default for BanTime {
    fn default() -> Self {
        BanTime {
            base: Duration::from_secs(3600),
            factor: 2.0,
            cap: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

impl BanTime {
    /// How long ban number `bans` (1 for the first) lasts.
    pub fn for_ban(&self, bans: u32) -> Duration {
        let exponent = bans.saturating_sub(1).min(64) as i32;
        let secs = self.base.as_secs_f64() * self.factor.max(1.0).powi(exponent);
        if !secs.is_finite() || secs >= self.cap.as_secs_f64() {
            self.cap
        } else {
            Duration::from_secs_f64(secs).min(self.cap)
        }
    }
}

/// The policy's settings (`[decide]` in `agent.toml`).
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyConfig {
    /// Local alerts of this severity or more block even when their rule only says
    /// `alert`; `None` blocks only on `drop`/`reject` rules.
    pub block_severity: Option<Severity>,
    /// The swarm rule: how many distinct members, within which window, or which summed
    /// severity.
    pub quorum: QuorumConfig,
    pub ban: BanTime,
    /// Networks never blocked, whatever anyone says.
    pub allowlist: Vec<IpNet>,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            block_severity: Some(Severity::High),
            quorum: QuorumConfig::default(),
            ban: BanTime::default(),
            allowlist: Vec::new(),
        }
    }
}

/// Why a subject that something asked to block is not blocked. Counted in
/// `swarmguard_decisions_refused_total{reason}` and logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// In (or covering) a configured allowlisted network.
    Allowlisted,
    /// A swarm member's address.
    SwarmMember,
    /// Loopback, unspecified or link-local multicast: never an attacker.
    Loopback,
    /// One of this host's own addresses.
    OwnAddress,
    /// Too many subjects are being counted towards a quorum already.
    QuorumFull,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Allowlisted => "allowlisted",
            Refusal::SwarmMember => "swarm_member",
            Refusal::Loopback => "loopback",
            Refusal::OwnAddress => "own_address",
            Refusal::QuorumFull => "quorum_full",
        }
    }

    /// Every reason, for metrics that should show zeros.
    pub const ALL: [Refusal; 5] = [
        Refusal::Allowlisted,
        Refusal::SwarmMember,
        Refusal::Loopback,
        Refusal::OwnAddress,
        Refusal::QuorumFull,
    ];
}

/// The networks that are never blocked, refreshed by the daemon as members come and go
/// and as this host's addresses change.
#[derive(Debug, Clone, Default)]
pub struct Allowlist {
    configured: Vec<IpNet>,
    members: HashSet<IpAddr>,
    own: HashSet<IpAddr>,
}

impl Allowlist {
    pub fn new(configured: Vec<IpNet>) -> Allowlist {
        Allowlist {
            configured,
            ..Allowlist::default()
        }
    }

    pub fn set_members(&mut self, members: impl IntoIterator<Item = IpAddr>) {
        self.members = members.into_iter().map(canonical).collect();
    }

    pub fn set_own(&mut self, own: impl IntoIterator<Item = IpAddr>) {
        self.own = own.into_iter().map(canonical).collect();
    }

    /// Why `subject` must not be blocked, if it must not. A network is refused when it
    /// contains anything allowlisted; domains are never refused here.
    pub fn check(&self, subject: &Subject) -> Option<Refusal> {
        let net = match subject {
            Subject::Ip(ip) => IpNet::from(canonical(*ip)),
            Subject::Net(net) => *net,
            Subject::Domain(_) => return None,
        };
        let covers = |ip: &IpAddr| net.contains(ip);
        if is_loopback(&net) {
            return Some(Refusal::Loopback);
        }
        if self.own.iter().any(covers) {
            return Some(Refusal::OwnAddress);
        }
        if self.members.iter().any(covers) {
            return Some(Refusal::SwarmMember);
        }
        if self
            .configured
            .iter()
            .any(|allowed| allowed.contains(&net) || net.contains(allowed))
        {
            return Some(Refusal::Allowlisted);
        }
        None
    }
}

/// `::ffff:a.b.c.d` is the IPv4 address it maps.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn is_loopback(net: &IpNet) -> bool {
    let loopback: [IpNet; 4] = [
        "127.0.0.0/8".parse().expect("static network"),
        "::1/128".parse().expect("static network"),
        "0.0.0.0/32".parse().expect("static network"),
        "::/128".parse().expect("static network"),
    ];
    loopback
        .iter()
        .any(|lo| lo.contains(net) || net.contains(lo))
}

/// What the policy asks for: a decision to make, before its ban time is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposal {
    pub subject: Subject,
    pub action: Action,
    pub origin: Origin,
    pub reason: String,
    /// A fixed duration (an operator's), or `None` to scale with the offender's history.
    pub duration: Option<Duration>,
    /// Whether to tell the swarm (local detections only: quorum and swarm operator
    /// decisions came from it).
    pub publish: Option<Publish>,
}

/// What a published signal says about a local detection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    pub rule: String,
    pub class: String,
    pub severity: Severity,
    pub observed_at: SystemTime,
}

/// What an input led to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Make this decision.
    Propose(Proposal),
    /// The subject would be blocked, but the allowlist (or a bound) says no.
    Refused { subject: Subject, refusal: Refusal },
    /// An operator lifted every decision on the subject, swarm-wide.
    Lift { subject: Subject, operator: String },
    /// Not (yet) a reason to act: a low-severity alert, a quorum not reached.
    Nothing,
}

/// An operator's decision as it reaches the policy: from `swarmctl decisions add` on this
/// host (`operator` is `local`), or from the swarm as a signal signed by a member whose
/// credential grants the operator role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorDecision {
    pub subject: Subject,
    pub duration: Duration,
    pub reason: String,
    /// The operator's DID, or `local`.
    pub operator: String,
}

/// The decision policy; see the module documentation.
#[derive(Debug)]
pub struct Policy {
    config: PolicyConfig,
    quorum: Quorum<PeerId>,
    allowlist: Allowlist,
    /// Members whose credential grants the operator role: their signals are decisions.
    operators: HashSet<PeerId>,
    /// Subjects an operator lifted, with when: signals observed before then are void.
    lifts: HashMap<Subject, SystemTime>,
}

impl Policy {
    pub fn new(config: PolicyConfig) -> Policy {
        Policy {
            quorum: Quorum::new(config.quorum.clone()),
            allowlist: Allowlist::new(config.allowlist.clone()),
            operators: HashSet::new(),
            lifts: HashMap::new(),
            config,
        }
    }

    pub fn config(&self) -> &PolicyConfig {
        &self.config
    }

    /// The allowlist, for the daemon to refresh members and own addresses.
    pub fn allowlist_mut(&mut self) -> &mut Allowlist {
        &mut self.allowlist
    }

    /// Sets which members hold an operator credential; returns those not known before.
    pub fn set_operators(&mut self, operators: impl IntoIterator<Item = PeerId>) -> Vec<PeerId> {
        let operators: HashSet<PeerId> = operators.into_iter().collect();
        let added = operators.difference(&self.operators).copied().collect();
        self.operators = operators;
        added
    }

    /// A local detection.
    pub fn on_alert(&mut self, alert: &Alert) -> Outcome {
        // A client asking for a sinkholed name is likely infected or misused: reported,
        // never blocked for it (it is usually one of ours).
        if matches!(alert.rule, crate::detect::RuleRef::Sinkhole { .. }) {
            return Outcome::Nothing;
        }
        let blocks = alert.action.blocks()
            || self
                .config
                .block_severity
                .is_some_and(|level| alert.severity >= level);
        let Some(src) = alert.src else {
            return Outcome::Nothing;
        };
        if !blocks {
            return Outcome::Nothing;
        }
        let subject = Subject::Ip(src);
        if let Some(refusal) = self.allowlist.check(&subject) {
            return Outcome::Refused { subject, refusal };
        }
        let (rule, class) = match &alert.rule {
            crate::detect::RuleRef::Packet { classtype, .. } => {
                (alert.rule.id(), classtype.clone().unwrap_or_default())
            }
            crate::detect::RuleRef::Scenario { .. } => (alert.rule.id(), "scenario".to_owned()),
            crate::detect::RuleRef::Sinkhole { .. } => (alert.rule.id(), "dns-sinkhole".to_owned()),
        };
        Outcome::Propose(Proposal {
            action: action_for(&subject),
            subject,
            origin: Origin::Local { rule: rule.clone() },
            reason: alert.rule.to_string(),
            duration: None,
            publish: Some(Publish {
                rule,
                class,
                severity: alert.severity,
                observed_at: alert.time,
            }),
        })
    }

    /// A signal from the swarm, already verified by the swarm node (signature,
    /// membership, liveness, rate).
    pub fn on_signal(&mut self, now: SystemTime, signal: &Signal) -> Outcome {
        let subject = signal.subject().clone();
        let from_operator = self.operators.contains(&signal.origin());
        if signal.reason().class == OPERATOR_LIFT {
            if !from_operator {
                // Not a detection, and not this member's to say.
                return Outcome::Nothing;
            }
            self.lift(now, &subject, signal.observed_at());
            return Outcome::Lift {
                subject,
                operator: signal.origin().to_did(),
            };
        }
        if self
            .lifts
            .get(&subject)
            .is_some_and(|lifted| signal.observed_at() <= *lifted)
        {
            // Delayed in gossip past an operator's lift of the same subject.
            return Outcome::Nothing;
        }
        if let Some(refusal) = self.allowlist.check(&subject) {
            return Outcome::Refused { subject, refusal };
        }
        if from_operator {
            let duration = signal
                .expires_at()
                .duration_since(now)
                .unwrap_or(Duration::ZERO);
            if duration.is_zero() {
                return Outcome::Nothing;
            }
            return Outcome::Propose(Proposal {
                action: action_for(&subject),
                reason: format!("operator signal: {}", signal.reason().rule),
                origin: Origin::Operator {
                    did: signal.origin().to_did(),
                },
                subject,
                duration: Some(duration),
                publish: None,
            });
        }
        match self.quorum.vote(
            now,
            &subject,
            signal.origin(),
            signal.observed_at(),
            signal.severity(),
        ) {
            Tally::Reached { origins } => Outcome::Propose(Proposal {
                action: action_for(&subject),
                reason: format!(
                    "{} members signalled it within {}; latest: {}",
                    origins.len(),
                    humantime::format_duration(self.config.quorum.window),
                    signal.reason().rule
                ),
                origin: Origin::Quorum {
                    origins: origins.len() as u32,
                },
                subject,
                duration: None,
                publish: None,
            }),
            Tally::Below { .. } => Outcome::Nothing,
            Tally::Untracked => Outcome::Refused {
                subject,
                refusal: Refusal::QuorumFull,
            },
        }
    }

    /// An operator's decision.
    pub fn on_operator(&mut self, decision: OperatorDecision) -> Outcome {
        let subject = decision.subject;
        if let Some(refusal) = self.allowlist.check(&subject) {
            return Outcome::Refused { subject, refusal };
        }
        Outcome::Propose(Proposal {
            action: action_for(&subject),
            subject,
            origin: Origin::Operator {
                did: decision.operator,
            },
            reason: decision.reason,
            duration: Some(decision.duration),
            publish: None,
        })
    }

    /// Records an operator's lift of `subject` observed at `at`: the votes on it are
    /// forgotten, and signals observed before `at` will not count.
    fn lift(&mut self, now: SystemTime, subject: &Subject, at: SystemTime) {
        let at = at.min(now);
        self.quorum.forget(subject);
        if !self.lifts.contains_key(subject) && self.lifts.len() >= MAX_LIFTS {
            self.prune_lifts(now);
            if self.lifts.len() >= MAX_LIFTS {
                // Full of live lifts: the oldest one goes.
                if let Some(oldest) = self
                    .lifts
                    .iter()
                    .min_by_key(|(_, at)| **at)
                    .map(|(subject, _)| subject.clone())
                {
                    self.lifts.remove(&oldest);
                }
            }
        }
        let entry = self.lifts.entry(subject.clone()).or_insert(at);
        *entry = (*entry).max(at);
    }

    fn prune_lifts(&mut self, now: SystemTime) {
        self.lifts.retain(|_, at| {
            now.duration_since(*at)
                .map_or(true, |age| age <= LIFT_MEMORY)
        });
    }

    /// Subjects with an operator's lift remembered (for the metric).
    pub fn lifts(&self) -> usize {
        self.lifts.len()
    }

    /// An expelled member's signals no longer count.
    pub fn withdraw(&mut self, origin: &PeerId) {
        self.quorum.withdraw(origin);
    }

    /// Forgets votes that left the window (call now and then).
    pub fn prune(&mut self, now: SystemTime) {
        self.quorum.prune(now);
        self.prune_lifts(now);
    }

    /// Subjects with votes counting towards a quorum.
    pub fn tracked_subjects(&self) -> usize {
        self.quorum.len()
    }

    /// Turns a proposal into the decision to store, given the subject's ban count
    /// including this one (from the store's offender history) and the decision already
    /// in force on it. `None` when the existing one already covers it (same action, and
    /// less than a tenth of the ban would be added): a repeated alert does not escalate a
    /// ban that is running, it only renews it now and then.
    pub fn decide(
        &self,
        now: SystemTime,
        proposal: &Proposal,
        bans: u32,
        existing: Option<&Decision>,
    ) -> Option<Decision> {
        let duration = proposal
            .duration
            .unwrap_or_else(|| self.config.ban.for_ban(bans.max(1)));
        let until = now.checked_add(duration)?;
        if let Some(existing) = existing.filter(|d| d.is_active(now)) {
            // Renewing a running ban for every echo of the same attack would rewrite the
            // store and the kernel on each packet; renew once a tenth of it has passed.
            if existing.action == proposal.action && existing.until + duration / 10 >= until {
                return None;
            }
        }
        Some(Decision {
            subject: proposal.subject.clone(),
            action: proposal.action,
            until,
            origin: proposal.origin.clone(),
            reason: proposal.reason.clone(),
            created: now,
        })
    }

    /// Whether a proposal should count as a new ban in the offender history: not when a
    /// decision of the same action is already in force (the attacker is blocked; more
    /// alerts about it are echoes), and not for fixed-length operator decisions.
    pub fn counts_as_ban(
        now: SystemTime,
        proposal: &Proposal,
        existing: Option<&Decision>,
    ) -> bool {
        proposal.duration.is_none()
            && !existing.is_some_and(|d| d.is_active(now) && d.action == proposal.action)
    }
}

/// Addresses and networks are blocked; domains are sinkholed.
fn action_for(subject: &Subject) -> Action {
    if subject.is_network() {
        Action::Block
    } else {
        Action::Sinkhole
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;
    use crate::detect::{Evidence, RuleRef};
    use crate::swarm::{Reason, SignalBody, SigningKey};

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    fn alert(src: &str, action: crate::detect::Action, severity: Severity) -> Alert {
        Alert {
            rule: RuleRef::Packet {
                gid: 1,
                sid: 9000007,
                rev: 1,
                msg: "SWARMGUARD SCAN UDP empty probes".to_owned(),
                classtype: Some("attempted-recon".to_owned()),
            },
            action,
            severity,
            src: Some(src.parse().unwrap()),
            src_port: Some(4000),
            dst: Some("10.0.0.1".parse().unwrap()),
            dst_port: Some(53),
            time: at(0),
            evidence: Evidence::Packet {
                summary: "udp".to_owned(),
            },
        }
    }

    fn key(n: u8) -> SigningKey {
        SigningKey::from_seed(&[n; 32]).unwrap()
    }

    fn signal(key: &SigningKey, seq: u64, subject: &str, observed: SystemTime) -> Signal {
        signed(
            key,
            seq,
            subject,
            observed,
            ("1:9000007", "attempted-recon"),
            Severity::Medium,
        )
    }

    /// An operator's swarm-wide block or lift.
    fn classed(
        key: &SigningKey,
        seq: u64,
        subject: &str,
        observed: SystemTime,
        class: &str,
    ) -> Signal {
        signed(
            key,
            seq,
            subject,
            observed,
            ("operator", class),
            Severity::High,
        )
    }

    fn signed(
        key: &SigningKey,
        seq: u64,
        subject: &str,
        observed: SystemTime,
        (rule, class): (&str, &str),
        severity: Severity,
    ) -> Signal {
        Signal::sign(
            key,
            seq,
            SignalBody {
                subject: subject.parse().unwrap(),
                reason: Reason {
                    rule: rule.to_owned(),
                    class: class.to_owned(),
                },
                severity,
                observed_at: observed,
                expires_at: observed + Duration::from_secs(3600),
            },
        )
        .unwrap()
    }

    fn proposal(outcome: Outcome) -> Proposal {
        match outcome {
            Outcome::Propose(proposal) => proposal,
            other => panic!("expected a proposal, got {other:?}"),
        }
    }

    #[test]
    fn local_alerts_block_by_rule_action_or_severity() {
        let mut policy = Policy::new(PolicyConfig::default());
        use crate::detect::Action::*;
        let dropped = proposal(policy.on_alert(&alert("203.0.113.9", Drop, Severity::Low)));
        assert_eq!(dropped.action, Action::Block);
        assert_eq!(
            dropped.origin,
            Origin::Local {
                rule: "1:9000007".to_owned()
            }
        );
        let publish = dropped.publish.unwrap();
        assert_eq!(
            (publish.rule.as_str(), publish.class.as_str()),
            ("1:9000007", "attempted-recon")
        );
        assert!(matches!(
            policy.on_alert(&alert("203.0.113.9", Reject, Severity::Info)),
            Outcome::Propose(_)
        ));
        assert!(matches!(
            policy.on_alert(&alert("203.0.113.9", Alert, Severity::High)),
            Outcome::Propose(_)
        ));
        assert_eq!(
            policy.on_alert(&alert("203.0.113.9", Alert, Severity::Medium)),
            Outcome::Nothing
        );
        let mut strict = Policy::new(PolicyConfig {
            block_severity: None,
            ..PolicyConfig::default()
        });
        assert_eq!(
            strict.on_alert(&alert("203.0.113.9", Alert, Severity::Critical)),
            Outcome::Nothing
        );
    }

    #[test]
    fn a_sinkhole_hit_never_blocks_the_client_that_asked() {
        let mut policy = Policy::new(PolicyConfig {
            block_severity: Some(Severity::Info),
            ..PolicyConfig::default()
        });
        let mut hit = alert("10.0.0.7", crate::detect::Action::Alert, Severity::Critical);
        hit.rule = RuleRef::Sinkhole {
            domain: "evil.example".to_owned(),
        };
        assert_eq!(policy.on_alert(&hit), Outcome::Nothing);
    }

    #[test]
    fn the_allowlist_always_wins_and_says_why() {
        let mut policy = Policy::new(PolicyConfig {
            allowlist: vec!["198.51.100.0/24".parse().unwrap()],
            ..PolicyConfig::default()
        });
        policy
            .allowlist_mut()
            .set_members(["10.0.0.2".parse().unwrap()]);
        policy
            .allowlist_mut()
            .set_own(["10.0.0.1".parse().unwrap()]);
        use crate::detect::Action::Drop;
        for (src, refusal) in [
            ("198.51.100.7", Refusal::Allowlisted),
            ("10.0.0.2", Refusal::SwarmMember),
            ("::ffff:10.0.0.2", Refusal::SwarmMember),
            ("10.0.0.1", Refusal::OwnAddress),
            ("127.0.0.1", Refusal::Loopback),
            ("::1", Refusal::Loopback),
        ] {
            assert_eq!(
                policy.on_alert(&alert(src, Drop, Severity::Critical)),
                Outcome::Refused {
                    subject: Subject::Ip(src.parse().unwrap()),
                    refusal
                },
                "{src}"
            );
        }
        // A network that would cover a member is refused too, from any input.
        let refused = policy.on_operator(OperatorDecision {
            subject: "10.0.0.0/8".parse().unwrap(),
            duration: Duration::from_secs(60),
            reason: String::new(),
            operator: "local".to_owned(),
        });
        assert!(matches!(
            refused,
            Outcome::Refused {
                refusal: Refusal::OwnAddress,
                ..
            }
        ));
        let a = key(1);
        assert!(matches!(
            policy.on_signal(at(0), &signal(&a, 1, "198.51.100.0/25", at(0))),
            Outcome::Refused {
                refusal: Refusal::Allowlisted,
                ..
            }
        ));
    }

    #[test]
    fn quorum_needs_distinct_members_and_counts_each_once() {
        let mut policy = Policy::new(PolicyConfig::default());
        let (a, b, c) = (key(1), key(2), key(3));
        for seq in 1..=10 {
            assert_eq!(
                policy.on_signal(at(seq), &signal(&a, seq, "203.0.113.9", at(seq))),
                Outcome::Nothing
            );
        }
        assert_eq!(
            policy.on_signal(at(20), &signal(&b, 1, "203.0.113.9", at(20))),
            Outcome::Nothing
        );
        let reached = proposal(policy.on_signal(at(30), &signal(&c, 1, "203.0.113.9", at(30))));
        assert_eq!(reached.origin, Origin::Quorum { origins: 3 });
        assert_eq!(reached.action, Action::Block);
        assert!(
            reached.publish.is_none(),
            "quorum decisions are not re-published"
        );

        // Outside the window the old votes no longer count.
        let late = at(30 + 11 * 60);
        assert_eq!(
            policy.on_signal(late, &signal(&a, 11, "192.0.2.1", late)),
            Outcome::Nothing
        );
        policy.prune(late);
        assert_eq!(policy.tracked_subjects(), 1);
    }

    #[test]
    fn summed_severity_reaches_the_threshold_and_withdrawal_removes_votes() {
        let mut policy = Policy::new(PolicyConfig {
            quorum: QuorumConfig {
                quorum: 5,
                severity_threshold: Some(4),
                ..QuorumConfig::default()
            },
            ..PolicyConfig::default()
        });
        let (a, b) = (key(1), key(2));
        assert_eq!(
            policy.on_signal(at(0), &signal(&a, 1, "203.0.113.9", at(0))),
            Outcome::Nothing
        );
        policy.withdraw(&a.peer_id());
        assert_eq!(
            policy.on_signal(at(1), &signal(&b, 1, "203.0.113.9", at(1))),
            Outcome::Nothing,
            "a's medium vote was withdrawn"
        );
        assert!(matches!(
            policy.on_signal(at(2), &signal(&a, 2, "203.0.113.9", at(2))),
            Outcome::Propose(_)
        ));
    }

    #[test]
    fn operators_and_domains() {
        let mut policy = Policy::new(PolicyConfig::default());
        let op = key(9);
        policy.set_operators([op.peer_id()]);
        let decided = proposal(policy.on_signal(at(0), &signal(&op, 1, "evil.example", at(0))));
        assert_eq!(decided.action, Action::Sinkhole);
        assert_eq!(decided.duration, Some(Duration::from_secs(3600)));
        assert_eq!(
            decided.origin,
            Origin::Operator {
                did: op.peer_id().to_did()
            }
        );
        let local = proposal(policy.on_operator(OperatorDecision {
            subject: "192.0.2.7".parse().unwrap(),
            duration: Duration::from_secs(4 * 3600),
            reason: "seen in the SOC".to_owned(),
            operator: "local".to_owned(),
        }));
        let decision = policy.decide(at(0), &local, 1, None).unwrap();
        assert_eq!(decision.until, at(4 * 3600));
        assert_eq!(decision.reason, "seen in the SOC");
    }

    #[test]
    fn an_operator_lift_voids_what_was_observed_before_it_and_only_operators_lift() {
        let config = PolicyConfig {
            quorum: QuorumConfig {
                quorum: 2,
                ..QuorumConfig::default()
            },
            ..PolicyConfig::default()
        };
        let mut policy = Policy::new(config);
        let (op, a, b) = (key(9), key(1), key(2));
        policy.set_operators([op.peer_id()]);

        // A sensor cannot lift: its "lift" is neither a lift nor a vote.
        assert_eq!(
            policy.on_signal(at(1), &classed(&a, 1, "203.0.113.9", at(1), OPERATOR_LIFT)),
            Outcome::Nothing
        );
        assert_eq!(policy.tracked_subjects(), 0);

        // One vote, then the operator lifts: the vote is forgotten.
        assert_eq!(
            policy.on_signal(at(2), &signal(&a, 2, "203.0.113.9", at(2))),
            Outcome::Nothing
        );
        assert_eq!(
            policy.on_signal(at(3), &classed(&op, 1, "203.0.113.9", at(3), OPERATOR_LIFT)),
            Outcome::Lift {
                subject: "203.0.113.9".parse().unwrap(),
                operator: op.peer_id().to_did(),
            }
        );
        assert_eq!(policy.lifts(), 1);
        // b's vote alone is no quorum now; a's was forgotten.
        assert_eq!(
            policy.on_signal(at(4), &signal(&b, 1, "203.0.113.9", at(4))),
            Outcome::Nothing
        );
        // The operator's own block, observed before the lift but delayed in gossip, stays
        // lifted; one observed after it blocks again.
        assert_eq!(
            policy.on_signal(
                at(5),
                &classed(&op, 2, "203.0.113.9", at(2), OPERATOR_BLOCK)
            ),
            Outcome::Nothing
        );
        let again = proposal(policy.on_signal(
            at(6),
            &classed(&op, 3, "203.0.113.9", at(6), OPERATOR_BLOCK),
        ));
        assert!(matches!(again.origin, Origin::Operator { .. }));
        // A sensor's late vote observed before the lift does not count either.
        assert_eq!(
            policy.on_signal(at(7), &signal(&a, 3, "203.0.113.9", at(1))),
            Outcome::Nothing
        );

        // Lifts are forgotten once no signal they cancel can still be alive.
        policy.prune(at(3) + LIFT_MEMORY + Duration::from_secs(1));
        assert_eq!(policy.lifts(), 0);
    }

    #[test]
    fn remembered_lifts_are_bounded() {
        let mut policy = Policy::new(PolicyConfig::default());
        let op = key(9);
        policy.set_operators([op.peer_id()]);
        for i in 0..(MAX_LIFTS as u64 + 10) {
            let subject = std::net::Ipv4Addr::from(0x0a00_0000 + i as u32).to_string();
            policy.on_signal(at(i), &classed(&op, i + 1, &subject, at(i), OPERATOR_LIFT));
        }
        assert_eq!(policy.lifts(), MAX_LIFTS);
    }

    #[test]
    fn ban_time_escalates_up_to_the_cap() {
        let ban = BanTime {
            base: Duration::from_secs(600),
            factor: 3.0,
            cap: Duration::from_secs(10_000),
        };
        assert_eq!(ban.for_ban(1), Duration::from_secs(600));
        assert_eq!(ban.for_ban(2), Duration::from_secs(1800));
        assert_eq!(ban.for_ban(3), Duration::from_secs(5400));
        assert_eq!(ban.for_ban(4), Duration::from_secs(10_000));
        assert_eq!(ban.for_ban(u32::MAX), Duration::from_secs(10_000));
        assert_eq!(ban.for_ban(0), Duration::from_secs(600));
    }

    #[test]
    fn a_running_ban_is_not_escalated_by_echoes() {
        let mut policy = Policy::new(PolicyConfig::default());
        let p = proposal(policy.on_alert(&alert(
            "203.0.113.9",
            crate::detect::Action::Drop,
            Severity::High,
        )));
        assert!(Policy::counts_as_ban(at(0), &p, None));
        let first = policy.decide(at(0), &p, 1, None).unwrap();
        assert_eq!(first.until, at(3600));
        assert!(!Policy::counts_as_ban(at(10), &p, Some(&first)));
        // The same ban count gives a later `until` only by the time that passed: renewed
        // once a tenth of the ban has gone by, not on every echo.
        assert_eq!(policy.decide(at(10), &p, 1, Some(&first)), None);
        let again = policy.decide(at(1000), &p, 1, Some(&first)).unwrap();
        assert_eq!(again.until, at(4600));
        // A second ban after the first lapsed lasts twice as long.
        let second = policy.decide(at(4000), &p, 2, Some(&first)).unwrap();
        assert_eq!(second.until, at(4000 + 7200));
        // An existing longer decision is left alone.
        let long = Decision {
            until: at(100_000),
            ..first.clone()
        };
        assert_eq!(policy.decide(at(10), &p, 1, Some(&long)), None);
    }
}
