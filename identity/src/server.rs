//! The HTTP service. [`run`] takes an already-bound listener and a shutdown future, so
//! `main` and the tests drive the same code.

use std::future::Future;

use axum::Router;
use axum::routing::get;
use tokio::net::TcpListener;

use crate::config::Config;

/// Serves the API on `listener` until `shutdown` resolves.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let local = listener.local_addr()?;
    tracing::info!(listen = %local, base_url = %config.base_url(), "identityd listening");
    axum::serve(listener, router())
        .with_graceful_shutdown(shutdown)
        .await
}

fn router() -> Router {
    Router::new().route("/healthz", get(healthz))
}

async fn healthz() -> &'static str {
    "ok\n"
}
