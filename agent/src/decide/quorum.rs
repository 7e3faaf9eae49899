//! [`Quorum`]: the swarm rule of collective detection — block a subject once at least
//! `quorum` distinct members signalled it within `window` (or their summed severity passes
//! a threshold). Each origin counts once however many signals it sends, so that one
//! compromised member, or `quorum - 1` colluding ones, can never reach a block alone.
//! Sans-IO: time comes in as `now`.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, SystemTime};

use crate::detect::Severity;
use crate::subject::Subject;

/// The rule's parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct QuorumConfig {
    /// How many distinct origins it takes (default 3).
    pub quorum: usize,
    /// How recent their signals must be (default 10 minutes).
    pub window: Duration,
    /// Blocks also when the origins' severities (each origin's highest, `info` = 0 to
    /// `critical` = 4) add up to this, if set.
    pub severity_threshold: Option<u32>,
    /// How many subjects are tracked at once.
    pub max_subjects: usize,
    /// How many origins are remembered per subject; past the quorum more add nothing.
    pub max_origins_per_subject: usize,
}

impl Default for QuorumConfig {
    fn default() -> Self {
        QuorumConfig {
            quorum: 3,
            window: Duration::from_secs(600),
            severity_threshold: None,
            max_subjects: 100_000,
            max_origins_per_subject: 64,
        }
    }
}

/// Where a subject stands after a vote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tally<V> {
    /// Not enough: this many distinct origins, this summed severity.
    Below { origins: usize, severity: u32 },
    /// The rule holds; these origins carried it.
    Reached { origins: Vec<V> },
    /// The subject could not be tracked: `max_subjects` are, all within their window.
    Untracked,
}

#[derive(Debug, Clone, Copy)]
struct Vote {
    at: SystemTime,
    severity: Severity,
}

/// Votes per subject, by origin `V` (a member's key in the swarm).
#[derive(Debug)]
pub struct Quorum<V> {
    config: QuorumConfig,
    subjects: HashMap<Subject, HashMap<V, Vote>>,
}

impl<V: Clone + Eq + Hash> Quorum<V> {
    pub fn new(config: QuorumConfig) -> Quorum<V> {
        Quorum {
            config,
            subjects: HashMap::new(),
        }
    }

    /// Records that `origin` signalled `subject`, observed at `at`, and says where the
    /// subject stands at `now`. A time in the future counts as `now`, so that a signal
    /// cannot stay in the window longer by claiming a later time.
    pub fn vote(
        &mut self,
        now: SystemTime,
        subject: &Subject,
        origin: V,
        at: SystemTime,
        severity: Severity,
    ) -> Tally<V> {
        let at = at.min(now);
        if !self.in_window(now, at) {
            return self.tally(now, subject);
        }
        if !self.subjects.contains_key(subject) && self.subjects.len() >= self.config.max_subjects {
            self.prune(now);
            if self.subjects.len() >= self.config.max_subjects {
                return Tally::Untracked;
            }
        }
        let window = self.config.window;
        let votes = self.subjects.entry(subject.clone()).or_default();
        if !votes.contains_key(&origin) && votes.len() >= self.config.max_origins_per_subject {
            votes.retain(|_, vote| {
                now.duration_since(vote.at)
                    .map_or(true, |age| age <= window)
            });
        }
        if votes.contains_key(&origin) || votes.len() < self.config.max_origins_per_subject {
            let vote = votes.entry(origin).or_insert(Vote { at, severity });
            vote.at = vote.at.max(at);
            vote.severity = vote.severity.max(severity);
        }
        self.tally(now, subject)
    }

    /// Where `subject` stands at `now`.
    pub fn tally(&self, now: SystemTime, subject: &Subject) -> Tally<V> {
        let Some(votes) = self.subjects.get(subject) else {
            return Tally::Below {
                origins: 0,
                severity: 0,
            };
        };
        let current: Vec<(&V, &Vote)> = votes
            .iter()
            .filter(|(_, vote)| self.in_window(now, vote.at))
            .collect();
        let severity: u32 = current.iter().map(|(_, vote)| vote.severity as u32).sum();
        let by_count = current.len() >= self.config.quorum.max(1);
        let by_severity = self
            .config
            .severity_threshold
            .is_some_and(|threshold| severity >= threshold);
        if by_count || by_severity {
            Tally::Reached {
                origins: current
                    .into_iter()
                    .map(|(origin, _)| origin.clone())
                    .collect(),
            }
        } else {
            Tally::Below {
                origins: current.len(),
                severity,
            }
        }
    }

