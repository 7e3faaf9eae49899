//! The `identityd` commands for people and scripts, run as real processes: key backup and
//! restore, issue, verify and revoke on the local state and through a running server,
//! and enrolling an agent.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

use crate::persistence::{free_port, spawn};

fn identityd(state: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_identityd"))
        .args(args)
        .arg("--state-dir")
        .arg(state)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

fn stdout_json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|_| {
        panic!(
            "not JSON: {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

#[tokio::test]
async fn key_export_and_import_move_the_issuer_to_another_host() {
    let (old, new, other) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let port = free_port();
    let mut server = spawn(old.path(), port).await;
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let did = std::fs::read_to_string(old.path().join("issuer.key")).unwrap();
    assert!(did.contains("\"d\""), "the key file holds the private key");

    let backup = old.path().join("backup.jwk");
    let out = identityd(old.path(), &["key", "export", backup.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&backup).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // The package's purge reads this marker to know the key has a copy elsewhere.
    let marker = std::fs::read_to_string(old.path().join("issuer.key.exported")).unwrap();
    assert!(marker.contains("backup.jwk"), "{marker}");
    // Export never overwrites.
    assert!(
        !identityd(old.path(), &["key", "export", backup.to_str().unwrap()])
            .status
            .success()
    );

    let out = identityd(new.path(), &["key", "import", backup.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(new.path().join("issuer.key")).unwrap(),
        std::fs::read_to_string(&backup).unwrap()
    );

    // A host with its own key refuses another unless forced, and keeps the old one.
    let mut server = spawn(other.path(), free_port()).await;
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let out = identityd(other.path(), &["key", "import", backup.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--force"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = identityd(
        other.path(),
        &["key", "import", "--force", backup.to_str().unwrap()],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let kept = std::fs::read_dir(other.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("issuer.key.replaced-")
        })
        .count();
    assert_eq!(kept, 1, "the replaced key is kept");
}

#[tokio::test]
async fn issue_verify_revoke_on_local_state_then_through_the_server() {
    let state = tempfile::tempdir().unwrap();
    let port = free_port();
    // First start creates the key; then the commands work on the local state.
    let mut server = spawn(state.path(), port).await;
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let config = state.path().join("identity.toml");
    std::fs::write(
        &config,
        format!("[server]\nlisten = \"127.0.0.1:{port}\"\n"),
    )
    .unwrap();
    let subject = state.path().join("subject.json");
    std::fs::write(&subject, r#"{"id": "did:example:citizen", "name": "Ada"}"#).unwrap();
    let with_config = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--config", config.to_str().unwrap()]);
        identityd(state.path(), &all)
    };

    let out = with_config(&["issue", "--subject", subject.to_str().unwrap(), "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let vc = stdout_json(&out)["verifiableCredential"].clone();
    let id = vc["id"].as_str().unwrap().to_owned();
    let file = state.path().join("vc.json");
    std::fs::write(&file, vc.to_string()).unwrap();

    let out = with_config(&["verify", file.to_str().unwrap(), "--json"]);
    let report = stdout_json(&out);
    assert!(out.status.success(), "{report}");
    assert_eq!(report["verified"], true);
    assert!(
        report["status"].as_str().unwrap().contains("local state"),
        "{report}"
    );

    let out = with_config(&["verify", file.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("VERIFIED") && text.contains("status:"),
        "{text}"
    );

    let out = with_config(&["revoke", &id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = with_config(&["verify", file.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout_json(&out)["errors"].to_string().contains("revoked"));

    // With the server running (and holding the database), the same commands go through it.
    let mut server = spawn(state.path(), port).await;
    let out = with_config(&[
        "issue",
        "--subject",
        subject.to_str().unwrap(),
        "--format",
        "jwt_vc_json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let jwt = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert_eq!(jwt.split('.').count(), 3, "{jwt}");
    let jwt_file = state.path().join("vc.jwt");
    std::fs::write(&jwt_file, &jwt).unwrap();
    let out = with_config(&["verify", jwt_file.to_str().unwrap(), "--json"]);
    let report = stdout_json(&out);
    assert_eq!(report["verified"], true, "{report}");
    assert_eq!(report["format"], "jwt_vc_json");

    // Enrolling an agent: one command on the identityd host.
    let agent = swarmguard_identity::did::Did::from_ed25519(&[9; 32]);
    let member = state.path().join("member.jwt");
    let out = with_config(&[
        "enrol",
        "--did",
        agent.as_str(),
        "--role",
        "sensor",
        "--out",
        member.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = with_config(&["verify", member.to_str().unwrap(), "--json"]);
    assert_eq!(stdout_json(&out)["verified"], true);
    server.child.kill().unwrap();
    server.child.wait().unwrap();
}

#[test]
fn bad_configuration_exits_64() {
    let state = tempfile::tempdir().unwrap();
    let config = state.path().join("identity.toml");
    std::fs::write(&config, "[issuer]\ndid_method = \"ion\"\n").unwrap();
    let out = identityd(
        state.path(),
        &["revoke", "urn:x", "--config", config.to_str().unwrap()],
    );
    assert_eq!(
        out.status.code(),
        Some(64),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
