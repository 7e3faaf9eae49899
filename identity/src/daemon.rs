//! What both daemons share at their edges: logging, the shutdown signal, and how a
//! configuration file is read and its errors reported.
//!
//! It lives in this crate because `swarmd` links the identity library anyway (to verify
//! membership credentials) and the workspace layout has no room for a third library.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use tracing_subscriber::EnvFilter;

/// Exit status for bad usage or a bad configuration (`EX_USAGE` from sysexits.h).
pub const EXIT_USAGE: u8 = 64;

/// Why a configuration file was refused. Every variant names the file; a bad value also
/// names the key, in the dotted form a user would search the file for.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read at all.
    #[error("{file}: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("{file}:{line}:{col}: {message}")]
    Syntax {
        file: String,
        line: usize,
        col: usize,
        message: String,
    },
    /// A key is unknown, has the wrong type or a value that makes no sense.
    #[error("{file}: {key}: {message}")]
    Key {
        file: String,
        key: String,
        message: String,
    },
}

/// Something in a valid configuration that will not work yet, such as a rules folder that
/// does not exist. `check-config` prints these and only fails on them with `--strict`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {key}: {message}")]
pub struct ConfigWarning {
    pub file: String,
    pub key: String,
    pub message: String,
}

/// Names a configuration file in messages: the path as the user gave it, or
/// `(defaults)` when no file was read.
#[derive(Debug, Clone)]
pub struct Source {
    label: String,
}

impl Source {
    pub fn file(path: &Path) -> Source {
        Source {
            label: path.display().to_string(),
        }
    }

    pub fn defaults() -> Source {
        Source {
            label: "(defaults)".to_owned(),
        }
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    /// An error about `key` in this source.
    pub fn key_error(&self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Key {
            file: self.label.clone(),
            key: key.to_owned(),
            message: message.into(),
        }
    }

    /// A warning about `key` in this source.
    pub fn warning(&self, key: &str, message: impl Into<String>) -> ConfigWarning {
        ConfigWarning {
            file: self.label.clone(),
            key: key.to_owned(),
            message: message.into(),
        }
    }
}

/// Reads the raw (first-stage) configuration: `explicit` must exist when given; otherwise
/// `default_path` is read when it exists, and the embedded defaults are used when not.
pub fn read_raw<T: DeserializeOwned + Default>(
    explicit: Option<&Path>,
    default_path: &Path,
) -> Result<(T, Source), ConfigError> {
    let path: PathBuf = match explicit {
        Some(path) => path.to_owned(),
        None if default_path.exists() => default_path.to_owned(),
        None => return Ok((T::default(), Source::defaults())),
    };
    let source = Source::file(&path);
    let text = std::fs::read_to_string(&path).map_err(|source_err| ConfigError::Read {
        file: source.label.clone(),
        source: source_err,
    })?;
    let raw = parse_raw(&source, &text)?;
    Ok((raw, source))
}

/// Parses TOML text into the raw configuration, naming the key on any error.
pub fn parse_raw<T: DeserializeOwned>(source: &Source, text: &str) -> Result<T, ConfigError> {
    let deserializer =
        toml::Deserializer::parse(text).map_err(|err| syntax_error(source, text, &err))?;
    serde_path_to_error::deserialize(deserializer).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        let message = inner.message().to_owned();
        // serde reports an unknown field at its parent's path or at its own, depending on
        // how deep it sits; name the field itself either way.
        let key = match unknown_field_name(&message) {
            Some(field) if path == "." => field.to_owned(),
            Some(field) if path == field || path.ends_with(&format!(".{field}")) => path,
            Some(field) => format!("{path}.{field}"),
            None => path,
        };
        source.key_error(&key, message)
    })
}

fn syntax_error(source: &Source, text: &str, err: &toml::de::Error) -> ConfigError {
    let offset = err.span().map_or(0, |span| span.start);
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    ConfigError::Syntax {
        file: source.label.clone(),
        line,
        col,
        message: err.message().to_owned(),
    }
}

fn unknown_field_name(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("unknown field `")?;
    rest.split('`').next()
}

