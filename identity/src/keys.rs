//! The secrets in the state directory: the issuer key (`issuer.key`, a private JWK) and
//! the admin token (`admin.token`), both created on first start with mode 0600.
//!
//! The issuer key is the agency's most valuable secret: every credential it ever issued
//! verifies against it. Nothing here deletes or overwrites it; `identityd key import`
//! refuses to replace a different key unless told to, and then keeps the old one beside it.
//! Logs name the files, never their contents.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::config::{Config, DidMethod};
use crate::vc::{IssuerDid, IssuerKey};

/// File name of the issuer key in the state directory.
pub const KEY_FILE: &str = "issuer.key";
/// File name of the generated admin token.
pub const TOKEN_FILE: &str = "admin.token";
/// Left beside the key by `key export` (where and when, no secret), so that purging the
/// package knows a copy exists and may delete the key (see packaging/deb/identity/postrm).
pub const EXPORTED_MARKER: &str = "issuer.key.exported";
/// Folder of the sled database.
pub const DB_DIR: &str = "db";

/// Why the secrets could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A file could not be read, created or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The key file does not hold an Ed25519 private JWK.
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    /// `key import` would replace a different key.
    #[error(
        "{path} already holds a different issuer key ({existing}); pass --force to replace it (the old key is kept as {path}.replaced-<time>)"
    )]
    WouldReplace { path: PathBuf, existing: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KeyError + '_ {
    move |source| KeyError::Io {
        path: path.to_owned(),
        source,
    }
}

/// How the configuration names the issuer.
pub fn issuer_did(config: &Config) -> IssuerDid {
    match &config.did_method {
        DidMethod::Key => IssuerDid::Key,
        DidMethod::Web(id) => IssuerDid::Web(id.clone()),
    }
}

/// Loads the issuer key, creating it (0600) on first start.
pub fn load_or_create_key(config: &Config) -> Result<IssuerKey, KeyError> {
    let dir = &config.state_dir;
    create_state_dir(dir)?;
    let path = dir.join(KEY_FILE);
    let naming = issuer_did(config);
    match fs::read_to_string(&path) {
        Ok(text) => {
            check_private(&path)?;
            let key =
                IssuerKey::from_jwk_json(&text, &naming).map_err(|err| KeyError::Invalid {
                    path: path.clone(),
                    reason: err.to_string(),
                })?;
            tracing::info!(path = %path.display(), did = %key.did(), "issuer key loaded");
            Ok(key)
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            let key = IssuerKey::generate(&naming).map_err(|err| KeyError::Invalid {
                path: path.clone(),
                reason: err.to_string(),
            })?;
            write_new_secret(&path, key.to_jwk_json().as_bytes())?;
            tracing::warn!(
                path = %path.display(),
                did = %key.did(),
                "created a new issuer key: back it up (identityd key export), see docs/operations.md"
            );
            Ok(key)
        }
        Err(err) => Err(io(&path)(err)),
    }
}

/// Reads the issuer key without creating one (for `key export` and local CLI use).
pub fn load_key(config: &Config) -> Result<IssuerKey, KeyError> {
    let path = config.state_dir.join(KEY_FILE);
    let text = fs::read_to_string(&path).map_err(io(&path))?;
    IssuerKey::from_jwk_json(&text, &issuer_did(config)).map_err(|err| KeyError::Invalid {
        path,
        reason: err.to_string(),
    })
}

/// The bearer tokens that may issue and revoke: the configured ones, or the admin token
/// file (created with a random token on first start).
pub fn load_or_create_tokens(config: &Config) -> Result<Vec<String>, KeyError> {
    if !config.tokens.is_empty() {
        return Ok(config.tokens.clone());
    }
    create_state_dir(&config.state_dir)?;
    let path = config.state_dir.join(TOKEN_FILE);
    match fs::read_to_string(&path) {
        Ok(text) => {
            check_private(&path)?;
            let token = text.trim().to_owned();
            if token.len() < 16 {
                return Err(KeyError::Invalid {
                    path,
                    reason: "the admin token is shorter than 16 characters".into(),
                });
            }
            tracing::info!(path = %path.display(), "admin token loaded");
            Ok(vec![token])
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            let token = random_token().map_err(io(&path))?;
            write_new_secret(&path, format!("{token}\n").as_bytes())?;
            tracing::warn!(path = %path.display(), "created the admin token (read it from that file)");
            Ok(vec![token])
        }
        Err(err) => Err(io(&path)(err)),
    }
}

