//! `identity.toml`: the raw file as serde reads it, then the validated [`Config`] that the
//! service runs with. Every key has a default that works on one host.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use url::Url;

use crate::daemon::{self, ConfigError, ConfigWarning, LogConfig, RawLog, Source};

/// Where the packages install the file.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/swarmguard/identity.toml";
/// identityd's HTTP API, loopback only unless configured otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8480";
/// Where the issuer key, admin token and database live.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/swarmguard/identity";
/// Request bodies above this are refused with 413.
pub const DEFAULT_BODY_LIMIT: usize = 256 * 1024;
/// How long a credential is valid when the request does not say.
pub const DEFAULT_CREDENTIAL_VALIDITY: &str = "30days";
/// How long a fetched status list is trusted before it is fetched again.
pub const DEFAULT_STATUS_CACHE_TTL: &str = "5m";
/// How many other issuers' status lists are cached at most.
pub const DEFAULT_STATUS_CACHE_MAX: usize = 256;

/// How the issuer names itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DidMethod {
    /// `did:key` of the issuer key (the default: needs nothing else).
    Key,
    /// `did:web:` + this method-specific id, from `issuer.web_host` (`host[:port][/path]`).
    Web(String),
}

/// The validated configuration of `identityd`.
#[derive(Debug, Clone)]
pub struct Config {
    /// The address the HTTP API listens on.
    pub listen: SocketAddr,
    /// The base of every URL the service publishes (status lists, did:web documents);
    /// `None` means `http://{listen}`.
    pub public_url: Option<Url>,
    /// Keys, admin token and database.
    pub state_dir: PathBuf,
    /// HTTPS: PEM certificate chain and private key; both or neither.
    pub tls: Option<TlsFiles>,
    /// Largest accepted request body, in bytes.
    pub body_limit: usize,
    /// The issuer's DID method.
    pub did_method: DidMethod,
    /// Validity of issued credentials that carry no `validUntil`.
    pub credential_validity: Duration,
    /// Bearer tokens allowed to issue and revoke; empty means the generated
    /// `STATE_DIR/admin.token`.
    pub tokens: Vec<String>,
    /// Issuers whose credentials verify; empty means any issuer (trust not checked).
    pub trusted_issuers: Vec<String>,
    /// How long another issuer's status list is cached.
    pub status_cache_ttl: Duration,
    /// How many other issuers' status lists are cached.
    pub status_cache_max: usize,
    pub log: LogConfig,
}

/// The certificate and key files for HTTPS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Default for Config {
    fn default() -> Self {
        Config::from_raw(RawConfig::default(), &Source::defaults())
            .expect("the embedded defaults are valid")
    }
}

impl Config {
    /// Reads `path` (or the installed file, or the defaults) and validates it.
    pub fn load(path: Option<&Path>) -> Result<(Config, Source), ConfigError> {
        let (raw, source) = daemon::read_raw::<RawConfig>(path, Path::new(DEFAULT_CONFIG_PATH))?;
        Ok((Config::from_raw(raw, &source)?, source))
    }

    /// Validates TOML text, as `check-config` and the tests do.
    pub fn from_toml(source: &Source, text: &str) -> Result<Config, ConfigError> {
        Config::from_raw(daemon::parse_raw(source, text)?, source)
    }

