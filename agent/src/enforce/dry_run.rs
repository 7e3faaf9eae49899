//! The dry-run backend: logs what it would block and counts it, touching nothing. For a
//! first deployment ("what would it have blocked?") and the demo.

use std::collections::BTreeMap;
use std::time::SystemTime;

use ipnet::IpNet;

use super::{Applied, Backend, Change, EnforceError, EnforceMetrics, blocked_net};
use crate::api::Metrics;
use crate::decide::Decision;

/// Logs and counts; keeps the same model as the nftables backend so that its logs and
/// counts say what nftables would have done.
#[derive(Debug)]
pub struct DryRun {
    /// What would be blocked, until when.
    blocked: BTreeMap<IpNet, SystemTime>,
    metrics: EnforceMetrics,
}

impl DryRun {
    pub fn new(metrics: &Metrics) -> DryRun {
        let metrics = EnforceMetrics::new(metrics);
        metrics.loaded.with_label_values(&["dry-run"]).set(1);
        DryRun {
            blocked: BTreeMap::new(),
            metrics,
        }
    }

    /// What would be blocked now, until when.
    pub fn blocked(&self) -> &BTreeMap<IpNet, SystemTime> {
        &self.blocked
    }

    fn block(&mut self, net: IpNet, until: SystemTime, applied: &mut Applied) {
        match self.blocked.insert(net, until) {
            None => {
                applied.added += 1;
                tracing::info!(subject = %net, until = %humantime::format_rfc3339(until), "dry run: would block");
            }
            Some(old) if old != until => {
                applied.updated += 1;
                tracing::info!(subject = %net, until = %humantime::format_rfc3339(until), "dry run: would extend the block");
            }
            Some(_) => {}
        }
    }
}

impl Backend for DryRun {
    fn name(&self) -> &'static str {
        "dry-run"
    }

    fn reconcile(&mut self, active: &[Decision], now: SystemTime) -> Result<Applied, EnforceError> {
        let mut applied = Applied::default();
        let mut wanted = BTreeMap::new();
        for decision in active.iter().filter(|d| d.is_active(now)) {
            match Change::for_decision(decision)
                .as_ref()
                .and_then(|c| blocked_net(c.subject()))
            {
                Some(net) => {
                    let until = wanted.entry(net).or_insert(decision.until);
                    *until = (*until).max(decision.until);
                }
                None => applied.skipped += 1,
            }
        }
        let stale: Vec<IpNet> = self
            .blocked
            .keys()
            .filter(|n| !wanted.contains_key(n))
            .copied()
            .collect();
        for net in stale {
            self.blocked.remove(&net);
            applied.removed += 1;
            tracing::info!(subject = %net, "dry run: would unblock");
        }
        for (net, until) in wanted {
            self.block(net, until, &mut applied);
        }
        self.metrics.set_elements("dry-run", self.blocked.keys());
        Ok(applied)
    }

    fn apply(&mut self, changes: &[Change], now: SystemTime) -> Result<Applied, EnforceError> {
        self.blocked.retain(|_, until| *until > now);
        let mut applied = Applied::default();
        for change in changes {
            let Some(net) = blocked_net(change.subject()) else {
                applied.skipped += 1;
                continue;
            };
            match change {
                Change::Block { until, .. } => self.block(net, *until, &mut applied),
                Change::Unblock { .. } => {
                    if self.blocked.remove(&net).is_some() {
                        applied.removed += 1;
                        tracing::info!(subject = %net, "dry run: would unblock");
                    }
                }
            }
        }
        self.metrics.count_changes("dry-run", changes);
        self.metrics.set_elements("dry-run", self.blocked.keys());
        Ok(applied)
    }

    fn cleanup(&mut self) -> Result<(), EnforceError> {
        self.blocked.clear();
        self.metrics.set_elements("dry-run", self.blocked.keys());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::decide::{Action, Origin};

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn decision(subject: &str, until: u64) -> Decision {
        Decision {
            subject: subject.parse().unwrap(),
            action: Action::Block,
            until: at(until),
            origin: Origin::Operator {
                did: "local".to_owned(),
            },
            reason: String::new(),
            created: at(0),
        }
    }

    #[test]
    fn dry_run_counts_and_reconciles_idempotently() {
        let metrics = Metrics::new();
        let mut backend = DryRun::new(&metrics);
        let active = [
            decision("192.0.2.7", 500),
            decision("2001:db8::/32", 600),
            decision("evil.example", 600),
        ];
        let first = backend.reconcile(&active, at(100)).unwrap();
        assert_eq!(
            first,
            Applied {
                added: 2,
                skipped: 1,
                ..Applied::default()
            }
        );
        assert!(backend.reconcile(&active, at(100)).unwrap().is_noop());

        let changes = [
            Change::Unblock {
                subject: "192.0.2.7".parse().unwrap(),
            },
            Change::Block {
                subject: "198.51.100.0/24".parse().unwrap(),
                until: at(900),
            },
        ];
        let applied = backend.apply(&changes, at(200)).unwrap();
        assert_eq!(
            applied,
            Applied {
                added: 1,
                removed: 1,
                ..Applied::default()
            }
        );
        assert_eq!(backend.blocked().len(), 2);
        let text = metrics.render();
        assert!(
            text.contains(
                "swarmguard_enforce_changes_total{backend=\"dry-run\",change=\"block\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("swarmguard_enforce_elements{backend=\"dry-run\",family=\"ipv4\"} 1"),
            "{text}"
        );
        // Nothing it does reaches nft.
        assert!(!text.contains("swarmguard_nft_operations_total{"), "{text}");
    }
}
