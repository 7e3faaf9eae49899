//! `identity.toml`: the raw file as serde reads it, then the validated [`Config`] that the
//! service runs with. Every key has a default that works on one host.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use url::Url;

use crate::daemon::{self, ConfigError, ConfigWarning, LogConfig, RawLog, Source};

/// Where the packages install the file.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/swarmguard/identity.toml";
/// identityd's HTTP API, loopback only unless configured otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8480";
/// Where the issuer key, admin token and database live.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/swarmguard/identity";

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
    pub log: LogConfig,
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
        Ok(Config {
            listen,
            public_url,
            state_dir: server
                .state_dir
                .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR)),
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
            Url::parse(&format!("http://{}/", self.listen))
                .expect("a socket address makes a valid URL")
        })
    }
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
    log: RawLog,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Option<String>,
    public_url: Option<String>,
    state_dir: Option<PathBuf>,
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