/// `check-config FILE [--strict]` for either daemon: `validate` parses the text and returns
/// the warnings of a valid file. Exit 0 when valid, 64 on an error (or, with `strict`, on a
/// warning); every message names the file.
pub fn check_config(
    file: &Path,
    strict: bool,
    validate: impl FnOnce(&Source, &str) -> Result<Vec<ConfigWarning>, ConfigError>,
) -> std::process::ExitCode {
    use std::process::ExitCode;
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(err) => {
            eprintln!("{}: {err}", file.display());
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let source = Source::file(file);
    let warnings = match validate(&source, &text) {
        Ok(warnings) => warnings,
        Err(err) => {
            eprintln!("{err}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    for warning in &warnings {
        eprintln!("warning: {warning}");
    }
    if strict && !warnings.is_empty() {
        return ExitCode::from(EXIT_USAGE);
    }
    println!("{}: ok", source.label());
    ExitCode::SUCCESS
}

/// Parses a binary's command line; on an error prints clap's message and gives the exit
/// code to return: 64 for bad usage, 0 for `--help` and `--version`.
pub fn parse_cli<C: clap::Parser>() -> Result<C, std::process::ExitCode> {
    C::try_parse().map_err(|err| {
        let _ = err.print();
        if err.use_stderr() {
            std::process::ExitCode::from(EXIT_USAGE)
        } else {
            std::process::ExitCode::SUCCESS
        }
    })
}

/// Parses a duration such as `90s`, `10m`, `4h` or `30days`, naming `key` when it is not one.
pub fn parse_duration(source: &Source, key: &str, value: &str) -> Result<Duration, ConfigError> {
    humantime::parse_duration(value)
        .map_err(|err| source.key_error(key, format!("invalid duration \"{value}\": {err}")))
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// `human` on a terminal; `plain` elsewhere.
    Auto,
    /// Coloured, with timestamps, for people at a terminal.
    Human,
    /// One uncoloured line per event; no timestamp under journald, which adds its own.
    Plain,
    /// One JSON object per event, for log shippers.
    Json,
}

/// Logging settings, the same `[log]` table in both daemons' files.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// A `tracing` filter directive such as `info` or `info,swarmguard_agent=debug`.
    /// `RUST_LOG`, when set, wins.
    pub level: String,
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".to_owned(),
            format: LogFormat::Auto,
        }
    }
}

/// The raw `[log]` table.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    pub level: Option<String>,
    pub format: Option<LogFormat>,
}

impl RawLog {
    pub fn validate(self, source: &Source) -> Result<LogConfig, ConfigError> {
        let defaults = LogConfig::default();
        let level = self.level.unwrap_or(defaults.level);
        EnvFilter::try_new(&level).map_err(|err| {
            source.key_error("log.level", format!("invalid filter \"{level}\": {err}"))
        })?;
        Ok(LogConfig {
            level,
            format: self.format.unwrap_or(defaults.format),
        })
    }
}

/// Installs the global `tracing` subscriber. Called once, by `main`, after the
/// configuration has been read (its errors go to stderr before logging exists).
pub fn init_logging(config: &LogConfig) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.level));
    let format = match config.format {
        LogFormat::Auto if std::io::stderr().is_terminal() => LogFormat::Human,
        LogFormat::Auto => LogFormat::Plain,
        other => other,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // `try_init` fails only when a subscriber exists already (tests that run a daemon
    // in-process twice); the first one stays, which is what they want.
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Plain if std::env::var_os("JOURNAL_STREAM").is_some() => {
            builder.with_ansi(false).without_time().try_init()
        }
        LogFormat::Plain => builder.with_ansi(false).try_init(),
        LogFormat::Human | LogFormat::Auto => builder.try_init(),
    };
}

