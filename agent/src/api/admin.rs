//! The admin API `swarmctl` talks to: HTTP/1 with JSON bodies on a unix socket
//! (`/run/swarmguard/agent.sock`, mode 0660). Routes, all under `/v1`:
//!
//! | method and path | answer |
//! |---|---|
//! | `GET /v1/status` | [`Status`] |
//! | `GET /v1/peers` | array of [`PeerRecord`] |
//! | `GET /v1/alerts` | array of recent [`AlertRecord`]s; `?follow=true`: one JSON object per line, the recent ones then each new one, until the client hangs up |
//! | `GET /v1/decisions` | array of [`Decision`](crate::decide::Decision)s in force |
//! | `POST /v1/decisions` | body [`AddDecision`]; the stored [`Decision`](crate::decide::Decision), on disk and in the kernel before the answer (with `"swarm": true`, then signed and gossiped; 403 unless this agent holds an operator credential) |
//! | `DELETE /v1/decisions?subject=S[&swarm=true]` | the removed [`Decision`](crate::decide::Decision), or 404; with `swarm=true` a signed lift is gossiped too (202 `{"subject", "swarm": true}` when this host had none) |
//! | `POST /v1/rules/reload` | [`ReloadReport`] |
//! | `GET /v1/metrics` | array of [`MetricFamily`]: every `swarmguard_*` metric, summed |
//!
//! Errors are `{"error": "..."}` with a 4xx/5xx status. The socket's file mode is the
//! access control: whoever may open it may steer the agent.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use prometheus::proto::MetricType;
use serde::{Deserialize, Serialize};
use tokio::net::UnixListener;
use tokio::sync::{mpsc, oneshot, watch};

use super::Metrics;
use super::alerts::{AlertLog, AlertRecord};
use crate::decide::OperatorDecision;
use crate::decisions::{CommandError, StageHandle};
use crate::store::Store;
use crate::subject::Subject;
use crate::swarm::SwarmView;

/// What `swarmctl status` shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub version: String,
    /// `standalone` (no membership credential) or `swarm`.
    pub mode: String,
    /// This agent's DID, once the swarm node has loaded its key.
    pub did: Option<String>,
    /// The role its membership credential grants (`sensor`, `sentinel`, `operator`).
    #[serde(default)]
    pub role: Option<String>,
    pub uptime_secs: u64,
    /// Members known, and how many are alive.
    pub members: usize,
    pub members_alive: usize,
    /// `nftables` or `dry-run`, and whether it is loaded (blocking).
    pub backend: String,
    pub backend_loaded: bool,
    /// Decisions in force by origin (`local`, `quorum`, `operator`).
    pub decisions: BTreeMap<String, u64>,
    /// Alerts seen since start.
    pub alerts: u64,
    /// The packet rules and scenarios in use.
    pub rules: RulesStatus,
    /// Records per store tree.
    pub store: BTreeMap<String, u64>,
}

/// The rules the agent runs with.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RulesStatus {
    /// Packet rules in use.
    pub packet_rules: usize,
    /// Scenarios in use.
    pub scenarios: usize,
    /// When they were last (re)loaded, RFC 3339.
    pub loaded_at: String,
    /// What the last reload (SIGHUP or `swarmctl rules reload`) did, if there was one.
    pub last_reload: Option<ReloadReport>,
}

/// One swarm member as `swarmctl peers` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerRecord {
    pub did: String,
    pub addr: String,
    pub state: String,
    pub role: String,
    pub last_seen: Option<String>,
}

/// `POST /v1/decisions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddDecision {
    pub subject: String,
    /// `4h`, `30m`, `7days`.
    pub duration: String,
    #[serde(default)]
    pub reason: Option<String>,
    /// Sign it with this agent's key and tell the swarm: every member enforces it as an
    /// operator decision. Needs an operator credential; lasts at most 24 h.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub swarm: bool,
}

/// What a rules reload did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadReport {
    /// Whether the new packet rules replaced the old ones.
    pub rules_applied: bool,
    /// Packet rules in use after the reload.
    pub packet_rules: usize,
    /// `FILE:LINE:COL: message` for each rule that did not load; any makes the reload
    /// keep the old rules.
    pub rule_errors: Vec<String>,
    /// Whether the new scenarios replaced the old ones.
    pub scenarios_applied: bool,
    pub scenarios: usize,
    /// `FILE:LINE: message` for each scenario that did not load.
    pub scenario_errors: Vec<String>,
    /// What happened, in one sentence.
    pub message: String,
}

/// One metric family, its samples summed per label set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricFamily {
    pub name: String,
    pub help: String,
    /// The sum over all samples.
    pub total: f64,
    /// `label=value,...` → value, for labelled metrics.
    pub samples: BTreeMap<String, f64>,
}

/// Who asks the daemon to reload its rules (the answer comes back on the oneshot).
pub type ReloadRequests = mpsc::Sender<oneshot::Sender<ReloadReport>>;

