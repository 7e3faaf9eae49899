//! The HTTP service, in the W3C VC-API shapes. [`run`] takes an already-bound listener
//! and a shutdown future, so `main` and the tests drive the same code.
//!
//! Routes (the reference is `GET /openapi.json`, from `openapi.json` in this folder):
//! issuing and status changes need `Authorization: Bearer`; verifying, status lists, DID
//! resolution, metrics and health do not. Every error is `application/problem+json`
//! ([`problem`]); a body over `server.body_limit` is 413, malformed input 400.

pub mod problem;
pub mod tls;

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, MatchedPath, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::Value;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::did::Did;
use crate::membership::Role;
use crate::service::{IssueError, OpenError, Service};
use crate::store::{ListId, Status, StoreError};
use crate::vc::{Format, Report};
use problem::{Kind, Problem};

/// The OpenAPI document served at `/openapi.json`.
pub const OPENAPI: &str = include_str!("openapi.json");

/// Why the service stopped or could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("serving: {0}")]
    Io(#[from] std::io::Error),
}

/// Installs rustls' ring provider as the process default. The binary links aws-lc-rs too
/// (through `ssi`'s reqwest), and rustls refuses to guess between two.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Serves the API on `listener` until `shutdown` resolves: HTTPS when the configuration
/// names a certificate and key, plain HTTP otherwise.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    install_crypto_provider();
    let tls = config.tls.as_ref().map(tls::acceptor).transpose()?;
    let tokens = crate::keys::load_or_create_tokens(&config).map_err(OpenError::from)?;
    let service = Arc::new(Service::open(config)?);
    let local = listener.local_addr()?;
    tracing::info!(
        listen = %local,
        base_url = %service.config.base_url(),
        tls = tls.is_some(),
        "identityd listening"
    );
    let app = router(service, tokens);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let watchdog = crate::daemon::notify_ready("serving", stopped(stop_rx));
    let served = match tls {
        Some(acceptor) => {
            axum::serve(tls::TlsListener::new(listener, acceptor)?, app)
                .with_graceful_shutdown(shutdown)
                .await
        }
        None => {
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
        }
    };
    crate::daemon::notify_stopping();
    let _ = stop_tx.send(true);
    let _ = watchdog.await;
    served?;
    Ok(())
}

async fn stopped(mut rx: tokio::sync::watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

/// Everything a handler needs.
#[derive(Debug, Clone)]
struct AppState {
    service: Arc<Service>,
    /// SHA-256 of each accepted bearer token: compared digest to digest, so the time a
    /// comparison takes says nothing about the token.
    token_digests: Arc<Vec<Vec<u8>>>,
}

/// The router, with the body limit and the latency middleware.
pub fn router(service: Arc<Service>, tokens: Vec<String>) -> Router {
    let limit = service.config.body_limit;
    let state = AppState {
        token_digests: Arc::new(tokens.iter().map(|t| digest(t.as_bytes())).collect()),
        service,
    };
    Router::new()
        .route("/credentials/issue", post(issue))
        .route("/credentials/verify", post(verify_credential))
        .route("/presentations/verify", post(verify_presentation))
        .route("/credentials/status", post(update_status))
        .route("/members/issue", post(issue_member))
        .route("/members/renew", post(renew_member))
        .route("/status/{list}", get(status_list))
        .route("/identifiers/{did}", get(resolve))
        .route("/1.0/identifiers/{did}", get(resolve))
        .route("/.well-known/did.json", get(own_did_document))
        .route("/{*path}", get(did_web_path))
        .route("/openapi.json", get(openapi))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

fn digest(bytes: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .to_vec()
}

/// Records each request's latency under its route template (never the raw path, which
/// would make label values unbounded).
async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let started = Instant::now();
    let response = next.run(request).await;
    state
        .service
        .metrics
        .request_seconds
        .with_label_values(&[&route, response.status().as_str()])
        .observe(started.elapsed().as_secs_f64());
    response
}

/// A JSON body, with every failure mapped to problem+json: 413 over the limit, 400 for
/// anything that is not a JSON object.
struct JsonBody(serde_json::Map<String, Value>);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = Problem;

    async fn from_request(request: Request, state: &S) -> Result<Self, Problem> {
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    Problem::new(Kind::PayloadTooLarge, "the request body is too large")
                } else {
                    Problem::new(Kind::MalformedRequest, rejection.body_text())
                }
            })?;
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(object)) => Ok(JsonBody(object)),
            Ok(_) => Err(Problem::new(
                Kind::MalformedRequest,
                "the body must be a JSON object",
            )),
            Err(err) => Err(Problem::new(
                Kind::MalformedRequest,
                format!("invalid JSON: {err}"),
            )),
        }
    }
}

fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), Problem> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|token| digest(token.trim().as_bytes()));
    match presented {
        Some(d) if state.token_digests.contains(&d) => Ok(()),
        Some(_) => Err(Problem::new(
            Kind::Unauthorized,
            "the bearer token is not valid",
        )),
        None => Err(Problem::new(
            Kind::Unauthorized,
            "Authorization: Bearer <token> is required",
        )),
    }
}

fn issue_problem(err: IssueError) -> Problem {
    match err {
        IssueError::Invalid(why) => Problem::new(Kind::InvalidCredential, why),
        IssueError::Conflict(why) => Problem::new(Kind::Conflict, why),
        IssueError::Internal(why) => Problem::new(Kind::Internal, why),
    }
}

/// `options.format`: absent means `ldp_vc`.
fn format_option(body: &serde_json::Map<String, Value>) -> Result<Format, Problem> {
    match body.get("options") {
        None | Some(Value::Null) => Ok(Format::LdpVc),
        Some(Value::Object(options)) => match options.get("format") {
            None => Ok(Format::LdpVc),
            Some(Value::String(text)) => Format::parse(text).ok_or_else(|| {
                Problem::new(
                    Kind::MalformedRequest,
                    format!("unknown format \"{text}\" (ldp_vc or jwt_vc_json)"),
                )
            }),
            Some(_) => Err(Problem::new(
                Kind::MalformedRequest,
                "options.format must be a string",
            )),
        },
        Some(_) => Err(Problem::new(
            Kind::MalformedRequest,
            "options must be an object",
        )),
    }
}

