//! The HTTP service. [`run`] takes an already-bound listener and a shutdown future, so
//! `main` and the tests drive the same code.

use std::future::Future;

use axum::Router;
use axum::routing::get;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::daemon;

/// Serves the API on `listener` until `shutdown` resolves.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let local = listener.local_addr()?;
    tracing::info!(listen = %local, base_url = %config.base_url(), "identityd listening");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let watchdog = daemon::notify_ready("serving", stopped(stop_rx));
    let served = axum::serve(listener, router())
        .with_graceful_shutdown(shutdown)
        .await;
    daemon::notify_stopping();
    let _ = stop_tx.send(true);
    let _ = watchdog.await;
    served
}

async fn stopped(mut rx: tokio::sync::watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

fn router() -> Router {
    Router::new().route("/healthz", get(healthz))
}

async fn healthz() -> &'static str {
    "ok\n"
}