/// Tells systemd (`Type=notify`) that the daemon is ready, and returns a task that keeps
/// the unit's watchdog fed (`WatchdogSec`) until `stop` resolves. Both do nothing when the
/// process was not started by systemd (no `NOTIFY_SOCKET`).
///
/// The watchdog is fed from the async runtime itself, so a wedged runtime stops feeding it
/// and systemd restarts the daemon.
pub fn notify_ready(
    status: &str,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    use sd_notify::NotifyState;
    if let Err(err) = sd_notify::notify(&[NotifyState::Ready, NotifyState::Status(status)]) {
        tracing::warn!(error = %err, "cannot notify systemd of readiness");
    }
    let interval = sd_notify::watchdog_enabled().map(|timeout| timeout / 2);
    tokio::spawn(async move {
        let Some(interval) = interval else { return };
        tokio::pin!(stop);
        let mut ticks = tokio::time::interval(interval);
        loop {
            tokio::select! {
                _ = &mut stop => return,
                _ = ticks.tick() => {
                    if let Err(err) = sd_notify::notify(&[NotifyState::Watchdog]) {
                        tracing::warn!(error = %err, "cannot feed the systemd watchdog");
                    }
                }
            }
        }
    })
}

/// Tells systemd that the daemon is stopping.
pub fn notify_stopping() {
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
}

/// Resolves when the process is asked to stop (SIGTERM or SIGINT).
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (mut term, mut int) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(term), Ok(int)) => (term, int),
        (Err(err), _) | (_, Err(err)) => {
            tracing::error!(error = %err, "cannot install signal handlers; stopping only when killed");
            return std::future::pending().await;
        }
    };
    let name = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    tracing::info!(signal = name, "shutting down");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Raw {
        server: Option<RawServer>,
    }

    #[derive(Debug, Default, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct RawServer {
        port: Option<u16>,
    }

    fn parse(text: &str) -> Result<Raw, ConfigError> {
        parse_raw(&Source::file(Path::new("x.toml")), text)
    }

    #[test]
    fn valid_text_is_read() {
        let raw = parse("[server]\nport = 80\n").unwrap();
        assert_eq!(raw.server.unwrap().port, Some(80));
    }

    #[test]
    fn unknown_key_is_named_with_its_table() {
        let err = parse("[server]\nprot = 1\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "x.toml: server.prot: unknown field `prot`, expected `port`"
        );
    }

    #[test]
    fn unknown_table_is_named() {
        let err = parse("[sever]\n").unwrap_err().to_string();
        assert!(
            err.starts_with("x.toml: sever: unknown field `sever`"),
            "{err}"
        );
    }

    #[test]
    fn wrong_type_names_the_key() {
        let err = parse("[server]\nport = \"eighty\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("x.toml: server.port: invalid type"),
            "{err}"
        );
    }

    #[test]
    fn out_of_range_value_names_the_key() {
        let err = parse("[server]\nport = 70000\n").unwrap_err().to_string();
        assert!(
            err.starts_with("x.toml: server.port: invalid value"),
            "{err}"
        );
    }

    #[test]
    fn syntax_error_names_line_and_column() {
        let err = parse("[server]\nport = \n").unwrap_err();
        assert!(matches!(err, ConfigError::Syntax { line: 2, .. }), "{err}");
        assert!(err.to_string().starts_with("x.toml:2:"), "{err}");
    }

    #[test]
    fn missing_explicit_file_is_an_error_but_missing_default_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.toml");
        let err = read_raw::<Raw>(Some(&missing), &missing).unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }));
        let (raw, source) = read_raw::<Raw>(None, &missing).unwrap();
        assert!(raw.server.is_none());
        assert_eq!(source.label(), "(defaults)");
    }

    #[test]
    fn durations_accept_human_units_and_name_the_key() {
        let source = Source::defaults();
        assert_eq!(
            parse_duration(&source, "a.b", "10m").unwrap(),
            Duration::from_secs(600)
        );
        let err = parse_duration(&source, "a.b", "soon")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("(defaults): a.b: invalid duration \"soon\""),
            "{err}"
        );
    }

    #[test]
    fn log_level_is_checked() {
        let raw = RawLog {
            level: Some("info,[bad".to_owned()),
            format: None,
        };
        let err = raw.validate(&Source::defaults()).unwrap_err().to_string();
        assert!(err.contains("log.level"), "{err}");
    }
}