/// Reads the admin token file (for the CLI talking to a running server).
pub fn read_token(config: &Config) -> Option<String> {
    if let Some(token) = config.tokens.first() {
        return Some(token.clone());
    }
    fs::read_to_string(config.state_dir.join(TOKEN_FILE))
        .ok()
        .map(|text| text.trim().to_owned())
}

/// `key export`: writes the key to `out` (created 0600, never overwritten).
pub fn export_key(config: &Config, out: &Path) -> Result<IssuerKey, KeyError> {
    let key = load_key(config)?;
    write_new_secret(out, key.to_jwk_json().as_bytes())?;
    let marker = config.state_dir.join(EXPORTED_MARKER);
    let note = format!(
        "exported to {} at {}\n",
        out.display(),
        humantime::format_rfc3339_seconds(std::time::SystemTime::now())
    );
    fs::write(&marker, note).map_err(io(&marker))?;
    Ok(key)
}

/// `key import`: installs the key in `file`. The same key again is a no-op; a different
/// key is refused unless `force`, and then the old file is renamed, not deleted.
pub fn import_key(config: &Config, file: &Path, force: bool) -> Result<IssuerKey, KeyError> {
    let text = fs::read_to_string(file).map_err(io(file))?;
    let naming = issuer_did(config);
    let key = IssuerKey::from_jwk_json(&text, &naming).map_err(|err| KeyError::Invalid {
        path: file.to_owned(),
        reason: err.to_string(),
    })?;
    create_state_dir(&config.state_dir)?;
    let path = config.state_dir.join(KEY_FILE);
    if let Ok(existing) = load_key(config) {
        if existing.public_key() == key.public_key() {
            return Ok(key);
        }
        if !force {
            return Err(KeyError::WouldReplace {
                path,
                existing: existing.did().to_string(),
            });
        }
        let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
        let kept = config
            .state_dir
            .join(format!("{KEY_FILE}.replaced-{stamp}"));
        fs::rename(&path, &kept).map_err(io(&path))?;
        tracing::warn!(kept = %kept.display(), "previous issuer key kept");
    } else if path.exists() {
        // A file that is not a key: keep it aside rather than overwrite it.
        let kept = config.state_dir.join(format!("{KEY_FILE}.unreadable"));
        fs::rename(&path, &kept).map_err(io(&path))?;
    }
    write_new_secret(&path, key.to_jwk_json().as_bytes())?;
    Ok(key)
}

fn create_state_dir(dir: &Path) -> Result<(), KeyError> {
    fs::create_dir_all(dir).map_err(io(dir))?;
    Ok(())
}

/// Creates `path` with mode 0600; fails if it exists, so a secret is never overwritten.
fn write_new_secret(path: &Path, bytes: &[u8]) -> Result<(), KeyError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io(path))?;
    file.write_all(bytes).map_err(io(path))?;
    file.sync_all().map_err(io(path))?;
    Ok(())
}

/// Warns when a secret is readable by others (an operator may have copied it carelessly).
fn check_private(path: &Path) -> Result<(), KeyError> {
    let mode = fs::metadata(path).map_err(io(path))?.permissions().mode();
    if mode & 0o077 != 0 {
        tracing::warn!(path = %path.display(), mode = format!("{:o}", mode & 0o777), "secret file is readable by others; chmod 600 it");
    }
    Ok(())
}

/// 32 random bytes from the OS, hex-encoded.
fn random_token() -> Result<String, std::io::Error> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| std::io::Error::other("no randomness"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}