    /// Forgets every vote of `origin` (its membership was revoked).
    pub fn withdraw(&mut self, origin: &V) {
        self.subjects.retain(|_, votes| {
            votes.remove(origin);
            !votes.is_empty()
        });
    }

    /// Forgets every vote on `subject` (an operator lifted it).
    pub fn forget(&mut self, subject: &Subject) {
        self.subjects.remove(subject);
    }

    /// Forgets votes that left the window.
    pub fn prune(&mut self, now: SystemTime) {
        let window = self.config.window;
        self.subjects.retain(|_, votes| {
            votes.retain(|_, vote| {
                now.duration_since(vote.at)
                    .map_or(true, |age| age <= window)
            });
            !votes.is_empty()
        });
    }

    /// How many subjects are tracked (for the metric).
    pub fn len(&self) -> usize {
        self.subjects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.subjects.is_empty()
    }

    fn in_window(&self, now: SystemTime, at: SystemTime) -> bool {
        now.duration_since(at)
            .map_or(true, |age| age <= self.config.window)
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    fn subject() -> Subject {
        "203.0.113.9".parse().unwrap()
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_000_000 + secs)
    }

    #[test]
    fn three_distinct_origins_reach_quorum() {
        let mut quorum = Quorum::new(QuorumConfig::default());
        let s = subject();
        assert!(matches!(
            quorum.vote(at(0), &s, "a", at(0), Severity::Low),
            Tally::Below { origins: 1, .. }
        ));
        assert!(matches!(
            quorum.vote(at(1), &s, "b", at(1), Severity::Low),
            Tally::Below { origins: 2, .. }
        ));
        let Tally::Reached { mut origins } = quorum.vote(at(2), &s, "c", at(2), Severity::Low)
        else {
            panic!("no quorum")
        };
        origins.sort();
        assert_eq!(origins, ["a", "b", "c"]);
    }

    #[test]
    fn one_origin_counts_once_however_often_it_votes() {
        let mut quorum = Quorum::new(QuorumConfig::default());
        let s = subject();
        for second in 0..1000 {
            let origin = if second % 2 == 0 { "a" } else { "b" };
            let tally = quorum.vote(
                at(second / 10),
                &s,
                origin,
                at(second / 10),
                Severity::Critical,
            );
            assert!(
                matches!(tally, Tally::Below { origins: 1 | 2, .. }),
                "{tally:?}"
            );
        }
    }

    #[test]
    fn old_votes_leave_the_window_and_future_ones_count_as_now() {
        let mut quorum = Quorum::new(QuorumConfig::default());
        let s = subject();
        quorum.vote(at(0), &s, "a", at(0), Severity::Low);
        quorum.vote(at(0), &s, "b", at(9999), Severity::Low);
        // 11 minutes later both are out, even the one that claimed a future time.
        assert!(matches!(
            quorum.vote(at(660), &s, "c", at(660), Severity::Low),
            Tally::Below { origins: 1, .. }
        ));
        quorum.prune(at(660));
        assert_eq!(quorum.len(), 1);
    }

    #[test]
    fn severity_threshold_and_withdrawal() {
        let mut quorum = Quorum::new(QuorumConfig {
            severity_threshold: Some(7),
            ..QuorumConfig::default()
        });
        let s = subject();
        quorum.vote(at(0), &s, "a", at(0), Severity::Critical);
        assert!(matches!(
            quorum.vote(at(0), &s, "b", at(0), Severity::High),
            Tally::Reached { .. }
        ));
        quorum.withdraw(&"a");
        assert_eq!(
            quorum.tally(at(0), &s),
            Tally::Below {
                origins: 1,
                severity: 3
            }
        );
    }

    #[test]
    fn tracking_is_bounded() {
        let mut quorum = Quorum::new(QuorumConfig {
            max_subjects: 2,
            ..QuorumConfig::default()
        });
        for (index, text) in ["192.0.2.1", "192.0.2.2"].iter().enumerate() {
            quorum.vote(
                at(index as u64),
                &text.parse().unwrap(),
                "a",
                at(0),
                Severity::Low,
            );
        }
        let third: Subject = "192.0.2.3".parse().unwrap();
        assert_eq!(
            quorum.vote(at(1), &third, "a", at(1), Severity::Low),
            Tally::Untracked
        );
        // Once the others age out there is room again.
        assert!(matches!(
            quorum.vote(at(700), &third, "a", at(700), Severity::Low),
            Tally::Below { origins: 1, .. }
        ));
    }
}
