//! The scenario file format (`rules/scenarios/*.toml`, documented in `docs/scenarios.md`)
//! and its loading: TOML text in, a compiled [`Scenario`] or a [`ScenarioError`] naming the
//! file and line out. Loading a folder never stops at a bad file: the others still load.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use regex::bytes::{Regex, RegexBuilder};
use serde::Deserialize;
use toml::Spanned;

use crate::detect::{Action, Severity};

/// What `<IP>` in a pattern stands for: an IPv4 address, or an IPv6 address (including
/// `::ffff:1.2.3.4`). The capture is checked by parsing it, so the regex may be loose.
pub const IP_PATTERN: &str = r"(?P<ip>\d{1,3}(?:\.\d{1,3}){3}|(?:[0-9A-Fa-f]{0,4}:){2,7}(?:\d{1,3}(?:\.\d{1,3}){3}|[0-9A-Fa-f]{0,4}))";

/// A scenario that could not be loaded: `FILE:LINE: message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ScenarioError {
    pub file: PathBuf,
    /// 1-based; 0 when the error concerns the file as a whole.
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)
        }
    }
}

/// What a matching line means for its session (see `docs/scenarios.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A failed attempt: it counts.
    Failure,
    /// A failure that is not certain yet (PAM's failure before another method succeeds):
    /// it counts when the session later tries another user or ends without success.
    Pending,
    /// A success: forgets the session's pending failures (and counts when the success is
    /// for another user than the one that failed).
    Success,
    /// The session ended: counts once when the session had a failure.
    Close,
    /// Only tells the session its address.
    Info,
}

impl Kind {
    fn parse(name: &str) -> Option<Kind> {
        Some(match name {
            "failure" => Kind::Failure,
            "pending" => Kind::Pending,
            "success" => Kind::Success,
            "close" => Kind::Close,
            "info" => Kind::Info,
            _ => return None,
        })
    }
}

/// Where a scenario reads.
#[derive(Debug, Clone)]
pub enum SourceSpec {
    /// A file path or glob.
    File(glob::Pattern),
    /// `journal:UNIT`: the journal entries of a systemd unit.
    Journal(String),
}

/// The leaky bucket of a scenario: one per source address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketSpec {
    /// How many events the bucket holds; one more overflows it.
    pub capacity: u32,
    /// One event leaks out every `leak`.
    pub leak: Duration,
    /// Only events with a value of this field not already in the bucket are poured.
    pub distinct: Option<String>,
    /// After an overflow, events of that address are ignored this long.
    pub blackhole: Duration,
}

/// Session correlation: lines with the same value of `key` belong together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSpec {
    pub key: String,
    /// A session without lines for this long is forgotten.
    pub timeout: Duration,
}

/// One pattern of a scenario.
#[derive(Debug, Clone)]
pub struct Pattern {
    pub kind: Kind,
    pub regex: Regex,
    /// 1-based line of the pattern in its file, for `scenarios test`.
    pub line: usize,
}

/// A compiled scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    pub description: String,
    pub severity: Severity,
    /// `drop` asks the decision stage to block the address; `alert` only reports it.
    pub action: Action,
    pub labels: BTreeMap<String, String>,
    pub sources: Vec<SourceSpec>,
    pub patterns: Vec<Pattern>,
    pub ignore: Vec<Regex>,
    pub bucket: BucketSpec,
    pub session: Option<SessionSpec>,
    pub file: PathBuf,
}

impl Scenario {
    /// Whether this scenario reads `source` (a file path or `journal:UNIT`).
    pub fn reads(&self, source: &str) -> bool {
        self.sources.iter().any(|spec| match spec {
            SourceSpec::File(pattern) => !source.starts_with("journal:") && pattern.matches(source),
            SourceSpec::Journal(unit) => source
                .strip_prefix("journal:")
                .is_some_and(|own| own == unit),
        })
    }

    /// The file patterns this scenario reads, for the log sensor.
    pub fn file_sources(&self) -> impl Iterator<Item = &str> {
        self.sources.iter().filter_map(|spec| match spec {
            SourceSpec::File(pattern) => Some(pattern.as_str()),
            SourceSpec::Journal(_) => None,
        })
    }

