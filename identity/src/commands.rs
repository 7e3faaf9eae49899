//! The `identityd` commands for people and scripts: `verify`, `issue`, `revoke`, `enrol`,
//! `key export|import`. Part of the binary, so errors are `anyhow` and printed by `main`.
//!
//! Issuing and revoking need the issuer's state. The state database is locked while a
//! server runs; then these commands ask that server over HTTP with the admin token, and
//! otherwise they open the local state themselves.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{Context, bail};
use serde_json::Value;
use swarmguard_identity::cli::StateArgs;
use swarmguard_identity::config::Config;
use swarmguard_identity::did::Did;
use swarmguard_identity::keys;
use swarmguard_identity::membership::{self, Role};
use swarmguard_identity::service::{OpenError, Service};
use swarmguard_identity::store::{ListId, Status, Store};
use swarmguard_identity::vc::{self, Engine, Format};

/// Reads the configuration the way `serve` does, with `--state-dir` applied.
pub(crate) fn load_config(state: &StateArgs) -> anyhow::Result<Config> {
    let (mut config, _) = Config::load(state.config.as_deref())?;
    if let Some(dir) = &state.state_dir {
        config.state_dir = dir.clone();
    }
    Ok(config)
}

/// Where an admin command runs: on the local state, or through the running server.
enum Issuer {
    Local(Box<Service>),
    Remote {
        base: String,
        token: String,
        client: reqwest::Client,
    },
}

/// Opens the local state, or — when a running server holds its lock — prepares to talk to
/// that server.
fn issuer(config: Config) -> anyhow::Result<Issuer> {
    if !config.state_dir.join(keys::KEY_FILE).exists() {
        bail!(
            "{}: no issuer key; start `identityd serve` once (or `identityd key import`) first",
            config.state_dir.display()
        );
    }
    let base = config.base_url().to_string();
    let token = keys::read_token(&config);
    match Service::open(config) {
        Ok(service) => Ok(Issuer::Local(Box::new(service))),
        Err(OpenError::Store { .. }) if token.is_some() => Ok(Issuer::Remote {
            base,
            token: token.unwrap_or_default(),
            client: reqwest::Client::new(),
        }),
        Err(err) => Err(err.into()),
    }
}

async fn post(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    path: &str,
    body: Value,
) -> anyhow::Result<Value> {
    let url = format!("{base}{path}");
    let response = client
        .post(&url)
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .with_context(|| format!("the state is in use, and the server at {url} does not answer"))?;
    let status = response.status();
    let body: Value = response
        .json()
        .await
        .with_context(|| format!("{url}: not JSON"))?;
    if !status.is_success() {
        bail!(
            "{url}: {status}: {}",
            body.get("detail")
                .and_then(Value::as_str)
                .unwrap_or_default()
        );
    }
    Ok(body)
}

/// `identityd issue --subject FILE`.
pub(crate) async fn issue(
    state: &StateArgs,
    subject: &Path,
    credential_type: Option<&str>,
    format: &str,
    json: bool,
) -> anyhow::Result<()> {
    let format = Format::parse(format)
        .with_context(|| format!("unknown format {format} (ldp_vc or jwt_vc_json)"))?;
    let text = std::fs::read_to_string(subject).with_context(|| subject.display().to_string())?;
    let subject_json: Value =
        serde_json::from_str(&text).with_context(|| format!("{}: not JSON", subject.display()))?;
    if !subject_json.is_object() {
        bail!("{}: the subject must be a JSON object", subject.display());
    }
    let mut types = vec![Value::String("VerifiableCredential".into())];
    if let Some(t) = credential_type {
        types.push(Value::String(t.to_owned()));
    }
    let config = load_config(state)?;
    let signed = match issuer(config)? {
        Issuer::Local(service) => {
            let credential = serde_json::json!({
                "@context": [vc::CREDENTIALS_V2],
                "type": types,
                "issuer": service.key.did().as_str(),
                "credentialSubject": subject_json,
            });
            service.issue(credential, format).await?
        }
        Issuer::Remote {
            base,
            token,
            client,
        } => {
            let document: Value = client
                .get(format!("{base}.well-known/did.json"))
                .send()
                .await?
                .json()
                .await?;
            let did = document
                .get("id")
                .and_then(Value::as_str)
                .context("the server's DID document has no id")?;
            let credential = serde_json::json!({
                "@context": [vc::CREDENTIALS_V2],
                "type": types,
                "issuer": did,
                "credentialSubject": subject_json,
            });
            let body = serde_json::json!({ "credential": credential, "options": { "format": format.as_str() } });
            post(&client, &base, &token, "credentials/issue", body).await?["verifiableCredential"]
                .clone()
        }
    };
    if json {
        println!("{}", serde_json::json!({ "verifiableCredential": signed }));
    } else {
        match &signed {
            Value::String(jwt) => println!("{jwt}"),
            other => println!("{}", serde_json::to_string_pretty(other)?),
        }
    }
    Ok(())
}

