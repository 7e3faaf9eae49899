//! The swarm's Prometheus metrics (`swarmguard_swarm_*`), fed from the core's plain
//! [`Stats`] so that the core itself never touches the registry. The daemon calls
//! [`SwarmMetrics::observe`] after driving the core.

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

use super::protocol::Swarm;
use super::stats::{DropReason, Stats};

/// The registered metrics, and the counters' values last exported (Prometheus counters
/// only go up by increments).
#[derive(Debug)]
pub struct SwarmMetrics {
    dropped: IntCounterVec,
    messages_in: IntCounter,
    bytes_in: IntCounter,
    messages_out: IntCounter,
    bytes_out: IntCounter,
    signals_received: IntCounter,
    signals_published: IntCounter,
    suspicions: IntCounter,
    live_signals: IntGauge,
    members: IntGauge,
    last: Stats,
}

impl SwarmMetrics {
    pub fn register(registry: &Registry) -> Result<SwarmMetrics, prometheus::Error> {
        let counter = |name: &str, help: &str| -> Result<IntCounter, prometheus::Error> {
            let counter = IntCounter::new(name, help)?;
            registry.register(Box::new(counter.clone()))?;
            Ok(counter)
        };
        let gauge = |name: &str, help: &str| -> Result<IntGauge, prometheus::Error> {
            let gauge = IntGauge::new(name, help)?;
            registry.register(Box::new(gauge.clone()))?;
            Ok(gauge)
        };
        let dropped = IntCounterVec::new(
            Opts::new(
                "swarmguard_swarm_dropped_total",
                "Messages, signals and outputs the swarm dropped, by reason.",
            ),
            &["reason"],
        )?;
        registry.register(Box::new(dropped.clone()))?;
        for reason in DropReason::ALL {
            // Every reason shows from the start, at zero.
            dropped.with_label_values(&[reason.as_str()]);
        }
        Ok(SwarmMetrics {
            dropped,
            messages_in: counter(
                "swarmguard_swarm_messages_received_total",
                "Swarm messages received.",
            )?,
            bytes_in: counter(
                "swarmguard_swarm_received_bytes_total",
                "Bytes of swarm messages received.",
            )?,
            messages_out: counter(
                "swarmguard_swarm_messages_sent_total",
                "Swarm messages queued for sending.",
            )?,
            bytes_out: counter(
                "swarmguard_swarm_sent_bytes_total",
                "Bytes of swarm messages queued for sending.",
            )?,
            signals_received: counter(
                "swarmguard_swarm_signals_received_total",
                "Valid new signals taken from the swarm.",
            )?,
            signals_published: counter(
                "swarmguard_swarm_signals_published_total",
                "Signals this agent published.",
            )?,
            suspicions: counter(
                "swarmguard_swarm_suspicions_total",
                "Members this agent suspected after a failed probe.",
            )?,
            live_signals: gauge("swarmguard_swarm_live_signals", "Live signals held.")?,
            members: gauge("swarmguard_swarm_members", "Members SWIM considers alive.")?,
            last: Stats::default(),
        })
    }

    /// Brings the metrics up to date with `swarm`.
    pub fn observe(&mut self, swarm: &Swarm) {
        let now = swarm.stats();
        for reason in DropReason::ALL {
            let delta = now
                .dropped(reason)
                .saturating_sub(self.last.dropped(reason));
            if delta > 0 {
                self.dropped
                    .with_label_values(&[reason.as_str()])
                    .inc_by(delta);
            }
        }
        let pairs = [
            (&self.messages_in, now.messages_in, self.last.messages_in),
            (&self.bytes_in, now.bytes_in, self.last.bytes_in),
            (&self.messages_out, now.messages_out, self.last.messages_out),
            (&self.bytes_out, now.bytes_out, self.last.bytes_out),
            (
                &self.signals_received,
                now.signals_received,
                self.last.signals_received,
            ),
            (
                &self.signals_published,
                now.signals_published,
                self.last.signals_published,
            ),
            (&self.suspicions, now.suspicions, self.last.suspicions),
        ];
        for (counter, current, last) in pairs {
            counter.inc_by(current.saturating_sub(last));
        }
        self.live_signals.set(swarm.live_signal_count() as i64);
        self.members.set(swarm.members().len() as i64);
        self.last = now.clone();
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::api::Metrics;
    use crate::swarm::{Peer, SigningKey, SwarmConfig};

    #[test]
    fn drops_are_exported_by_reason() {
        let metrics = Metrics::new();
        let mut exported = SwarmMetrics::register(metrics.registry()).unwrap();
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let key = SigningKey::from_seed(&[1; 32]).unwrap();
        let mut swarm = Swarm::new(
            SwarmConfig::default(),
            key,
            "127.0.0.1:7300".parse().unwrap(),
            now,
        );
        let stranger = Peer {
            id: SigningKey::from_seed(&[2; 32]).unwrap().peer_id(),
            addr: "127.0.0.1:7301".parse().unwrap(),
        };
        swarm.handle_message(now, stranger, &[1, 2, 0, 0]);
        swarm.handle_message(now, stranger, &[1, 2, 0, 0]);
        exported.observe(&swarm);
        exported.observe(&swarm);
        let text = metrics.render();
        assert!(
            text.contains("swarmguard_swarm_dropped_total{reason=\"unknown_member\"} 2"),
            "{text}"
        );
        assert!(text.contains("swarmguard_swarm_dropped_total{reason=\"bad_signature\"} 0"));
        assert!(text.contains("swarmguard_swarm_received_bytes_total 8"));
    }
}