    fn from_raw(raw: RawConfig, source: &Source) -> Result<Config, ConfigError> {
        let server = raw.server;
        let listen_text = server.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
        let listen = listen_text.parse().map_err(|_| {
            source.key_error(
                "server.listen",
                format!("invalid socket address \"{listen_text}\""),
            )
        })?;
        let public_url = server
            .public_url
            .map(|text| parse_public_url(source, &text))
            .transpose()?;
        let tls = match (server.tls_cert, server.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
            (None, None) => None,
            (Some(_), None) => {
                return Err(source.key_error("server.tls_key", "required with server.tls_cert"));
            }
            (None, Some(_)) => {
                return Err(source.key_error("server.tls_cert", "required with server.tls_key"));
            }
        };
        let body_limit = server.body_limit.unwrap_or(DEFAULT_BODY_LIMIT);
        if body_limit < 1024 {
            return Err(source.key_error("server.body_limit", "must be at least 1024 bytes"));
        }
        let issuer = raw.issuer;
        let did_method = match (
            issuer.did_method.as_deref().unwrap_or("key"),
            issuer.web_host,
        ) {
            ("key", _) => DidMethod::Key,
            ("web", Some(host)) => DidMethod::Web(web_did_id(source, &host)?),
            ("web", None) => {
                return Err(source.key_error(
                    "issuer.web_host",
                    "required when issuer.did_method = \"web\"",
                ));
            }
            (other, _) => {
                return Err(source.key_error(
                    "issuer.did_method",
                    format!("\"{other}\" is not a DID method identityd issues with (key, web)"),
                ));
            }
        };
        let credential_validity = daemon::parse_duration(
            source,
            "issuer.credential_validity",
            issuer
                .credential_validity
                .as_deref()
                .unwrap_or(DEFAULT_CREDENTIAL_VALIDITY),
        )?;
        let tokens = raw.auth.tokens.unwrap_or_default();
        if tokens.iter().any(|t| t.len() < 16) {
            return Err(
                source.key_error("auth.tokens", "every token must be at least 16 characters")
            );
        }
        let verify = raw.verify;
        let trusted_issuers = verify.trusted_issuers.unwrap_or_default();
        for (i, did) in trusted_issuers.iter().enumerate() {
            if crate::did::Did::parse(did).is_err() {
                return Err(source.key_error(
                    &format!("verify.trusted_issuers[{i}]"),
                    format!("\"{did}\" is not a DID"),
                ));
            }
        }
        let status_cache_ttl = daemon::parse_duration(
            source,
            "verify.status_cache_ttl",
            verify
                .status_cache_ttl
                .as_deref()
                .unwrap_or(DEFAULT_STATUS_CACHE_TTL),
        )?;
        let status_cache_max = verify.status_cache_max.unwrap_or(DEFAULT_STATUS_CACHE_MAX);
        if status_cache_max == 0 {
            return Err(source.key_error("verify.status_cache_max", "must be at least 1"));
        }
        Ok(Config {
            listen,
            public_url,
            state_dir: server
                .state_dir
                .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR)),
            tls,
            body_limit,
            did_method,
            credential_validity,
            tokens,
            trusted_issuers,
            status_cache_ttl,
            status_cache_max,
            log: raw.log.validate(source)?,
        })
    }

    /// What will not work yet although the file is valid.
    pub fn warnings(&self, source: &Source) -> Vec<ConfigWarning> {
        let mut warnings = Vec::new();
        if !self.listen.ip().is_loopback() && self.public_url.is_none() {
            warnings.push(source.warning(
                "server.public_url",
                "not set while listening beyond loopback: published URLs will use the listen address",
            ));
        }
        warnings
    }

    /// The base URL that published documents point at.
    pub fn base_url(&self) -> Url {
        self.public_url.clone().unwrap_or_else(|| {
            let scheme = if self.tls.is_some() { "https" } else { "http" };
            Url::parse(&format!("{scheme}://{}/", self.listen))
                .expect("a socket address makes a valid URL")
        })
    }
}

/// `host[:port][/path…]` → the did:web method-specific id (`host%3Aport:path…`).
fn web_did_id(source: &Source, text: &str) -> Result<String, ConfigError> {
    let bad = |why: &str| source.key_error("issuer.web_host", format!("\"{text}\": {why}"));
    let (authority, path) = text.split_once('/').unwrap_or((text, ""));
    let url = Url::parse(&format!("https://{authority}/")).map_err(|_| bad("not a host name"))?;
    let host = url.host_str().ok_or_else(|| bad("not a host name"))?;
    let mut id = host.to_owned();
    if let Some(port) = url.port() {
        id.push_str(&format!("%3A{port}"));
    }
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        if !segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        {
            return Err(bad(
                "path segments may hold letters, digits, '.', '-' and '_'",
            ));
        }
        id.push(':');
        id.push_str(segment);
    }
    Ok(id)
}