/// Everything the admin API reads or steers.
#[derive(Debug, Clone)]
pub struct AdminState {
    pub store: Arc<Store>,
    pub stage: StageHandle,
    pub alerts: Arc<AlertLog>,
    /// The swarm's view; `None` when standalone.
    pub view: Option<watch::Receiver<SwarmView>>,
    pub metrics: Metrics,
    pub reload: ReloadRequests,
    pub rules: watch::Receiver<RulesStatus>,
    pub started: SystemTime,
}

/// Serves the admin API on `listener` until `shutdown` resolves.
pub async fn serve(
    state: AdminState,
    listener: UnixListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/v1/status", get(status))
        .route("/v1/peers", get(peers))
        .route("/v1/alerts", get(alerts))
        .route(
            "/v1/decisions",
            get(list_decisions)
                .post(add_decision)
                .delete(delete_decision),
        )
        .route("/v1/rules/reload", post(reload))
        .route("/v1/metrics", get(metrics))
        .with_state(Arc::new(state));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (
        status,
        Json(serde_json::json!({ "error": message.to_string() })),
    )
        .into_response()
}

fn time_text(time: SystemTime) -> String {
    humantime::format_rfc3339_seconds(time).to_string()
}

async fn status(State(state): State<Arc<AdminState>>) -> Response {
    let stage = state.stage.status.borrow().clone();
    let view = state
        .view
        .as_ref()
        .map(|view| view.borrow().clone())
        .unwrap_or_default();
    let status = Status {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        mode: if state.view.is_some() {
            "swarm"
        } else {
            "standalone"
        }
        .to_owned(),
        did: view.me.map(|me| me.to_did()),
        role: view.role.clone(),
        uptime_secs: state.started.elapsed().unwrap_or_default().as_secs(),
        members: view.members.len(),
        members_alive: view
            .members
            .iter()
            .filter(|m| m.state == crate::swarm::MemberState::Alive)
            .count(),
        backend: stage.backend.to_owned(),
        backend_loaded: stage.backend_loaded,
        decisions: stage
            .active
            .iter()
            .map(|(k, v)| ((*k).to_owned(), *v))
            .collect(),
        alerts: stage.alerts,
        rules: state.rules.borrow().clone(),
        store: state
            .store
            .entries()
            .iter()
            .map(|(tree, n)| ((*tree).to_owned(), *n))
            .collect(),
    };
    Json(status).into_response()
}

async fn peers(State(state): State<Arc<AdminState>>) -> Response {
    let view = state
        .view
        .as_ref()
        .map(|view| view.borrow().clone())
        .unwrap_or_default();
    let peers: Vec<PeerRecord> = view
        .members
        .iter()
        .map(|m| PeerRecord {
            did: m.peer.to_did(),
            addr: m.addr.to_string(),
            state: m.state.as_str().to_owned(),
            role: m.role.clone(),
            last_seen: m.last_seen.map(time_text),
        })
        .collect();
    Json(peers).into_response()
}

#[derive(Debug, Deserialize)]
struct AlertsQuery {
    #[serde(default)]
    follow: bool,
}

async fn alerts(
    State(state): State<Arc<AdminState>>,
    Query(query): Query<AlertsQuery>,
) -> Response {
    if !query.follow {
        return Json(state.alerts.recent()).into_response();
    }
    let (recent, rx) = state.alerts.follow();
    let lines = recent.into_iter().map(line).collect::<Vec<String>>();
    // The recent alerts first, then each new one as it comes; a follower too slow for
    // the broadcast gets a `lagged` line saying how many it missed.
    let stream = futures_util::stream::unfold(
        (lines.into_iter(), rx),
        |(mut backlog, mut rx)| async move {
            if let Some(next) = backlog.next() {
                return Some((Ok::<_, std::convert::Infallible>(next), (backlog, rx)));
            }
            match rx.recv().await {
                Ok(record) => Some((Ok(line(record)), (backlog, rx))),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                    Some((Ok(format!("{{\"lagged\":{missed}}}\n")), (backlog, rx)))
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => None,
            }
        },
    );
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(stream),
    )
        .into_response()
}

fn line(record: AlertRecord) -> String {
    let mut text = serde_json::to_string(&record).unwrap_or_default();
    text.push('\n');
    text
}

async fn list_decisions(State(state): State<Arc<AdminState>>) -> Response {
    let store = Arc::clone(&state.store);
    match tokio::task::spawn_blocking(move || store.active_decisions(SystemTime::now())).await {
        Ok(Ok(decisions)) => Json(decisions).into_response(),
        Ok(Err(err)) => error(StatusCode::INTERNAL_SERVER_ERROR, err),
        Err(err) => error(StatusCode::INTERNAL_SERVER_ERROR, err),
    }
}

