//! The running agent: [`run`] takes the validated configuration, the sockets `main` has
//! already bound, and a shutdown future, and drives every stage until shutdown. Tests call
//! it directly with sockets bound to `127.0.0.1:0` (and [`run_with_swarm`] with a
//! [`SwarmLink`] they feed themselves).
//!
//! ```text
//! packets ─┐                   ┌─> store (sled) ─┐
//! logs ────┼─> alerts ─> decisions (policy) ───────┴─> enforce (nftables | dry-run)
//! swarm ───┘   events ─┘       └─> swarm (publish local decisions)
//! admin API (unix socket) ─> decisions (add/delete), rules reload, status
//! ```
//!
//! SIGHUP (and `swarmctl rules reload`) reloads rules and scenarios; decisions, the store
//! and the kernel state are untouched.

use std::future::Future;
use std::sync::Arc;
use std::time::SystemTime;

use tokio::net::{TcpListener, UdpSocket, UnixListener};
use tokio::sync::{mpsc, oneshot, watch};

use swarmguard_identity::daemon as edge;

use crate::api::admin::{self, AdminState, ReloadReport, RulesStatus};
use crate::api::alerts::AlertLog;
use crate::api::{self, Metrics};
use crate::config::Config;
use crate::decisions::Stage;
use crate::logs::LogDetection;
use crate::packets::PacketDetection;
use crate::store::Store;
use crate::swarm::SwarmLink;

/// Alerts waiting for the decision stage; detection waits (packets: the capture queue
/// drops and counts) when it is full.
pub const ALERT_QUEUE: usize = 4096;

/// The sockets the agent serves on, bound before [`run`] so that a port conflict is an
/// error at start and tests can bind port 0.
#[derive(Debug)]
pub struct Sockets {
    /// Prometheus `/metrics`.
    pub metrics: TcpListener,
    /// The swarm's QUIC endpoint.
    pub gossip: UdpSocket,
    /// The admin API for `swarmctl`; `None` runs without one (it could not be bound).
    pub admin: Option<UnixListener>,
}

/// Runs the agent until `shutdown` resolves.
pub async fn run(
    config: Config,
    sockets: Sockets,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    run_with_swarm(config, sockets, None, shutdown).await
}

/// [`run`], with the link of a swarm node the caller started (tests feed one from
/// channels); `None` lets the agent start its own node when it has a credential.
pub async fn run_with_swarm(
    config: Config,
    sockets: Sockets,
    swarm: Option<SwarmLink>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let started = SystemTime::now();
    let metrics = Metrics::new();
    // One shutdown for every task: each holds a receiver and stops when the value flips.
    let (stop_tx, stop_rx) = watch::channel(false);
    tracing::info!(
        metrics = %sockets.metrics.local_addr()?,
        gossip = %sockets.gossip.local_addr()?,
        state_dir = %config.state_dir.display(),
        "swarmd starting"
    );
    let store = Store::open(&config.state_dir, config.store.clone(), &metrics)
        .map_err(std::io::Error::other)?;
    let store = Arc::new(store);

    // The swarm: the caller's link (tests), else a node of our own when this agent has a
    // membership credential, else standalone (the node said why).
    let (swarm, node) = match swarm {
        Some(link) => (Some(link), None),
        None => {
            let gossip = sockets.gossip.into_std()?;
            let seeds = crate::swarm::discovery::spawn_for(&config, &metrics, stop_rx.clone());
            let options = crate::swarm::node::NodeOptions {
                seeds,
                ..Default::default()
            };
            let started = crate::swarm::node::start_with(
                &config,
                gossip,
                &metrics,
                Arc::clone(&store),
                stop_rx.clone(),
                options,
            )
            .map_err(std::io::Error::other)?;
            match started {
                Some((link, node)) => (Some(link), Some(node)),
                None => (None, None),
            }
        }
    };
    let view = swarm.as_ref().map(|link| link.view.clone());
    let mode = if swarm.is_some() {
        tracing::info!("swarm member: signals are gossiped and quorums counted");
        "swarm member"
    } else {
        "running standalone"
    };

    let (alerts_tx, alerts_rx) = mpsc::channel::<crate::detect::Alert>(ALERT_QUEUE);
    let mut packets = PacketDetection::start(&config, &metrics, alerts_tx.clone());
    // The DNS sinkhole, when `dns.listen` is set: its hits arrive as alerts, and the
    // decision stage gives it the domain decisions in force.
    let sinkhole =
        crate::enforce::dns::start(&config, &metrics, alerts_tx.clone(), stop_rx.clone())
            .await
            .map_err(std::io::Error::other)?;
    let mut logs = crate::logs::start(&config, &metrics, alerts_tx, stop_rx.clone())?;
    let (rules_tx, rules_rx) = watch::channel(RulesStatus {
        packet_rules: packets.rules(),
        scenarios: logs.scenarios(),
        loaded_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        last_reload: None,
    });

    let alert_log = Arc::new(AlertLog::new(config.recent_alerts));
    let backend = crate::enforce::backend(&config.enforce, &metrics);
    let (stage, stage_handle) = Stage::new(
        config.decide.clone(),
        Arc::clone(&store),
        backend,
        swarm,
        alerts_rx,
        Arc::clone(&alert_log),
        &metrics,
    );
    let mut stage = stage.with_sinkhole(sinkhole);
    // The kernel is reconciled from the store before anything is served.
    stage.start().await;
    let stage_task = tokio::spawn(stage.run(stop_rx.clone()));

    let (reload_tx, mut reload_rx) = mpsc::channel::<oneshot::Sender<ReloadReport>>(4);
    let admin_path = sockets
        .admin
        .as_ref()
        .and_then(|listener| listener.local_addr().ok())
        .and_then(|addr| addr.as_pathname().map(ToOwned::to_owned));
    let admin_task = sockets.admin.map(|listener| {
        let state = AdminState {
            store: Arc::clone(&store),
            stage: stage_handle,
            alerts: alert_log,
            view,
            metrics: metrics.clone(),
            reload: reload_tx,
            rules: rules_rx,
            started,
        };
        tokio::spawn(admin::serve(state, listener, stopped(stop_rx.clone())))
    });
    if admin_task.is_none() {
        tracing::warn!("no admin socket: swarmctl cannot reach this agent");
    }
    let metrics_task = tokio::spawn(api::serve_metrics(
        metrics,
        sockets.metrics,
        stopped(stop_rx.clone()),
    ));
    let watchdog = edge::notify_ready(mode, stopped(stop_rx));
    tracing::info!("swarmd running");

    let mut hangup = hangup_signal();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = next_hangup(&mut hangup) => {
                tracing::info!(signal = "SIGHUP", "reloading rules and scenarios");
                let report = reload(&config, &mut packets, &mut logs).await;
                rules_tx.send_modify(|rules| record(rules, &report));
            }
            request = reload_rx.recv() => {
                if let Some(reply) = request {
                    let report = reload(&config, &mut packets, &mut logs).await;
                    rules_tx.send_modify(|rules| record(rules, &report));
                    let _ = reply.send(report);
                }
            }
        }
    }
    edge::notify_stopping();
    let _ = stop_tx.send(true);
    logs.stop().await;
    // Joining the capture and engine threads blocks; keep it off the async workers.
    let _ = tokio::task::spawn_blocking(move || packets.stop()).await;
    let _ = stage_task.await;
    if let Some(node) = node {
        // The node leaves the swarm (members learn it at once) and closes its endpoint.
        node.join().await;
    }
    if let Some(admin) = admin_task {
        admin.await.map_err(std::io::Error::other)??;
    }
    if let Some(path) = admin_path {
        // Nobody answers on it any more; a stale file would only mislead swarmctl.
        let _ = std::fs::remove_file(path);
    }
    metrics_task.await.map_err(std::io::Error::other)??;
    let _ = watchdog.await;
    store.flush().map_err(std::io::Error::other)?;
    tracing::info!("swarmd stopped");
    Ok(())
}