fn parse_public_url(source: &Source, text: &str) -> Result<Url, ConfigError> {
    let url = Url::parse(text).map_err(|err| {
        source.key_error(
            "server.public_url",
            format!("invalid URL \"{text}\": {err}"),
        )
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(source.key_error(
            "server.public_url",
            format!("\"{text}\" must be an http or https URL with a host"),
        ));
    }
    Ok(url)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    issuer: RawIssuer,
    #[serde(default)]
    auth: RawAuth,
    #[serde(default)]
    verify: RawVerify,
    #[serde(default)]
    log: RawLog,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Option<String>,
    public_url: Option<String>,
    state_dir: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    body_limit: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIssuer {
    did_method: Option<String>,
    web_host: Option<String>,
    credential_validity: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    tokens: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVerify {
    trusted_issuers: Option<Vec<String>>,
    status_cache_ttl: Option<String>,
    status_cache_max: Option<usize>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(&Source::file(Path::new("identity.toml")), text)
    }

    #[test]
    fn empty_file_gives_the_defaults() {
        let config = load("").unwrap();
        assert_eq!(config.listen, DEFAULT_LISTEN.parse().unwrap());
        assert_eq!(config.state_dir, Path::new(DEFAULT_STATE_DIR));
        assert_eq!(config.base_url().as_str(), "http://127.0.0.1:8480/");
    }

    #[test]
    fn shipped_file_is_valid_and_matches_the_defaults() {
        let text = include_str!("../../packaging/identity.toml");
        let config = load(text).unwrap();
        let defaults = Config::default();
        assert_eq!(config.listen, defaults.listen);
        assert_eq!(config.state_dir, defaults.state_dir);
        assert_eq!(config.public_url, defaults.public_url);
        assert_eq!(config.body_limit, defaults.body_limit);
        assert_eq!(config.did_method, defaults.did_method);
        assert_eq!(config.credential_validity, defaults.credential_validity);
        assert_eq!(config.status_cache_ttl, defaults.status_cache_ttl);
        assert_eq!(config.status_cache_max, defaults.status_cache_max);
        assert_eq!(config.tokens, defaults.tokens);
        assert_eq!(config.tls, defaults.tls);
    }

    #[test]
    fn identity_defaults() {
        let config = load("").unwrap();
        assert_eq!(config.body_limit, 256 * 1024);
        assert_eq!(config.did_method, DidMethod::Key);
        assert_eq!(config.credential_validity, Duration::from_secs(30 * 86400));
        assert!(config.trusted_issuers.is_empty());
    }

    #[test]
    fn did_web_host_becomes_the_method_specific_id() {
        let config =
            load("[issuer]\ndid_method = \"web\"\nweb_host = \"id.example.gov:8443/agency/vc\"\n")
                .unwrap();
        assert_eq!(
            config.did_method,
            DidMethod::Web("id.example.gov%3A8443:agency:vc".into())
        );
        let err = load("[issuer]\ndid_method = \"web\"\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "identity.toml: issuer.web_host: required when issuer.did_method = \"web\""
        );
        let err = load("[issuer]\ndid_method = \"ion\"\n").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("identity.toml: issuer.did_method:"),
            "{err}"
        );
    }

    #[test]
    fn tls_needs_both_files_and_bad_values_name_the_key() {
        let err = load("[server]\ntls_cert = \"/c.pem\"\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "identity.toml: server.tls_key: required with server.tls_cert"
        );
        let err = load("[verify]\ntrusted_issuers = [\"nope\"]\n").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("identity.toml: verify.trusted_issuers[0]:"),
            "{err}"
        );
        let err = load("[auth]\ntokens = [\"short\"]\n").unwrap_err();
        assert!(
            err.to_string().starts_with("identity.toml: auth.tokens:"),
            "{err}"
        );
        let err = load("[verify]\nstatus_cache_ttl = \"soon\"\n").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("identity.toml: verify.status_cache_ttl:"),
            "{err}"
        );
        let config = load("[server]\ntls_cert = \"/c.pem\"\ntls_key = \"/k.pem\"\n").unwrap();
        assert_eq!(config.base_url().as_str(), "https://127.0.0.1:8480/");
    }

    #[test]
    fn bad_listen_address_names_file_and_key() {
        let err = load("[server]\nlisten = \"1.2.3\"\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "identity.toml: server.listen: invalid socket address \"1.2.3\""
        );
    }

    #[test]
    fn public_url_must_be_http() {
        let err = load("[server]\npublic_url = \"ftp://x.example\"\n").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("identity.toml: server.public_url:"),
            "{err}"
        );
        let config = load("[server]\npublic_url = \"https://id.example.gov/\"\n").unwrap();
        assert_eq!(config.base_url().as_str(), "https://id.example.gov/");
    }

    #[test]
    fn listening_publicly_without_public_url_warns() {
        let source = Source::file(Path::new("identity.toml"));
        let config = Config::from_toml(&source, "[server]\nlisten = \"0.0.0.0:8480\"\n").unwrap();
        let warnings = config.warnings(&source);
        assert_eq!(warnings.len(), 1);
        assert_eq!(warnings[0].key, "server.public_url");
    }
}
