//! State survives a restart and `kill -9` of a real `identityd` process: the issuer key,
//! the admin token, the issued-credential index and the status bits.

use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::common::{Api, Running, minimal_credential};

#[tokio::test]
async fn key_and_token_are_created_once_with_mode_0600() {
    let service = Running::start().await;
    let did = service.did.clone();
    for file in ["issuer.key", "admin.token"] {
        let mode = std::fs::metadata(service.state.path().join(file))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{file}");
    }
    let key = std::fs::read_to_string(service.state.path().join("issuer.key")).unwrap();
    let state = service.stop().await;
    let again = Running::start_in(state, |_| {}).await;
    assert_eq!(again.did, did, "the same key after a restart");
    assert_eq!(
        std::fs::read_to_string(again.state.path().join("issuer.key")).unwrap(),
        key
    );
}

#[tokio::test]
async fn configured_tokens_replace_the_admin_token_file() {
    let service =
        Running::start_with(|config| config.tokens = vec!["a-configured-token-0123".into()]).await;
    assert!(!service.state.path().join("admin.token").exists());
    let (status, _) = service
        .post(
            "/credentials/issue",
            &json!({ "credential": minimal_credential(&service.did) }),
        )
        .await;
    assert_eq!(status, 401, "the (absent) file token is not accepted");
    let response = service
        .client
        .post(service.url("/credentials/issue"))
        .bearer_auth("a-configured-token-0123")
        .json(&json!({ "credential": minimal_credential(&service.did) }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);
}

/// A real identityd process on a free loopback port.
pub(crate) struct Process {
    pub(crate) child: Child,
    pub(crate) base: String,
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(crate) async fn spawn(state: &std::path::Path, port: u16) -> Process {
    let mut child = Command::new(env!("CARGO_BIN_EXE_identityd"))
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--state-dir",
        ])
        .arg(state)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    for _ in 0..1000 {
        if client.get(format!("{base}/healthz")).send().await.is_ok() {
            return Process { child, base };
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("identityd did not start");
}

#[tokio::test]
async fn issued_index_and_revocations_survive_kill_9() {
    let state = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut first = spawn(state.path(), port).await;
    let token = std::fs::read_to_string(state.path().join("admin.token"))
        .unwrap()
        .trim()
        .to_owned();
    let api = Api::new(first.base.clone(), token);
    let (_, did) = api.get("/.well-known/did.json").await;
    let did = did["id"].as_str().unwrap().to_owned();

    let mut issued = Vec::new();
    for _ in 0..3 {
        issued.push(api.issue_by(&did, "ldp_vc").await);
    }
    let revoked = issued[1]["id"].as_str().unwrap().to_owned();
    assert_eq!(api.set_status(&revoked, "revoked").await, 200);

    // SIGKILL: no shutdown path runs.
    first.child.kill().unwrap();
    first.child.wait().unwrap();

    let mut second = spawn(state.path(), port).await;
    let (status, result) = api.verify(&issued[0]).await;
    assert_eq!(status, 200, "{result}");
    let (status, result) = api.verify(&issued[1]).await;
    assert_eq!(status, 422, "{result}");
    assert!(
        result["errors"]
            .as_array()
            .unwrap()
            .contains(&json!("revoked"))
    );
    // The index remembers the credential (revocation is final) and allocation goes on.
    assert_eq!(api.set_status(&revoked, "active").await, 409);
    let fourth = api.issue_by(&did, "ldp_vc").await;
    let indexes: Vec<&str> = issued
        .iter()
        .chain([&fourth])
        .map(|vc| {
            vc["credentialStatus"][0]["statusListIndex"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(indexes, ["0", "1", "2", "3"]);
    second.child.kill().unwrap();
    second.child.wait().unwrap();
}
