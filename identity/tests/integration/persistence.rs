//! State survives a restart and `kill -9` of a real `identityd` process: the issuer key,
//! the admin token, the issued-credential index and the status bits.

use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{Running, minimal_credential};

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
    let client = reqwest::Client::new();
    let token = std::fs::read_to_string(state.path().join("admin.token"))
        .unwrap()
        .trim()
        .to_owned();
    let did: Value = client
        .get(format!("{}/.well-known/did.json", first.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let did = did["id"].as_str().unwrap().to_owned();

    let mut issued = Vec::new();
    for _ in 0..3 {
        let response: Value = client
            .post(format!("{}/credentials/issue", first.base))
            .bearer_auth(&token)
            .json(&json!({ "credential": minimal_credential(&did) }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        issued.push(response["verifiableCredential"].clone());
    }
    let revoked = issued[1]["id"].as_str().unwrap().to_owned();
    let response = client.post(format!("{}/credentials/status", first.base)).bearer_auth(&token)
        .json(&json!({ "credentialId": revoked, "credentialStatus": [{ "type": "BitstringStatusListCredential", "status": "revoked" }] }))
        .send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);

    // SIGKILL: no shutdown path runs.
    first.child.kill().unwrap();
    first.child.wait().unwrap();

    let mut second = spawn(state.path(), port).await;
    let verify = |vc: Value| {
        let client = client.clone();
        let base = second.base.clone();
        async move {
            let response = client
                .post(format!("{base}/credentials/verify"))
                .json(&json!({ "verifiableCredential": vc }))
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap())
        }
    };
    let (status, result) = verify(issued[0].clone()).await;
    assert_eq!(status, 200, "{result}");
    let (status, result) = verify(issued[1].clone()).await;
    assert_eq!(status, 422, "{result}");
    assert!(
        result["errors"]
            .as_array()
            .unwrap()
            .contains(&json!("revoked"))
    );
    // The index remembers the credential (revocation is final) and allocation goes on.
    let response = client.post(format!("{}/credentials/status", second.base)).bearer_auth(&token)
        .json(&json!({ "credentialId": revoked, "credentialStatus": [{ "type": "BitstringStatusListCredential", "status": "active" }] }))
        .send().await.unwrap();
    assert_eq!(response.status().as_u16(), 409);
    let response: Value = client
        .post(format!("{}/credentials/issue", second.base))
        .bearer_auth(&token)
        .json(&json!({ "credential": minimal_credential(&did) }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let indexes: Vec<&str> = issued
        .iter()
        .chain([&response["verifiableCredential"]])
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
