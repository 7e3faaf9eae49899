//! The [`Alert`]: one local detection, from a packet rule or a log scenario. It is what the
//! decision stage consumes, and the same type whichever sensor saw the attack.

use std::fmt;
use std::net::IpAddr;
use std::time::SystemTime;

/// One local detection.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// Which rule or scenario fired.
    pub rule: RuleRef,
    /// What the rule asks for; `Drop` and `Reject` make the decision stage block.
    pub action: Action,
    pub severity: Severity,
    /// The attacker, as far as the rule can tell: the packet's source, or the address a
    /// scenario captured. `None` for rules that name no address (rare).
    pub src: Option<IpAddr>,
    pub src_port: Option<u16>,
    pub dst: Option<IpAddr>,
    pub dst_port: Option<u16>,
    /// When it happened: the packet's capture time or the log line's own timestamp, so
    /// that replayed captures and logs decide as they would have live.
    pub time: SystemTime,
    /// What was seen, without keeping personal data.
    pub evidence: Evidence,
}

/// Which rule or scenario raised an alert.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RuleRef {
    /// A Suricata-format packet rule.
    Packet {
        gid: u32,
        sid: u32,
        rev: u32,
        /// The rule's `msg`.
        msg: String,
        /// The rule's `classtype`, when it has one.
        classtype: Option<String>,
    },
    /// A log scenario, by its `name`.
    Scenario { name: String },
    /// A query to the DNS sinkhole for a sinkholed domain (the decided or blocklisted
    /// entry that matched, not the queried subdomain).
    Sinkhole { domain: String },
}

impl RuleRef {
    /// A short stable id: `1:2002383` for a packet rule, the name for a scenario,
    /// `dns-sinkhole` for sinkhole hits (the domain stays out: ids label metrics). Used as
    /// the `reason` of signals and in metrics labels.
    pub fn id(&self) -> String {
        match self {
            RuleRef::Packet { gid, sid, .. } => format!("{gid}:{sid}"),
            RuleRef::Scenario { name } => name.clone(),
            RuleRef::Sinkhole { .. } => SINKHOLE_RULE_ID.to_owned(),
        }
    }
}

impl fmt::Display for RuleRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuleRef::Packet {
                gid, sid, rev, msg, ..
            } => write!(f, "[{gid}:{sid}:{rev}] {msg}"),
            RuleRef::Scenario { name } => write!(f, "scenario {name}"),
            RuleRef::Sinkhole { domain } => write!(f, "dns sinkhole {domain}"),
        }
    }
}

/// The [`RuleRef::id`] of every sinkhole hit.
pub const SINKHOLE_RULE_ID: &str = "dns-sinkhole";

/// A rule's action, as Suricata spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Alert,
    Drop,
    Reject,
    Pass,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Alert => "alert",
            Action::Drop => "drop",
            Action::Reject => "reject",
            Action::Pass => "pass",
        }
    }

    /// Whether the rule itself asks for the source to be blocked.
    pub fn blocks(self) -> bool {
        matches!(self, Action::Drop | Action::Reject)
    }
}

/// How bad a detection is, from `Info` to `Critical`. Ordered, so that policy can say
/// "block from `High` up" and the swarm can add severities of independent reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Info = 0,
    Low = 1,
    Medium = 2,
    High = 3,
    Critical = 4,
}

impl Severity {
    /// Maps a Suricata priority (1 is the most urgent, from `priority` or the classtype in
    /// `classification.config`) to a severity: 1 High, 2 Medium, 3 Low, 4 and above Info.
    pub fn from_priority(priority: u32) -> Severity {
        match priority {
            0 | 1 => Severity::High,
            2 => Severity::Medium,
            3 => Severity::Low,
            _ => Severity::Info,
        }
    }

    /// The Suricata priority that maps back to this severity (Critical shares 1 with High).
    pub fn priority(self) -> u32 {
        match self {
            Severity::Critical | Severity::High => 1,
            Severity::Medium => 2,
            Severity::Low => 3,
            Severity::Info => 4,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// Parses the lowercase name used in scenario files and the configuration.
    pub fn from_name(name: &str) -> Option<Severity> {
        Some(match name {
            "info" => Severity::Info,
            "low" => Severity::Low,
            "medium" => Severity::Medium,
            "high" => Severity::High,
            "critical" => Severity::Critical,
            _ => return None,
        })
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What was seen. Packets are summarised; log lines are kept only as a hash, since they may
/// hold personal data (user names) that the swarm has no need for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Evidence {
    /// `proto src:port -> dst:port`, length and flags, as one line.
    Packet { summary: String },
    /// The log file (or journal unit) and the SHA-256 of the line that overflowed the bucket,
    /// in hex.
    LogLine { source: String, line_sha256: String },
    /// A DNS query the sinkhole answered: the name asked (lowercase, fully qualified), its
    /// type, and how many more such queries from the same client the rate limit held back
    /// since the previous alert.
    DnsQuery {
        name: String,
        qtype: String,
        repeats: u64,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suricata_priorities_map_to_ordered_severities() {
        assert_eq!(Severity::from_priority(1), Severity::High);
        assert_eq!(Severity::from_priority(2), Severity::Medium);
        assert_eq!(Severity::from_priority(3), Severity::Low);
        assert_eq!(Severity::from_priority(4), Severity::Info);
        assert!(Severity::Critical > Severity::High && Severity::Low > Severity::Info);
        for severity in [
            Severity::Info,
            Severity::Low,
            Severity::Medium,
            Severity::High,
        ] {
            assert_eq!(Severity::from_priority(severity.priority()), severity);
            assert_eq!(Severity::from_name(severity.as_str()), Some(severity));
        }
    }

    #[test]
    fn rule_ids_are_short_and_stable() {
        let packet = RuleRef::Packet {
            gid: 1,
            sid: 2002383,
            rev: 3,
            msg: "ET SCAN".to_owned(),
            classtype: None,
        };
        assert_eq!(packet.id(), "1:2002383");
        assert_eq!(packet.to_string(), "[1:2002383:3] ET SCAN");
        let scenario = RuleRef::Scenario {
            name: "sshd-bf".to_owned(),
        };
        assert_eq!(scenario.id(), "sshd-bf");
    }

    #[test]
    fn only_drop_and_reject_block() {
        assert!(Action::Drop.blocks() && Action::Reject.blocks());
        assert!(!Action::Alert.blocks() && !Action::Pass.blocks());
    }
}