async fn issue(
    State(state): State<AppState>,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Response, Problem> {
    authorize(&state, &headers)?;
    let format = format_option(&body)?;
    let credential = match body.get("credential") {
        Some(Value::Object(credential)) => Value::Object(credential.clone()),
        Some(_) => {
            return Err(Problem::new(
                Kind::MalformedRequest,
                "credential must be an object",
            ));
        }
        None => {
            return Err(Problem::new(
                Kind::MalformedRequest,
                "credential is required",
            ));
        }
    };
    let signed = state
        .service
        .issue(credential, format)
        .await
        .map_err(issue_problem)?;
    Ok((
        StatusCode::CREATED,
        axum::Json(serde_json::json!({ "verifiableCredential": signed })),
    )
        .into_response())
}

async fn issue_member(
    State(state): State<AppState>,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Response, Problem> {
    authorize(&state, &headers)?;
    let field = |name: &str| {
        body.get(name).and_then(Value::as_str).ok_or_else(|| {
            Problem::new(
                Kind::MalformedRequest,
                format!("{name} (a string) is required"),
            )
        })
    };
    let did = Did::parse(field("did")?)
        .map_err(|err| Problem::new(Kind::MalformedRequest, err.to_string()))?;
    let role: Role = field("role")?
        .parse()
        .map_err(|err: String| Problem::new(Kind::MalformedRequest, err))?;
    let jwt = state
        .service
        .issue_member(&did, role)
        .await
        .map_err(issue_problem)?;
    Ok((
        StatusCode::CREATED,
        axum::Json(serde_json::json!({ "verifiableCredential": jwt })),
    )
        .into_response())
}

/// `POST /members/renew`: no bearer token; the holder authenticates with its current
/// credential and a signature by its key (see [`Service::renew_member`]).
async fn renew_member(
    State(state): State<AppState>,
    JsonBody(body): JsonBody,
) -> Result<Response, Problem> {
    let field = |name: &str| {
        body.get(name).and_then(Value::as_str).ok_or_else(|| {
            Problem::new(
                Kind::MalformedRequest,
                format!("{name} (a string) is required"),
            )
        })
    };
    let jwt = state
        .service
        .renew_member(field("credential")?, field("created")?, field("proof")?)
        .await
        .map_err(|err| match err {
            IssueError::Invalid(why) => Problem::new(Kind::Unauthorized, why),
            other => issue_problem(other),
        })?;
    Ok((
        StatusCode::CREATED,
        axum::Json(serde_json::json!({ "verifiableCredential": jwt })),
    )
        .into_response())
}

fn verification_response(report: Report) -> Response {
    let status = if report.verified() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    let body = serde_json::json!({
        "verified": report.verified(),
        "checks": report.checks,
        "warnings": report.warnings,
        "errors": report.errors,
    });
    (status, axum::Json(body)).into_response()
}

async fn verify_credential(
    State(state): State<AppState>,
    JsonBody(body): JsonBody,
) -> Result<Response, Problem> {
    let credential = body
        .get("verifiableCredential")
        .ok_or_else(|| Problem::new(Kind::MalformedRequest, "verifiableCredential is required"))?;
    if !matches!(
        body.get("options"),
        None | Some(Value::Object(_)) | Some(Value::Null)
    ) {
        return Err(Problem::new(
            Kind::MalformedRequest,
            "options must be an object",
        ));
    }
    let report = state
        .service
        .verify_credential(credential)
        .await
        .map_err(|err| Problem::new(Kind::NotACredential, err.to_string()))?;
    Ok(verification_response(report))
}

async fn verify_presentation(
    State(state): State<AppState>,
    JsonBody(body): JsonBody,
) -> Result<Response, Problem> {
    let presentation = body.get("verifiablePresentation").ok_or_else(|| {
        Problem::new(Kind::MalformedRequest, "verifiablePresentation is required")
    })?;
    let options = match body.get("options") {
        None | Some(Value::Null) => serde_json::Map::new(),
        Some(Value::Object(options)) => options.clone(),
        Some(_) => {
            return Err(Problem::new(
                Kind::MalformedRequest,
                "options must be an object",
            ));
        }
    };
    let text = |name: &str| -> Result<Option<String>, Problem> {
        match options.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(Problem::new(
                Kind::MalformedRequest,
                format!("options.{name} must be a string"),
            )),
        }
    };
    let (challenge, domain) = (text("challenge")?, text("domain")?);
    let report = state
        .service
        .verify_presentation(presentation, challenge.as_deref(), domain.as_deref())
        .await
        .map_err(|err| Problem::new(Kind::NotACredential, err.to_string()))?;
    Ok(verification_response(report))
}

async fn update_status(
    State(state): State<AppState>,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Response, Problem> {
    authorize(&state, &headers)?;
    let id = body
        .get("credentialId")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            Problem::new(
                Kind::MalformedRequest,
                "credentialId (a string) is required",
            )
        })?;
    let changes = match body.get("credentialStatus") {
        Some(Value::Array(items)) if !items.is_empty() => items,
        _ => {
            return Err(Problem::new(
                Kind::MalformedRequest,
                "credentialStatus must be a non-empty array",
            ));
        }
    };
    let mut record = None;
    for change in changes {
        let status = change
            .get("status")
            .and_then(Value::as_str)
            .and_then(Status::parse)
            .ok_or_else(|| {
                Problem::new(
                    Kind::MalformedRequest,
                    "status must be revoked, suspended or active",
                )
            })?;
        if let Some(kind) = change.get("type").and_then(Value::as_str)
            && kind != "BitstringStatusListCredential"
        {
            return Err(Problem::new(
                Kind::MalformedRequest,
                format!("unsupported status type {kind}"),
            ));
        }
        record = Some(
            state
                .service
                .set_status(id, status)
                .map_err(|err| match err {
                    StoreError::NotFound(_) => Problem::new(Kind::NotFound, err.to_string()),
                    StoreError::Revoked(_) => Problem::new(Kind::Conflict, err.to_string()),
                    other => Problem::new(Kind::Internal, other.to_string()),
                })?,
        );
    }
    let record = record.ok_or_else(|| Problem::new(Kind::MalformedRequest, "no status given"))?;
    Ok(axum::Json(
        serde_json::json!({ "credentialId": record.id, "status": record.status.as_str() }),
    )
    .into_response())
}

