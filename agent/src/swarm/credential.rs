//! The agent's own identity on disk: its Ed25519 key (`<state_dir>/agent.key`, PKCS#8,
//! created at first start with mode 0600) and its membership credential (a VC-JWT file,
//! `gossip.credential`). Both `swarmd` and `swarmctl credential request` use these, so the
//! DID that `swarmctl` asks identityd for is the one `swarmd` runs with.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::peer::PeerId;
use super::signal::{KeyError, SigningKey};

/// The key file's name in the state directory.
pub const KEY_FILE: &str = "agent.key";
/// The credential file's name in the state directory (the default `gossip.credential`).
pub const CREDENTIAL_FILE: &str = "member.jwt";
/// A credential file larger than this is refused (identityd's are about 1 KiB).
pub const MAX_CREDENTIAL_LEN: usize = 16 * 1024;

/// Why the key or the credential could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Key { path: PathBuf, source: KeyError },
    #[error("{path}: the credential file is larger than {MAX_CREDENTIAL_LEN} bytes")]
    TooLarge { path: PathBuf },
    #[error("{path}: the credential file is empty or not text")]
    NotText { path: PathBuf },
}

/// The agent's key, read from `<state_dir>/agent.key` or created there (0600).
#[derive(Debug)]
pub struct AgentKey {
    pub key: SigningKey,
    /// The PKCS#8 document, for the TLS certificate.
    pub pkcs8: Vec<u8>,
}

impl AgentKey {
    pub fn peer_id(&self) -> PeerId {
        self.key.peer_id()
    }
}

/// Loads the agent's key, creating it (and the state directory) on first use.
pub fn load_or_create_key(state_dir: &Path) -> Result<AgentKey, IdentityError> {
    let path = state_dir.join(KEY_FILE);
    let io = |source| IdentityError::Io {
        path: path.clone(),
        source,
    };
    match std::fs::read(&path) {
        Ok(pkcs8) => {
            let key = SigningKey::from_pkcs8(&pkcs8).map_err(|source| IdentityError::Key {
                path: path.clone(),
                source,
            })?;
            Ok(AgentKey { key, pkcs8 })
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(state_dir).map_err(io)?;
            let (key, pkcs8) = SigningKey::generate().map_err(|source| IdentityError::Key {
                path: path.clone(),
                source,
            })?;
            write_private(&path, &pkcs8).map_err(io)?;
            tracing::info!(path = %path.display(), did = %key.peer_id(), "created the agent key");
            Ok(AgentKey { key, pkcs8 })
        }
        Err(err) => Err(io(err)),
    }
}

/// Reads a credential file; `Ok(None)` when it does not exist.
pub fn read_credential(path: &Path) -> Result<Option<String>, IdentityError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(IdentityError::Io {
                path: path.to_owned(),
                source,
            });
        }
    };
    if bytes.len() > MAX_CREDENTIAL_LEN {
        return Err(IdentityError::TooLarge {
            path: path.to_owned(),
        });
    }
    let text = String::from_utf8(bytes)
        .ok()
        .map(|text| text.trim().to_owned())
        .filter(|text| !text.is_empty())
        .ok_or_else(|| IdentityError::NotText {
            path: path.to_owned(),
        })?;
    Ok(Some(text))
}

/// Writes a credential (renewed, or requested by `swarmctl`) in place of the old one:
/// a temporary file renamed over it, so that a reader never sees half a credential.
pub fn write_credential(path: &Path, jwt: &str) -> Result<(), IdentityError> {
    let io = |source| IdentityError::Io {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let temporary = path.with_extension("jwt.tmp");
    write_private(&temporary, format!("{jwt}\n").as_bytes()).map_err(io)?;
    std::fs::rename(&temporary, path).map_err(io)
}

/// Why identityd did not issue a credential.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("cannot reach identityd at {url}: {source}")]
    Http { url: String, source: reqwest::Error },
    #[error("identityd answered {status}: {body}")]
    Refused { status: u16, body: String },
    #[error("identityd's answer has no verifiableCredential string")]
    NoCredential,
}

/// Asks identityd (`POST {identity_url}/members/issue`, bearer `token`) for a membership
/// credential for `did` with `role`; returns the VC-JWT.
pub async fn request(
    http: &reqwest::Client,
    identity_url: &str,
    token: &str,
    did: &str,
    role: &str,
) -> Result<String, RequestError> {
    let url = format!("{}/members/issue", identity_url.trim_end_matches('/'));
    let http_error = |source| RequestError::Http {
        url: url.clone(),
        source,
    };
    let response = http
        .post(&url)
        .bearer_auth(token)
        .json(&serde_json::json!({ "did": did, "role": role }))
        .send()
        .await
        .map_err(http_error)?;
    let status = response.status();
    let body = response.text().await.map_err(http_error)?;
    if !status.is_success() {
        return Err(RequestError::Refused {
            status: status.as_u16(),
            body: body.chars().take(500).collect(),
        });
    }
    serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|value| {
            value
                .get("verifiableCredential")
                .and_then(|v| v.as_str())
                .map(str::to_owned)
        })
        .ok_or(RequestError::NoCredential)
}

/// Creates (or truncates) `path` with mode 0600 and writes `bytes` to disk.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_key_is_created_once_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create_key(dir.path()).unwrap();
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let second = load_or_create_key(dir.path()).unwrap();
        assert_eq!(first.peer_id(), second.peer_id());
    }

    #[test]
    fn credentials_round_trip_and_a_missing_one_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join(CREDENTIAL_FILE);
        assert!(read_credential(&path).unwrap().is_none());
        write_credential(&path, "a.b.c").unwrap();
        assert_eq!(read_credential(&path).unwrap().as_deref(), Some("a.b.c"));
    }
}