    /// The journal units this scenario reads.
    pub fn journal_units(&self) -> impl Iterator<Item = &str> {
        self.sources.iter().filter_map(|spec| match spec {
            SourceSpec::Journal(unit) => Some(unit.as_str()),
            SourceSpec::File(_) => None,
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    name: Spanned<String>,
    #[serde(default)]
    description: String,
    severity: Spanned<String>,
    #[serde(default)]
    action: Option<Spanned<String>>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    sources: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    prefix: Option<Spanned<String>>,
    #[serde(default)]
    ignore: Vec<Spanned<String>>,
    session: Option<Spanned<RawSession>>,
    bucket: Spanned<RawBucket>,
    pattern: Spanned<Vec<Spanned<RawPattern>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSession {
    key: Spanned<String>,
    #[serde(default)]
    timeout: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBucket {
    capacity: Spanned<i64>,
    leak: Spanned<String>,
    #[serde(default)]
    distinct: Option<Spanned<String>>,
    #[serde(default)]
    blackhole: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPattern {
    regex: Spanned<String>,
    #[serde(default)]
    kind: Option<Spanned<String>>,
}

/// Compiles one scenario file's text. `file` only names it in errors.
pub fn parse_scenario(file: &Path, text: &str) -> Result<Scenario, ScenarioError> {
    // Counted on bytes: a span is a byte offset, and must not panic whatever it points at.
    let line_of = |offset: usize| {
        text.as_bytes()[..offset.min(text.len())]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    };
    let error = |offset: usize, message: String| ScenarioError {
        file: file.to_owned(),
        line: line_of(offset),
        message,
    };
    let raw: RawScenario = toml::from_str(text).map_err(|err| {
        let line = err.span().map(|span| line_of(span.start)).unwrap_or(0);
        ScenarioError {
            file: file.to_owned(),
            line,
            message: err.message().trim().to_owned(),
        }
    })?;

    let name = raw.name.get_ref().trim().to_owned();
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'/' | b'.'))
    {
        return Err(error(
            raw.name.span().start,
            format!("scenario name \"{name}\" must be letters, digits, '-', '_', '/' or '.'"),
        ));
    }
    let severity = Severity::from_name(raw.severity.get_ref()).ok_or_else(|| {
        error(
            raw.severity.span().start,
            format!(
                "unknown severity \"{}\", expected info, low, medium, high or critical",
                raw.severity.get_ref()
            ),
        )
    })?;
    let action = match &raw.action {
        None => Action::Alert,
        Some(action) => match action.get_ref().as_str() {
            "alert" => Action::Alert,
            "drop" => Action::Drop,
            other => {
                return Err(error(
                    action.span().start,
                    format!("unknown action \"{other}\", expected alert or drop"),
                ));
            }
        },
    };
    let mut sources = Vec::new();
    for source in raw.sources.get_ref() {
        let text = source.get_ref();
        if let Some(unit) = text.strip_prefix("journal:") {
            if unit.is_empty() {
                return Err(error(
                    source.span().start,
                    "journal source names no unit".into(),
                ));
            }
            sources.push(SourceSpec::Journal(unit.to_owned()));
        } else {
            let pattern = glob::Pattern::new(text).map_err(|err| {
                error(
                    source.span().start,
                    format!("bad source pattern \"{text}\": {err}"),
                )
            })?;
            sources.push(SourceSpec::File(pattern));
        }
    }
    if sources.is_empty() {
        return Err(error(raw.sources.span().start, "sources is empty".into()));
    }

    let duration = |value: &Spanned<String>, what: &str| {
        humantime::parse_duration(value.get_ref()).map_err(|err| {
            error(
                value.span().start,
                format!("invalid {what} \"{}\": {err}", value.get_ref()),
            )
        })
    };
    let raw_bucket = raw.bucket.get_ref();
    let capacity = *raw_bucket.capacity.get_ref();
    let capacity = u32::try_from(capacity)
        .ok()
        .filter(|c| *c > 0)
        .ok_or_else(|| {
            error(
                raw_bucket.capacity.span().start,
                format!("bucket capacity must be a positive integer, not {capacity}"),
            )
        })?;
    let leak = duration(&raw_bucket.leak, "bucket leak")?;
    if leak.is_zero() {
        return Err(error(
            raw_bucket.leak.span().start,
            "bucket leak must be longer than 0".into(),
        ));
    }
    let blackhole = match &raw_bucket.blackhole {
        Some(value) => duration(value, "bucket blackhole")?,
        None => Duration::ZERO,
    };
    let session = match &raw.session {
        None => None,
        Some(session) => {
            let session = session.get_ref();
            Some(SessionSpec {
                key: session.key.get_ref().clone(),
                timeout: match &session.timeout {
                    Some(value) => duration(value, "session timeout")?,
                    None => Duration::from_secs(600),
                },
            })
        }
    };

    let prefix = raw
        .prefix
        .as_ref()
        .map(|p| p.get_ref().as_str())
        .unwrap_or("");
    let compile = |text: &str, offset: usize, anchored_prefix: bool| {
        let body = text.replace("<IP>", IP_PATTERN);
        let full = if anchored_prefix && !prefix.is_empty() {
            format!("{prefix}(?:{body})")
        } else {
            body
        };
        // Byte regexes without Unicode classes: log lines are bytes, the fields we capture
        // are ASCII, and ASCII-only classes make both the lazy DFA and the capture engines
        // markedly faster than their UTF-8 automata.
        RegexBuilder::new(&full)
            .unicode(false)
            .build()
            .map_err(|err| error(offset, format!("invalid regex: {}", one_line(&err))))
    };
    let mut patterns = Vec::new();
    let mut captures = HashSet::new();
    for pattern in raw.pattern.get_ref() {
        let raw_pattern = pattern.get_ref();
        let offset = raw_pattern.regex.span().start;
        let kind = match &raw_pattern.kind {
            None => Kind::Failure,
            Some(kind) => Kind::parse(kind.get_ref()).ok_or_else(|| {
                error(
                    kind.span().start,
                    format!(
                        "unknown kind \"{}\", expected failure, pending, success, close or info",
                        kind.get_ref()
                    ),
                )
            })?,
        };
        let regex = compile(raw_pattern.regex.get_ref(), offset, true)?;
        let names: Vec<&str> = regex.capture_names().flatten().collect();
        if !names.contains(&"ip") && session.is_none() {
            return Err(error(
                offset,
                "pattern has no `ip` capture (write <IP>) and the scenario has no session to take the address from".into(),
            ));
        }
        if kind != Kind::Failure && session.is_none() {
            return Err(error(
                offset,
                format!("kind \"{kind:?}\" needs a [session]").to_lowercase(),
            ));
        }
        captures.extend(names.iter().map(|n| n.to_string()));
        patterns.push(Pattern {
            kind,
            regex,
            line: line_of(offset),
        });
    }
    if patterns.is_empty() {
        return Err(error(raw.pattern.span().start, "no [[pattern]]".into()));
    }
    if let (Some(session), Some(raw_session)) = (&session, &raw.session)
        && !captures.contains(&session.key)
    {
        return Err(error(
            raw_session.get_ref().key.span().start,
            format!(
                "session key \"{}\" is not captured by any pattern",
                session.key
            ),
        ));
    }
    let distinct = match &raw_bucket.distinct {
        None => None,
        Some(field) => {
            if !captures.contains(field.get_ref()) {
                return Err(error(
                    field.span().start,
                    format!(
                        "distinct field \"{}\" is not captured by any pattern",
                        field.get_ref()
                    ),
                ));
            }
            Some(field.get_ref().clone())
        }
    };
    let mut ignore = Vec::new();
    for pattern in &raw.ignore {
        ignore.push(compile(pattern.get_ref(), pattern.span().start, false)?);
    }
    Ok(Scenario {
        name,
        description: raw.description.trim().to_owned(),
        severity,
        action,
        labels: raw.labels,
        sources,
        patterns,
        ignore,
        bucket: BucketSpec {
            capacity,
            leak,
            distinct,
            blackhole,
        },
        session,
        file: file.to_owned(),
    })
}

/// The reason of a regex error without the (expanded, often long) pattern it quotes.
fn one_line(err: &regex::Error) -> String {
    let text = err.to_string();
    text.lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("error: "))
        .map(str::to_owned)
        .unwrap_or_else(|| text.lines().map(str::trim).collect::<Vec<_>>().join(" "))
}

/// Loads scenario files, and the `*.toml` files of folders (in name order). Returns what
/// loaded and an error for each file that did not; a name used twice is an error on the
/// second file.
pub fn load_paths(paths: &[PathBuf]) -> (Vec<Scenario>, Vec<ScenarioError>) {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        if path.is_dir() {
            match std::fs::read_dir(path) {
                Ok(entries) => {
                    let mut found: Vec<PathBuf> = entries
                        .filter_map(Result::ok)
                        .map(|entry| entry.path())
                        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
                        .collect();
                    found.sort();
                    files.extend(found);
                }
                Err(err) => errors.push(ScenarioError {
                    file: path.clone(),
                    line: 0,
                    message: format!("cannot read folder: {err}"),
                }),
            }
        } else {
            files.push(path.clone());
        }
    }
    let mut scenarios: Vec<Scenario> = Vec::new();
    for file in files {
        let text = match std::fs::read_to_string(&file) {
            Ok(text) => text,
            Err(err) => {
                errors.push(ScenarioError {
                    file,
                    line: 0,
                    message: format!("cannot read: {err}"),
                });
                continue;
            }
        };
        match parse_scenario(&file, &text) {
            Ok(scenario) => {
                if let Some(first) = scenarios.iter().find(|s| s.name == scenario.name) {
                    errors.push(ScenarioError {
                        file: file.clone(),
                        line: 1,
                        message: format!(
                            "scenario \"{}\" is already defined in {}",
                            scenario.name,
                            first.file.display()
                        ),
                    });
                } else {
                    scenarios.push(scenario);
                }
            }
            Err(err) => errors.push(err),
        }
    }
    (scenarios, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name = "test-bf"
description = "a test"
severity = "high"
action = "drop"
sources = ["/var/log/auth.log", "journal:ssh.service"]
labels = { service = "ssh" }

[bucket]
capacity = 3
leak = "10s"
blackhole = "1m"

[[pattern]]
regex = 'Failed password for (?P<user>\S+) from <IP>'
"#;

    fn parse(text: &str) -> Result<Scenario, ScenarioError> {
        parse_scenario(Path::new("x.toml"), text)
    }

    #[test]
    fn a_good_file_compiles() {
        let scenario = parse(GOOD).unwrap();
        assert_eq!(scenario.name, "test-bf");
        assert_eq!(scenario.severity, Severity::High);
        assert_eq!(scenario.action, Action::Drop);
        assert_eq!(scenario.bucket.capacity, 3);
        assert_eq!(scenario.bucket.blackhole, Duration::from_secs(60));
        assert!(scenario.reads("/var/log/auth.log"));
        assert!(scenario.reads("journal:ssh.service"));
        assert!(!scenario.reads("/var/log/syslog"));
        let caps = scenario.patterns[0]
            .regex
            .captures(b"Failed password for root from 2001:db8::7 port 22")
            .unwrap();
        assert_eq!(&caps["ip"], b"2001:db8::7");
        assert_eq!(scenario.patterns[0].line, 15);
    }

    #[test]
    fn errors_name_the_line() {
        let cases = [
            (
                GOOD.replace("\"high\"", "\"urgent\""),
                4,
                "unknown severity \"urgent\"",
            ),
            (
                GOOD.replace("capacity = 3", "capacity = 0"),
                10,
                "bucket capacity must be",
            ),
            (
                GOOD.replace("\"10s\"", "\"soon\""),
                11,
                "invalid bucket leak \"soon\"",
            ),
            (
                GOOD.replace("(?P<user>\\S+)", "(?P<user>\\S+"),
                15,
                "invalid regex",
            ),
            (
                GOOD.replace("<IP>", "\\S+"),
                15,
                "pattern has no `ip` capture",
            ),
            (
                GOOD.replace("labels", "lables"),
                7,
                "unknown field `lables`",
            ),
            (
                GOOD.replace("capacity = 3", "capacity = \"3\""),
                10,
                "invalid type",
            ),
        ];
        for (text, line, message) in cases {
            let err = parse(&text).unwrap_err();
            assert_eq!(err.line, line, "{err}");
            assert!(err.message.contains(message), "{err}");
            assert!(
                err.to_string().starts_with(&format!("x.toml:{line}: ")),
                "{err}"
            );
        }
    }

    #[test]
    fn a_bad_file_does_not_stop_the_others() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.toml"), GOOD).unwrap();
        std::fs::write(dir.path().join("b.toml"), "name = \n").unwrap();
        std::fs::write(dir.path().join("c.toml"), GOOD.replace("test-bf", "other")).unwrap();
        std::fs::write(dir.path().join("d.toml"), GOOD).unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not a scenario").unwrap();
        let (scenarios, errors) = load_paths(&[dir.path().to_owned()]);
        let names: Vec<_> = scenarios.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["test-bf", "other"]);
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors[0].to_string().contains("b.toml:1: "),
            "{}",
            errors[0]
        );
        assert!(
            errors[1].message.contains("already defined"),
            "{}",
            errors[1]
        );
    }
}
