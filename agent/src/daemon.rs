//! The running agent: [`run`] takes the validated configuration, the sockets `main` has
//! already bound, and a shutdown future, and drives every stage until shutdown. Tests call
//! it directly with sockets bound to `127.0.0.1:0`.

use std::future::Future;

use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::watch;

use swarmguard_identity::daemon as edge;

use crate::api::{self, Metrics};
use crate::config::Config;

/// The sockets the agent serves on, bound before [`run`] so that a port conflict is an
/// error at start and tests can bind port 0.
#[derive(Debug)]
pub struct Sockets {
    /// Prometheus `/metrics`.
    pub metrics: TcpListener,
    /// The swarm's QUIC endpoint.
    pub gossip: UdpSocket,
}

/// Runs the agent until `shutdown` resolves.
pub async fn run(
    config: Config,
    sockets: Sockets,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let metrics = Metrics::new();
    // One shutdown for every task: each holds a receiver and stops when the value flips.
    let (stop_tx, stop_rx) = watch::channel(false);
    tracing::info!(
        metrics = %sockets.metrics.local_addr()?,
        gossip = %sockets.gossip.local_addr()?,
        state_dir = %config.state_dir.display(),
        "swarmd started"
    );
    // The swarm (issue 6): a node when a membership credential exists, else standalone.
    // The decision stage (issue 7) takes over the link; until then events are drained.
    let store = std::sync::Arc::new(
        crate::store::Store::open(&config.state_dir, config.store.clone(), &metrics)
            .map_err(std::io::Error::other)?,
    );
    let gossip = sockets.gossip.into_std()?;
    let swarm = crate::swarm::node::start(&config, gossip, &metrics, store, stop_rx.clone())
        .map_err(std::io::Error::other)?;
    let swarm_task = swarm.map(|(mut link, node)| {
        tokio::spawn(async move {
            while link.events.recv().await.is_some() {}
            node.join().await;
        })
    });
    // Alerts wait here for the decision stage; until it lands they are logged.
    let (alerts_tx, mut alerts_rx) = tokio::sync::mpsc::channel::<crate::detect::Alert>(1024);
    let packets = crate::packets::PacketDetection::start(&config, &metrics, alerts_tx.clone());
    let logs = crate::logs::start(&config, &metrics, alerts_tx, stop_rx.clone())?;
    let alerts_task = tokio::spawn(async move {
        while let Some(alert) = alerts_rx.recv().await {
            tracing::warn!(rule = %alert.rule, src = ?alert.src, severity = %alert.severity, action = alert.action.as_str(), "alert");
        }
    });
    let metrics_task = tokio::spawn(api::serve_metrics(
        metrics,
        sockets.metrics,
        stopped(stop_rx.clone()),
    ));
    let watchdog = edge::notify_ready("running standalone", stopped(stop_rx));
    shutdown.await;
    edge::notify_stopping();
    let _ = stop_tx.send(true);
    logs.stop().await;
    if let Some(task) = swarm_task {
        let _ = task.await;
    }
    // Joining the capture and engine threads blocks; keep it off the async workers.
    let _ = tokio::task::spawn_blocking(move || packets.stop()).await;
    alerts_task.abort();
    metrics_task.await.map_err(std::io::Error::other)??;
    let _ = watchdog.await;
    tracing::info!("swarmd stopped");
    Ok(())
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}