async fn status_list(
    State(state): State<AppState>,
    Path(list): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let id = ListId::parse(&list)
        .ok_or_else(|| Problem::new(Kind::NotFound, format!("no status list {list}")))?;
    let wants_jwt = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("application/vc+jwt"));
    let format = if wants_jwt {
        Format::JwtVcJson
    } else {
        Format::LdpVc
    };
    let credential = state
        .service
        .status_list_credential(id, format)
        .await
        .map_err(|err| match err {
            IssueError::Invalid(why) => Problem::new(Kind::NotFound, why),
            other => issue_problem(other),
        })?;
    Ok(match credential {
        Value::String(jwt) => {
            let mut response = jwt.into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/vc+jwt"),
            );
            response
        }
        json => {
            let mut response = axum::Json(json).into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/vc+ld+json"),
            );
            response
        }
    })
}

/// A DID resolution result; `status` and `error` set when resolution failed.
fn resolution(status: StatusCode, document: Value, error: Option<&str>) -> Response {
    let mut metadata = serde_json::json!({ "contentType": "application/did+json" });
    if let Some(error) = error {
        metadata = serde_json::json!({ "error": error });
    }
    let body = serde_json::json!({
        "@context": "https://w3id.org/did-resolution/v1",
        "didDocument": document,
        "didDocumentMetadata": {},
        "didResolutionMetadata": metadata,
    });
    let mut response = (status, axum::Json(body)).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/ld+json;profile=\"https://w3id.org/did-resolution\""),
    );
    response
}

async fn resolve(State(state): State<AppState>, Path(did): Path<String>) -> Response {
    use ssi::dids::DIDResolver;
    let Ok(parsed) = Did::parse(&did) else {
        return resolution(StatusCode::BAD_REQUEST, Value::Null, Some("invalidDid"));
    };
    if !matches!(parsed.method(), "key" | "web") {
        return resolution(
            StatusCode::NOT_IMPLEMENTED,
            Value::Null,
            Some("methodNotSupported"),
        );
    }
    if parsed.method() == "key" && parsed.check_did_key().is_err() {
        return resolution(StatusCode::BAD_REQUEST, Value::Null, Some("invalidDid"));
    }
    let Ok(ssi_did) = ssi::dids::DIDBuf::new(did.clone().into_bytes()) else {
        return resolution(StatusCode::BAD_REQUEST, Value::Null, Some("invalidDid"));
    };
    match state.service.engine.did_resolver().resolve(&ssi_did).await {
        Ok(output) => {
            let document =
                serde_json::to_value(output.document.into_document()).unwrap_or(Value::Null);
            resolution(StatusCode::OK, document, None)
        }
        Err(ssi::dids::resolution::Error::NotFound) => {
            resolution(StatusCode::NOT_FOUND, Value::Null, Some("notFound"))
        }
        Err(ssi::dids::resolution::Error::MethodNotSupported(_)) => resolution(
            StatusCode::NOT_IMPLEMENTED,
            Value::Null,
            Some("methodNotSupported"),
        ),
        Err(ssi::dids::resolution::Error::InvalidMethodSpecificId(_)) => {
            resolution(StatusCode::BAD_REQUEST, Value::Null, Some("invalidDid"))
        }
        // A did:web host that cannot be reached or answers badly: nothing found there.
        Err(err) => {
            tracing::debug!(%did, %err, "DID resolution failed");
            resolution(StatusCode::NOT_FOUND, Value::Null, Some("notFound"))
        }
    }
}

fn did_document_response(state: &AppState) -> Response {
    let mut response = axum::Json(state.service.key.did_document()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/did+json"),
    );
    response
}

async fn own_did_document(State(state): State<AppState>) -> Response {
    did_document_response(&state)
}

/// The path form of did:web (`did:web:host:a:b` → `/a/b/did.json`).
async fn did_web_path(
    State(state): State<AppState>,
    Path(path): Path<String>,
) -> Result<Response, Problem> {
    if let Some(id) = state.service.key.did().as_str().strip_prefix("did:web:") {
        let segments: Vec<&str> = id.split(':').skip(1).collect();
        if !segments.is_empty() && path == format!("{}/did.json", segments.join("/")) {
            return Ok(did_document_response(&state));
        }
    }
    Err(Problem::new(Kind::NotFound, format!("no resource /{path}")))
}

async fn openapi() -> Response {
    let mut response = OPENAPI.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

async fn metrics(State(state): State<AppState>) -> Response {
    let mut response = state.service.metrics.render().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn not_found() -> Problem {
    Problem::new(Kind::NotFound, "no such route")
}
