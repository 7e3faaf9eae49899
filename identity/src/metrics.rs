//! identityd's Prometheus metrics, all named `swarmguard_identity_*`, in one registry that
//! `GET /metrics` renders.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

/// The metrics and the registry they live in.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// Credentials issued, by format.
    pub issued: IntCounterVec,
    /// Credentials and presentations verified, by result (`verified`, `failed`).
    pub verified: IntCounterVec,
    /// Status changes, by new status (`revoked`, `suspended`, `active`).
    pub status_changes: IntCounterVec,
    /// HTTP request latency, by route and status code.
    pub request_seconds: HistogramVec,
    /// Other issuers' status lists in the cache (bounded by `verify.status_cache_max`).
    pub status_cache_lists: IntGauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let issued = IntCounterVec::new(
            Opts::new(
                "swarmguard_identity_issued_total",
                "Credentials issued, by format.",
            ),
            &["format"],
        )
        .expect("valid metric");
        let verified = IntCounterVec::new(
            Opts::new(
                "swarmguard_identity_verified_total",
                "Credentials and presentations verified, by result.",
            ),
            &["result"],
        )
        .expect("valid metric");
        let status_changes = IntCounterVec::new(
            Opts::new(
                "swarmguard_identity_status_changes_total",
                "Credential status changes (revoked, suspended, active).",
            ),
            &["status"],
        )
        .expect("valid metric");
        let request_seconds = HistogramVec::new(
            HistogramOpts::new(
                "swarmguard_identity_request_duration_seconds",
                "HTTP request latency, by route and status code.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
            &["route", "code"],
        )
        .expect("valid metric");
        let status_cache_lists = IntGauge::new(
            "swarmguard_identity_status_cache_lists",
            "Other issuers' status lists held in the cache.",
        )
        .expect("valid metric");
        for collector in [
            Box::new(issued.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(verified.clone()),
            Box::new(status_changes.clone()),
            Box::new(request_seconds.clone()),
            Box::new(status_cache_lists.clone()),
        ] {
            registry
                .register(collector)
                .expect("metric names are unique");
        }
        Metrics {
            registry,
            issued,
            verified,
            status_changes,
            request_seconds,
            status_cache_lists,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}
