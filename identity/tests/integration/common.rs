//! Helpers: a running identityd on loopback with a temporary state directory, an HTTP
//! client, and the path of the conformance material.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde_json::Value;
use swarmguard_identity::config::Config;
use swarmguard_identity::server;
use tokio::net::TcpListener;

/// An identityd's HTTP API as a client with the admin token sees it: what tests call,
/// whether the service runs in this process ([`Running`]) or as a child process.
pub(crate) struct Api {
    pub base: String,
    pub token: String,
    pub client: reqwest::Client,
}

impl Api {
    pub(crate) fn new(base: String, token: String) -> Api {
        Api {
            base,
            token,
            client: reqwest::Client::new(),
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base.trim_end_matches('/'))
    }

    /// POSTs JSON with the admin token; returns status and body.
    pub(crate) async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let request = self.client.post(self.url(path)).bearer_auth(&self.token);
        reply(request.json(body).send().await.unwrap()).await
    }

    pub(crate) async fn get(&self, path: &str) -> (u16, Value) {
        reply(self.client.get(self.url(path)).send().await.unwrap()).await
    }

    /// Issues a minimal VCDM 2.0 credential by `issuer` in `format`.
    pub(crate) async fn issue_by(&self, issuer: &str, format: &str) -> Value {
        let (status, body) = self
            .post(
                "/credentials/issue",
                &serde_json::json!({
                    "credential": minimal_credential(issuer),
                    "options": { "format": format },
                }),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["verifiableCredential"].clone()
    }

    pub(crate) async fn verify(&self, credential: &Value) -> (u16, Value) {
        self.post(
            "/credentials/verify",
            &serde_json::json!({ "verifiableCredential": credential }),
        )
        .await
    }

    /// Sets a credential's status (`revoked`, `suspended`, `active`); returns the status code.
    pub(crate) async fn set_status(&self, credential_id: &str, status: &str) -> u16 {
        let body = serde_json::json!({
            "credentialId": credential_id,
            "credentialStatus": [{ "type": "BitstringStatusListCredential", "status": status }],
        });
        self.post("/credentials/status", &body).await.0
    }
}

async fn reply(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// A service running in this process until dropped; its [`Api`] through `Deref`.
pub(crate) struct Running {
    pub addr: SocketAddr,
    pub api: Api,
    pub did: String,
    pub state: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), server::ServeError>>>,
}

impl Running {
    /// Starts identityd with the defaults and a fresh state directory.
    pub(crate) async fn start() -> Running {
        Running::start_with(|_| {}).await
    }

    /// Starts identityd after `adjust` changed the configuration.
    pub(crate) async fn start_with(adjust: impl FnOnce(&mut Config)) -> Running {
        let state = tempfile::tempdir().unwrap();
        Running::start_in(state, adjust).await
    }

    pub(crate) async fn start_in(
        state: tempfile::TempDir,
        adjust: impl FnOnce(&mut Config),
    ) -> Running {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut config = Config {
            state_dir: state.path().to_owned(),
            listen: addr,
            ..Config::default()
        };
        adjust(&mut config);
        let tls = config.tls.is_some();
        let base = config.base_url().to_string();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server::run(config, listener, async {
            let _ = stopped.await;
        }));
        let client = reqwest::Client::new();
        // Ready when the DID document answers (the key exists by then).
        let mut did = String::new();
        while tls && !state.path().join("admin.token").exists() {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        for _ in 0..if tls { 0 } else { 500 } {
            if let Ok(response) = client
                .get(format!("http://{addr}/.well-known/did.json"))
                .send()
                .await
                && let Ok(doc) = response.json::<Value>().await
            {
                did = doc["id"].as_str().unwrap_or_default().to_owned();
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let token = std::fs::read_to_string(state.path().join("admin.token"))
            .map(|t| t.trim().to_owned())
            .unwrap_or_default();
        Running {
            addr,
            api: Api {
                base,
                token,
                client,
            },
            did,
            state,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Issues a minimal VCDM 2.0 credential in `format`.
    pub(crate) async fn issue(&self, format: &str) -> Value {
        self.api.issue_by(&self.did, format).await
    }

    /// Stops the service and waits for it.
    pub(crate) async fn stop(mut self) -> tempfile::TempDir {
        self.shutdown().await;
        let state = tempfile::tempdir().unwrap();
        std::mem::replace(&mut self.state, state)
    }

    async fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }
}

impl std::ops::Deref for Running {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.api
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

pub(crate) fn minimal_credential(issuer: &str) -> Value {
    serde_json::json!({
        "@context": ["https://www.w3.org/ns/credentials/v2", "https://www.w3.org/ns/credentials/examples/v2"],
        "type": ["VerifiableCredential", "ExampleAlumniCredential"],
        "issuer": issuer,
        "credentialSubject": { "id": "did:example:abcdefgh", "alumniOf": "The School of Examples" },
    })
}

/// `../shared/conformance/did` from the workspace root, or the machine-wide copy.
pub(crate) fn conformance() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let beside = workspace.join("../shared/conformance/did");
    if beside.exists() {
        beside
    } else {
        PathBuf::from("/work/shared/conformance/did")
    }
}

pub(crate) fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}
