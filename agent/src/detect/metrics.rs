//! The packet engine's counters as Prometheus metrics (`swarmguard_packet_*`,
//! `swarmguard_flow_*`): registered once in the agent's [`Metrics`], updated from an
//! [`EngineStats`] snapshot by whoever owns the engine (the capture thread).

use prometheus::{IntCounter, IntGauge};

use super::engine::EngineStats;
use crate::api::Metrics;

/// The registered metrics and the snapshot they were last updated from.
#[derive(Debug, Clone)]
pub struct EngineMetrics {
    packets: IntCounter,
    malformed: IntCounter,
    not_ip: IntCounter,
    unknown_linktype: IntCounter,
    bad_checksum: IntCounter,
    alerts: IntCounter,
    flows_created: IntCounter,
    flows_timed_out: IntCounter,
    flows_evicted: IntCounter,
    flows_active: IntGauge,
    threshold_overflows: IntCounter,
    last: EngineStats,
}

impl EngineMetrics {
    /// Registers the engine's metrics; call once per registry.
    pub fn register(metrics: &Metrics) -> EngineMetrics {
        let flows_active = metrics.gauge(
            "swarmguard_flows_active",
            "Flows in the packet engine's flow table.",
        );
        EngineMetrics {
            packets: metrics.counter(
                "swarmguard_packets_total",
                "Frames given to the packet engine.",
            ),
            malformed: metrics.counter(
                "swarmguard_packets_malformed_total",
                "Frames dropped as truncated or inconsistent.",
            ),
            not_ip: metrics.counter(
                "swarmguard_packets_not_ip_total",
                "Frames that were not IP.",
            ),
            unknown_linktype: metrics.counter(
                "swarmguard_packets_unknown_linktype_total",
                "Frames of a link type the engine does not decode.",
            ),
            bad_checksum: metrics.counter(
                "swarmguard_packets_bad_checksum_total",
                "Packets with a bad checksum while validation was on; they match no rule.",
            ),
            alerts: metrics.counter(
                "swarmguard_packet_alerts_total",
                "Alerts raised by packet rules.",
            ),
            flows_created: metrics.counter("swarmguard_flows_created_total", "Flows created."),
            flows_timed_out: metrics.counter(
                "swarmguard_flows_timed_out_total",
                "Flows removed after their idle timeout.",
            ),
            flows_evicted: metrics.counter(
                "swarmguard_flows_evicted_total",
                "Flows dropped to make room while the flow table was full.",
            ),
            flows_active,
            threshold_overflows: metrics.counter(
                "swarmguard_threshold_overflows_total",
                "Threshold matches not tracked because the threshold table was full.",
            ),
            last: EngineStats::default(),
        }
    }

    /// Brings the metrics up to `stats` (a later snapshot of the same engine).
    pub fn update(&mut self, stats: &EngineStats) {
        let last = &self.last;
        let pairs = [
            (&self.packets, stats.packets, last.packets),
            (&self.malformed, stats.malformed, last.malformed),
            (&self.not_ip, stats.not_ip, last.not_ip),
            (
                &self.unknown_linktype,
                stats.unknown_linktype,
                last.unknown_linktype,
            ),
            (&self.bad_checksum, stats.bad_checksum, last.bad_checksum),
            (&self.alerts, stats.alerts, last.alerts),
            (&self.flows_created, stats.flows.created, last.flows.created),
            (
                &self.flows_timed_out,
                stats.flows.timed_out,
                last.flows.timed_out,
            ),
            (&self.flows_evicted, stats.flows.evicted, last.flows.evicted),
            (
                &self.threshold_overflows,
                stats.threshold_overflows,
                last.threshold_overflows,
            ),
        ];
        for (counter, now, before) in pairs {
            counter.inc_by(now.saturating_sub(before));
        }
        self.flows_active
            .set(i64::try_from(stats.flows.active).unwrap_or(i64::MAX));
        self.last = *stats;
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use expect_test::expect;

    use super::*;
    use crate::detect::rules::parse_text;
    use crate::detect::{Engine, EngineConfig};

    #[test]
    fn engine_counters_render_as_prometheus_metrics() {
        let metrics = Metrics::new();
        let mut exported = EngineMetrics::register(&metrics);
        let rules = parse_text("t", "alert udp any any -> any any (msg:\"x\"; sid:1;)");
        let mut engine = Engine::new(rules.rules, EngineConfig::default());
        let mut frame = Vec::new();
        etherparse::PacketBuilder::ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .udp(1, 2)
            .write(&mut frame, b"x")
            .unwrap();
        engine.process(UNIX_EPOCH, crate::detect::decode::linktype::RAW, &frame);
        engine.process(
            UNIX_EPOCH,
            crate::detect::decode::linktype::RAW,
            &frame[..10],
        );
        exported.update(&engine.stats());
        exported.update(&engine.stats());
        let text: String = metrics
            .render()
            .lines()
            .filter(|line| line.starts_with("swarmguard_") && !line.starts_with("swarmguard_build"))
            .map(|line| format!("{line}\n"))
            .collect();
        expect![[r#"
            swarmguard_flows_active 1
            swarmguard_flows_created_total 1
            swarmguard_flows_evicted_total 0
            swarmguard_flows_timed_out_total 0
            swarmguard_packet_alerts_total 1
            swarmguard_packets_bad_checksum_total 0
            swarmguard_packets_malformed_total 1
            swarmguard_packets_not_ip_total 0
            swarmguard_packets_total 2
            swarmguard_packets_unknown_linktype_total 0
            swarmguard_threshold_overflows_total 0
        "#]]
        .assert_eq(&text);
    }
}