/// Reloads packet rules and scenarios; what does not load keeps the old set in use.
async fn reload(
    config: &Config,
    packets: &mut PacketDetection,
    logs: &mut LogDetection,
) -> ReloadReport {
    let rules = packets.reload(config);
    let scenarios = logs.reload(config).await;
    for error in rules.errors.iter().chain(&scenarios.errors) {
        tracing::warn!("reload: {error}");
    }
    let message = match (rules.applied, scenarios.applied) {
        (true, true) => "rules and scenarios reloaded".to_owned(),
        (false, true) => {
            "scenarios reloaded; the packet rules have errors, the old ones stay in use".to_owned()
        }
        (true, false) => {
            "packet rules reloaded; the scenarios have errors, the old ones stay in use".to_owned()
        }
        (false, false) => "rules and scenarios have errors: the old ones stay in use".to_owned(),
    };
    if rules.applied && scenarios.applied {
        tracing::info!(
            rules = rules.rules,
            scenarios = scenarios.scenarios,
            "{message}"
        );
    } else {
        tracing::warn!(
            rules = rules.rules,
            scenarios = scenarios.scenarios,
            "{message}"
        );
    }
    ReloadReport {
        rules_applied: rules.applied,
        packet_rules: rules.rules,
        rule_errors: rules.errors,
        scenarios_applied: scenarios.applied,
        scenarios: scenarios.scenarios,
        scenario_errors: scenarios.errors,
        message,
    }
}

fn record(rules: &mut RulesStatus, report: &ReloadReport) {
    rules.packet_rules = report.packet_rules;
    rules.scenarios = report.scenarios;
    if report.rules_applied || report.scenarios_applied {
        rules.loaded_at = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    }
    rules.last_reload = Some(report.clone());
}

fn hangup_signal() -> Option<tokio::signal::unix::Signal> {
    use tokio::signal::unix::{SignalKind, signal};
    signal(SignalKind::hangup())
        .inspect_err(|err| tracing::warn!(error = %err, "cannot listen for SIGHUP; use swarmctl rules reload"))
        .ok()
}

async fn next_hangup(hangup: &mut Option<tokio::signal::unix::Signal>) {
    match hangup {
        Some(signal) => {
            signal.recv().await;
        }
        None => std::future::pending().await,
    }
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}