/// `identityd revoke ID`.
pub(crate) async fn revoke(state: &StateArgs, id: &str, json: bool) -> anyhow::Result<()> {
    let config = load_config(state)?;
    match issuer(config)? {
        Issuer::Local(service) => {
            service.set_status(id, Status::Revoked)?;
        }
        Issuer::Remote {
            base,
            token,
            client,
        } => {
            let body = serde_json::json!({
                "credentialId": id,
                "credentialStatus": [{ "type": "BitstringStatusListCredential", "status": "revoked" }],
            });
            post(&client, &base, &token, "credentials/status", body).await?;
        }
    }
    if json {
        println!(
            "{}",
            serde_json::json!({ "credentialId": id, "status": "revoked" })
        );
    } else {
        println!("{id}: revoked");
    }
    Ok(())
}

/// `identityd enrol --did DID --role ROLE`.
pub(crate) async fn enrol(
    state: &StateArgs,
    did: &str,
    role: &str,
    out: Option<&Path>,
) -> anyhow::Result<()> {
    let agent = Did::parse(did)?;
    let role: Role = role.parse().map_err(anyhow::Error::msg)?;
    let config = load_config(state)?;
    let jwt = match issuer(config)? {
        Issuer::Local(service) => service.issue_member(&agent, role).await?,
        Issuer::Remote {
            base,
            token,
            client,
        } => {
            let body = serde_json::json!({ "did": agent.as_str(), "role": role.as_str() });
            post(&client, &base, &token, "members/issue", body).await?["verifiableCredential"]
                .as_str()
                .context("the server answered without a credential")?
                .to_owned()
        }
    };
    match out {
        Some(path) => {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(path)
                .with_context(|| path.display().to_string())?;
            file.write_all(format!("{jwt}\n").as_bytes())?;
            eprintln!(
                "{}: membership credential for {agent} ({role})",
                path.display()
            );
        }
        None => println!("{jwt}"),
    }
    Ok(())
}

/// `identityd key export FILE`.
pub(crate) fn key_export(state: &StateArgs, file: &Path) -> anyhow::Result<()> {
    let config = load_config(state)?;
    let key = keys::export_key(&config, file)?;
    eprintln!(
        "{}: issuer key of {} written (mode 0600); keep it offline and safe",
        file.display(),
        key.did()
    );
    Ok(())
}

/// `identityd key import FILE [--force]`.
pub(crate) fn key_import(state: &StateArgs, file: &Path, force: bool) -> anyhow::Result<()> {
    let config = load_config(state)?;
    let key = keys::import_key(&config, file, force)?;
    eprintln!(
        "issuer key of {} installed in {}",
        key.did(),
        config.state_dir.display()
    );
    Ok(())
}