async fn add_decision(
    State(state): State<Arc<AdminState>>,
    body: Result<Json<AddDecision>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(add) = match body {
        Ok(body) => body,
        Err(rejection) => return error(StatusCode::BAD_REQUEST, rejection.body_text()),
    };
    let subject: Subject = match add.subject.parse() {
        Ok(subject) => subject,
        Err(err) => return error(StatusCode::BAD_REQUEST, err),
    };
    let duration = match humantime::parse_duration(&add.duration) {
        Ok(d) if !d.is_zero() && d <= Duration::from_secs(10 * 365 * 86400) => d,
        Ok(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "duration must be between 1s and 10 years",
            );
        }
        Err(err) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("invalid duration \"{}\": {err}", add.duration),
            );
        }
    };
    let decision = OperatorDecision {
        subject,
        duration,
        reason: add
            .reason
            .unwrap_or_else(|| "added with swarmctl".to_owned()),
        // This host's own, unless `swarm` makes it this operator's (the stage fills in
        // the DID it signs with).
        operator: "local".to_owned(),
    };
    match state.stage.add(decision, add.swarm).await {
        Ok(decision) => (StatusCode::CREATED, Json(decision)).into_response(),
        Err(err) => command_error(err),
    }
}

fn command_error(err: CommandError) -> Response {
    let status = match &err {
        CommandError::Refused { .. } => StatusCode::CONFLICT,
        CommandError::Forbidden(_) => StatusCode::FORBIDDEN,
        CommandError::Invalid(_) => StatusCode::BAD_REQUEST,
        CommandError::Unpublished(_) | CommandError::Stopped => StatusCode::SERVICE_UNAVAILABLE,
        CommandError::Store(_) | CommandError::Enforce(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(status, err)
}

#[derive(Debug, Deserialize)]
struct SubjectQuery {
    subject: String,
    #[serde(default)]
    swarm: bool,
}

async fn delete_decision(
    State(state): State<Arc<AdminState>>,
    query: Result<Query<SubjectQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Query(query) = match query {
        Ok(query) => query,
        Err(rejection) => return error(StatusCode::BAD_REQUEST, rejection.body_text()),
    };
    let subject: Subject = match query.subject.parse() {
        Ok(subject) => subject,
        Err(err) => return error(StatusCode::BAD_REQUEST, err),
    };
    match state.stage.delete(subject.clone(), query.swarm).await {
        Ok(Some(decision)) => Json(decision).into_response(),
        Ok(None) if query.swarm => (
            StatusCode::ACCEPTED,
            Json(serde_json::json!({ "subject": subject.to_string(), "swarm": true })),
        )
            .into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no decision on {subject}")),
        Err(err) => command_error(err),
    }
}

async fn reload(State(state): State<Arc<AdminState>>) -> Response {
    let (reply, answer) = oneshot::channel();
    if state.reload.send(reply).await.is_err() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the agent is shutting down",
        );
    }
    match answer.await {
        Ok(report) => Json(report).into_response(),
        Err(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the agent is shutting down",
        ),
    }
}

async fn metrics(State(state): State<Arc<AdminState>>) -> Response {
    Json(summarise(&state.metrics)).into_response()
}

/// Every `swarmguard_*` family, with its samples summed per label set.
pub fn summarise(metrics: &Metrics) -> Vec<MetricFamily> {
    let mut out = Vec::new();
    for family in metrics.registry().gather() {
        let name = family.name().to_owned();
        if !name.starts_with("swarmguard_") {
            continue;
        }
        let mut samples = BTreeMap::new();
        let mut total = 0.0;
        let kind = family.get_field_type();
        for metric in family.get_metric() {
            let value = match kind {
                MetricType::COUNTER => metric.get_counter().get_value(),
                MetricType::GAUGE => metric.get_gauge().get_value(),
                MetricType::HISTOGRAM => metric.get_histogram().get_sample_count() as f64,
                _ => continue,
            };
            total += value;
            let labels: Vec<String> = metric
                .get_label()
                .iter()
                .map(|pair| format!("{}={}", pair.name(), pair.value()))
                .collect();
            if !labels.is_empty() {
                samples.insert(labels.join(","), value);
            }
        }
        out.push(MetricFamily {
            name,
            help: family.help().to_owned(),
            total,
            samples,
        });
    }
    out
}

/// Binds the admin socket at `path`: creates its folder, replaces a stale socket file
/// (one nobody answers on), and sets mode 0660 and the `swarmguard` group when it exists.
/// A socket some other agent still answers on is an error, not replaced.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!("{} is in use by a running agent", path.display()),
            ));
        }
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    if let Some(gid) = group_id("swarmguard")
        && let Err(err) = std::os::unix::fs::chown(path, None, Some(gid))
    {
        tracing::warn!(path = %path.display(), error = %err, "cannot give the admin socket to group swarmguard");
    }
    Ok(listener)
}

/// The id of group `name` from `/etc/group`, if it exists.
fn group_id(name: &str) -> Option<u32> {
    let groups = std::fs::read_to_string("/etc/group").ok()?;
    groups.lines().find_map(|line| {
        let mut fields = line.split(':');
        (fields.next()? == name)
            .then(|| fields.nth(1)?.parse().ok())
            .flatten()
    })
}
