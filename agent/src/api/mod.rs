//! What the agent answers: the Prometheus `/metrics` endpoint on a TCP address (default
//! `127.0.0.1:9480`; metric names start with `swarmguard_`), and the admin API on a unix
//! socket for `swarmctl`.
//!
//! - [`admin`]: the admin API's routes, its JSON shapes and the socket's binding.
//! - [`alerts`]: the bounded ring of recent alerts, and the stream of new ones.
//! - [`client`]: `swarmctl`'s side of the admin API.

pub mod admin;
pub mod alerts;
pub mod client;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus::core::Collector;
use prometheus::{
    Encoder, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};
use tokio::net::TcpListener;

/// The agent's metrics registry. Stages register their own metrics in it.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let build = IntGaugeVec::new(
            Opts::new(
                "swarmguard_build_info",
                "Always 1; labels say which build runs.",
            ),
            &["version"],
        )
        .expect("static metric definition is valid");
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        registry
            .register(Box::new(build))
            .expect("registered once, on a fresh registry");
        Metrics { registry }
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Registers `collector` and hands it back for the stage to keep. A second registration
    /// of the same name (a stage started twice on one registry, as tests do) is logged and
    /// the metric still works; it is just not exported twice.
    pub fn register<C: Collector + Clone + 'static>(&self, collector: C) -> C {
        if let Err(err) = self.registry.register(Box::new(collector.clone())) {
            tracing::debug!(%err, "metric not registered");
        }
        collector
    }

    /// A registered counter. Metric names and help are static: a bad one is a programming
    /// error, caught by the first test that starts the stage.
    pub fn counter(&self, name: &str, help: &str) -> IntCounter {
        self.register(IntCounter::new(name, help).expect("static metric definition"))
    }

    /// A registered counter with labels.
    pub fn counter_vec(&self, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        self.register(
            IntCounterVec::new(Opts::new(name, help), labels).expect("static metric definition"),
        )
    }

    /// A registered gauge.
    pub fn gauge(&self, name: &str, help: &str) -> IntGauge {
        self.register(IntGauge::new(name, help).expect("static metric definition"))
    }

    /// A registered gauge with labels.
    pub fn gauge_vec(&self, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
        self.register(
            IntGaugeVec::new(Opts::new(name, help), labels).expect("static metric definition"),
        )
    }

    /// The Prometheus text exposition of every registered metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("encoding into a Vec cannot fail");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// Serves `/metrics` and `/healthz` on `listener` until `shutdown` resolves.
pub async fn serve_metrics(
    metrics: Metrics,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(render_metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(Arc::new(metrics));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn render_metrics(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        metrics.render(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_info_is_exported() {
        let text = Metrics::new().render();
        assert!(
            text.contains(&format!(
                "swarmguard_build_info{{version=\"{}\"}} 1",
                env!("CARGO_PKG_VERSION")
            )),
            "{text}"
        );
    }
}