/// `identityd verify FILE`: proof and validity offline; status from the local state when
/// it holds the list, else from the list's URL (unless `offline`). Returns whether the
/// input verified.
pub(crate) async fn verify(
    state: &StateArgs,
    file: &Path,
    json: bool,
    offline: bool,
) -> anyhow::Result<bool> {
    let text = std::fs::read_to_string(file).with_context(|| file.display().to_string())?;
    let input = match serde_json::from_str::<Value>(&text) {
        Ok(value) => value,
        // A compact VC-JWT file holds the bare token.
        Err(_) => Value::String(text.trim().to_owned()),
    };
    let config = load_config(state)?;
    let own = keys::load_key(&config).ok();
    let engine = Engine::new(own.as_ref());
    let now = chrono::Utc::now();
    let is_presentation = vc::has_type(&input, "VerifiablePresentation");
    let mut report = if is_presentation {
        let (mut report, inner) = engine.verify_presentation(&input, None, None, now).await?;
        for credential in inner {
            report.errors.extend(
                credential
                    .errors
                    .into_iter()
                    .map(|e| format!("embedded credential: {e}")),
            );
        }
        report
    } else {
        engine.verify_credential(&input, now).await?
    };
    let mut status_note = "not applicable (no credentialStatus)".to_owned();
    if let Some(credential) = report.credential.clone() {
        let entries = membership::status_entries(&credential).unwrap_or_default();
        if !entries.is_empty() {
            let store = Store::open(&config.state_dir.join(keys::DB_DIR)).ok();
            let own_prefix = format!("{}status/", config.base_url());
            let mut notes = Vec::new();
            for entry in entries {
                let local = entry
                    .list_url
                    .strip_prefix(&own_prefix)
                    .and_then(ListId::parse)
                    .and_then(|list| store.as_ref().and_then(|s| s.bits(list).ok()));
                let (bits, source) = match local {
                    Some(bits) => (Some(bits), "local state"),
                    None if offline => (None, "not checked (--offline)"),
                    None => match fetch_list(&engine, &entry.list_url).await {
                        Ok(bits) => (Some(bits), "fetched"),
                        Err(err) => {
                            notes.push(format!("{}: not checked ({err})", entry.purpose));
                            continue;
                        }
                    },
                };
                match bits.and_then(|bits| membership::bit_at(&bits, entry.index)) {
                    Some(true) => report.errors.push(
                        entry
                            .purpose
                            .replace("revocation", "revoked")
                            .replace("suspension", "suspended"),
                    ),
                    Some(false) => notes.push(format!("{}: clear ({source})", entry.purpose)),
                    None => notes.push(format!("{}: {source}", entry.purpose)),
                }
            }
            status_note = notes.join(", ");
        }
    }
    let verified = report.verified();
    if json {
        println!(
            "{}",
            serde_json::json!({
                "verified": verified,
                "checks": report.checks,
                "warnings": report.warnings,
                "errors": report.errors,
                "status": status_note,
                "issuer": report.issuer,
                "format": report.format.map(|f| f.as_str()),
            })
        );
    } else {
        println!(
            "{}: {}",
            file.display(),
            if verified { "VERIFIED" } else { "NOT VERIFIED" }
        );
        if let Some(issuer) = &report.issuer {
            println!("  issuer:   {issuer}");
        }
        println!("  checks:   {}", report.checks.join(", "));
        println!("  status:   {status_note}");
        for warning in &report.warnings {
            println!("  warning:  {warning}");
        }
        for error in &report.errors {
            println!("  error:    {error}");
        }
    }
    Ok(verified)
}

async fn fetch_list(engine: &Engine, url: &str) -> anyhow::Result<Vec<u8>> {
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()?;
    let document: Value = client
        .get(url)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let report = engine
        .verify_credential(&document, chrono::Utc::now())
        .await?;
    if !report.verified() {
        bail!(
            "the status list does not verify: {}",
            report.errors.join("; ")
        );
    }
    let encoded = document
        .pointer("/credentialSubject/encodedList")
        .and_then(Value::as_str)
        .context("no encodedList")?;
    membership::decode_encoded_list(encoded).map_err(anyhow::Error::msg)
}
