//! Log scenarios: regexes over log lines feeding leaky buckets, as fail2ban and CrowdSec
//! do. A scenario (`rules/scenarios/*.toml`, see `docs/scenarios.md`) names the lines that
//! count as attempts, captures the attacker's address, optionally correlates the lines of
//! one session (the sshd pid), and raises an [`Alert`] when an address's bucket overflows.
//!
//! - [`spec`]: the file format, loading, and `FILE:LINE` errors.
//! - [`bucket`]: the leaky buckets.
//! - [`time`]: timestamps read from the lines.
//!
//! [`Engine`] does no I/O: it takes lines, their source and the time, and returns events.
//! For speed, each source gets one [`RegexSet`] holding every pattern of the scenarios that
//! read it (deduplicated across scenarios): one pass of a lazy DFA per line says which
//! patterns match, and only those run again for their captures. Most lines match nothing
//! and cost that one pass.

pub mod bucket;
pub mod spec;
pub mod time;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::SystemTime;

use regex::bytes::{Captures, Regex, RegexSet, RegexSetBuilder};

use crate::detect::{Alert, Evidence, RuleRef};
pub use bucket::{Buckets, Poured};
pub use spec::{Kind, Scenario, ScenarioError, load_paths, parse_scenario};

/// Limits of the engine's tables.
#[derive(Debug, Clone, Copy)]
pub struct EngineOptions {
    /// Buckets (and blackholes) per scenario.
    pub max_buckets: usize,
    /// Open sessions per scenario.
    pub max_sessions: usize,
    /// Report every counted line as [`Event::Match`] (for `swarmctl scenarios test`); the
    /// daemon only needs overflows.
    pub report_matches: bool,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            max_buckets: 100_000,
            max_sessions: 10_000,
            report_matches: false,
        }
    }
}

/// What a line did.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The line counted as an attempt of `ip` for scenario number `scenario`.
    Match {
        scenario: usize,
        ip: IpAddr,
        /// The named captures of the line (and `ip`, also when it came from the session).
        fields: Vec<(String, String)>,
    },
    /// A bucket overflowed.
    Overflow {
        scenario: usize,
        ip: IpAddr,
        /// Events poured into the bucket, this line's included.
        count: u32,
        alert: Alert,
    },
}

/// Counters, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineStats {
    pub lines: u64,
    /// Lines that counted as an attempt, per scenario summed.
    pub matched: u64,
    pub overflows: u64,
    /// Events ignored because their address is blackholed after an overflow.
    pub blackholed: u64,
    /// Events not poured because their distinct value was already in the bucket.
    pub duplicates: u64,
    /// Captured `ip` values that are not addresses (a host name, garbage).
    pub bad_address: u64,
    /// Sessions forgotten because the table was full.
    pub sessions_evicted: u64,
    /// Events dropped because a scenario's bucket table was full.
    pub buckets_full: u64,
}

/// A source registered with [`Engine::source`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SourceId(usize);

#[derive(Debug)]
struct Matcher {
    set: RegexSet,
    /// For each scenario read by this source: its number, then for each of its patterns
    /// the set index, then the set indexes of its ignore regexes.
    scenarios: Vec<(usize, Vec<usize>, Vec<usize>)>,
    /// Set index -> unique regex.
    regexes: Vec<usize>,
}

#[derive(Debug, Default)]
struct Session {
    ip: Option<IpAddr>,
    /// A failure was counted (or is waiting for the address).
    failed: bool,
    /// A pending failure was seen.
    pending: bool,
    /// Failures seen before the session knew its address.
    awaiting: u32,
    /// Users that failed in this session (a few at most).
    users: Vec<String>,
    last: Option<SystemTime>,
}

#[derive(Debug)]
struct State {
    buckets: Buckets,
    sessions: HashMap<(SourceId, String), Session>,
}

/// Runs scenarios over lines. See the module documentation.
#[derive(Debug)]
pub struct Engine {
    scenarios: Vec<Scenario>,
    states: Vec<State>,
    /// Every distinct regex text of every scenario, compiled once.
    unique: Vec<Regex>,
    /// Per scenario: the unique index of each pattern, and of each ignore regex.
    pattern_ids: Vec<(Vec<usize>, Vec<usize>)>,
    matchers: Vec<Matcher>,
    matcher_by_scenarios: HashMap<Vec<usize>, usize>,
    /// Per source: its name and its matcher.
    sources: Vec<(Arc<str>, usize)>,
    source_by_name: HashMap<Arc<str>, SourceId>,
    options: EngineOptions,
    stats: EngineStats,
    /// Set after each line; used to sweep old sessions and buckets now and then.
    latest: Option<SystemTime>,
}

impl Engine {
    pub fn new(scenarios: Vec<Scenario>, options: EngineOptions) -> Engine {
        let mut unique: Vec<Regex> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut id_of = |regex: &Regex| {
            *index.entry(regex.as_str().to_owned()).or_insert_with(|| {
                unique.push(regex.clone());
                unique.len() - 1
            })
        };
        let pattern_ids = scenarios
            .iter()
            .map(|s| {
                (
                    s.patterns.iter().map(|p| id_of(&p.regex)).collect(),
                    s.ignore.iter().map(&mut id_of).collect(),
                )
            })
            .collect();
        let states = scenarios
            .iter()
            .map(|s| State {
                buckets: Buckets::new(s.bucket.clone(), options.max_buckets),
                sessions: HashMap::new(),
            })
            .collect();
        Engine {
            scenarios,
            states,
            unique,
            pattern_ids,
            matchers: Vec::new(),
            matcher_by_scenarios: HashMap::new(),
            sources: Vec::new(),
            source_by_name: HashMap::new(),
            options,
            stats: EngineStats::default(),
            latest: None,
        }
    }

    pub fn scenarios(&self) -> &[Scenario] {
        &self.scenarios
    }

    pub fn stats(&self) -> EngineStats {
        self.stats
    }

    /// Registers a source (a file path or `journal:UNIT`) read by the scenarios whose
    /// `sources` name it.
    pub fn source(&mut self, name: &str) -> SourceId {
        let chosen: Vec<usize> = (0..self.scenarios.len())
            .filter(|&i| self.scenarios[i].reads(name))
            .collect();
        self.source_with(name, chosen)
    }

    /// Registers a source read by every scenario, whatever their `sources` say (what
    /// `swarmctl scenarios test --log FILE` does).
    pub fn source_for_all(&mut self, name: &str) -> SourceId {
        self.source_with(name, (0..self.scenarios.len()).collect())
    }

    fn source_with(&mut self, name: &str, chosen: Vec<usize>) -> SourceId {
        if let Some(id) = self.source_by_name.get(name) {
            return *id;
        }
        let matcher = match self.matcher_by_scenarios.get(&chosen) {
            Some(m) => *m,
            None => {
                let m = self.build_matcher(&chosen);
                self.matchers.push(m);
                self.matcher_by_scenarios
                    .insert(chosen, self.matchers.len() - 1);
                self.matchers.len() - 1
            }
        };
        let name: Arc<str> = name.into();
        let id = SourceId(self.sources.len());
        self.sources.push((name.clone(), matcher));
        self.source_by_name.insert(name, id);
        id
    }

    fn build_matcher(&self, chosen: &[usize]) -> Matcher {
        let mut regexes: Vec<usize> = Vec::new();
        let mut slot = |unique: usize| match regexes.iter().position(|u| *u == unique) {
            Some(at) => at,
            None => {
                regexes.push(unique);
                regexes.len() - 1
            }
        };
        let scenarios = chosen
            .iter()
            .map(|&s| {
                let (patterns, ignores) = &self.pattern_ids[s];
                (
                    s,
                    patterns.iter().map(|&u| slot(u)).collect(),
                    ignores.iter().map(|&u| slot(u)).collect(),
                )
            })
            .collect();
        let set = RegexSetBuilder::new(regexes.iter().map(|&u| self.unique[u].as_str()))
            .unicode(false)
            .size_limit(256 << 20)
            .dfa_size_limit(16 << 20)
            .build()
            // Each regex compiled on its own at load time; together they only risk the
            // size limit, which is far above what scenario files reach.
            .unwrap_or_else(|_| RegexSet::empty());
        Matcher {
            set,
            scenarios,
            regexes,
        }
    }

    /// Runs one line of `source` through its scenarios. `time` is the time the source
    /// recorded, if any (the journal's); otherwise the line's own timestamp, or `now`.
    /// Events are appended to `out`.
    pub fn feed(
        &mut self,
        source: SourceId,
        line: &str,
        time: Option<SystemTime>,
        now: SystemTime,
        out: &mut Vec<Event>,
    ) {
        self.stats.lines += 1;
        let Some(&(ref source_name, matcher_id)) = self.sources.get(source.0) else {
            return;
        };
        let matcher = &self.matchers[matcher_id];
        if matcher.scenarios.is_empty() {
            return;
        }
        let hits = matcher.set.matches(line.as_bytes());
        if !hits.matched_any() {
            return;
        }
        let source_name = source_name.clone();
        let mut line_time: Option<SystemTime> = None;
        let mut captured: Vec<(usize, Option<Captures<'_>>)> = Vec::new();
        for (scenario, patterns, ignores) in &matcher.scenarios {
            if ignores.iter().any(|&i| hits.matched(i)) {
                continue;
            }
            let Some((pattern, &slot)) = patterns
                .iter()
                .enumerate()
                .find(|&(_, &slot)| hits.matched(slot))
            else {
                continue;
            };
            let caps = match captured.iter().find(|(s, _)| *s == slot) {
                Some((_, caps)) => caps,
                None => {
                    let caps = self.unique[matcher.regexes[slot]].captures(line.as_bytes());
                    captured.push((slot, caps));
                    &captured[captured.len() - 1].1
                }
            };
            let Some(caps) = caps else { continue };
            let when = *line_time.get_or_insert_with(|| {
                time.or_else(|| time::parse_line_time(line, now))
                    .unwrap_or(now)
            });
            let kind = self.scenarios[*scenario].patterns[pattern].kind;
            apply(
                &self.scenarios[*scenario],
                *scenario,
                &mut self.states[*scenario],
                &mut self.stats,
                &self.options,
                Hit {
                    source,
                    source_name: &source_name,
                    line,
                    kind,
                    regex: &self.unique[matcher.regexes[slot]],
                    caps,
                    time: when,
                },
                out,
            );
        }
        if let Some(when) = line_time {
            self.tick(when);
        }
    }

    /// Sweeps stale sessions and empty buckets about once a minute of log time.
    fn tick(&mut self, when: SystemTime) {
        let due = match self.latest {
            None => true,
            Some(latest) => when.duration_since(latest).is_ok_and(|d| d.as_secs() >= 60),
        };
        if due {
            self.latest = Some(when);
            self.sweep(when);
        }
    }

    /// Forgets sessions idle longer than their timeout, leaked-out buckets and ended
    /// blackholes.
    pub fn sweep(&mut self, now: SystemTime) {
        for (scenario, state) in self.scenarios.iter().zip(&mut self.states) {
            state.buckets.sweep(now);
            if let Some(session) = &scenario.session {
                state.sessions.retain(|_, s| {
                    s.last.is_none_or(|last| {
                        now.duration_since(last)
                            .map_or(true, |idle| idle < session.timeout)
                    })
                });
            }
        }
    }

    /// Open sessions and buckets, summed over scenarios (for metrics).
    pub fn table_sizes(&self) -> (usize, usize) {
        self.states.iter().fold((0, 0), |(s, b), state| {
            (s + state.sessions.len(), b + state.buckets.len())
        })
    }
}

struct Hit<'a, 'l> {
    source: SourceId,
    source_name: &'a Arc<str>,
    line: &'l str,
    kind: Kind,
    regex: &'a Regex,
    caps: &'a Captures<'l>,
    time: SystemTime,
}

/// One scenario's reaction to one matching line: session bookkeeping, then pouring.
fn apply(
    scenario: &Scenario,
    index: usize,
    state: &mut State,
    stats: &mut EngineStats,
    options: &EngineOptions,
    hit: Hit<'_, '_>,
    out: &mut Vec<Event>,
) {
    let line_ip = match hit.caps.name("ip") {
        Some(found) => match text(found).and_then(parse_ip) {
            Some(ip) => Some(ip),
            None => {
                stats.bad_address += 1;
                return;
            }
        },
        None => None,
    };
    let user = hit
        .caps
        .name("user")
        .and_then(text)
        .filter(|u| !u.is_empty());
    let key = scenario
        .session
        .as_ref()
        .and_then(|s| hit.caps.name(&s.key))
        .and_then(text);
    let ip = match key {
        None => match (hit.kind, line_ip) {
            (Kind::Failure, Some(ip)) => ip,
            _ => return,
        },
        Some(key) => {
            let sessions = &mut state.sessions;
            let map_key = (hit.source, key.to_owned());
            if !sessions.contains_key(&map_key) && sessions.len() >= options.max_sessions {
                let timeout = scenario.session.as_ref().map(|s| s.timeout);
                let now = hit.time;
                sessions.retain(|_, s| {
                    s.last.is_none_or(|last| {
                        now.duration_since(last)
                            .map_or(true, |idle| Some(idle) < timeout)
                    })
                });
                if sessions.len() >= options.max_sessions
                    && let Some(victim) = sessions.keys().next().cloned()
                {
                    sessions.remove(&victim);
                    stats.sessions_evicted += 1;
                }
            }
            let session = sessions.entry(map_key.clone()).or_default();
            session.last = Some(hit.time);
            if line_ip.is_some() {
                session.ip = line_ip;
            }
            let mut counts = false;
            let add_user = |session: &mut Session| {
                if let Some(user) = user
                    && session.users.len() < 8
                    && !session.users.iter().any(|u| u == user)
                {
                    session.users.push(user.to_owned());
                }
            };
            match hit.kind {
                Kind::Failure => {
                    session.failed = true;
                    add_user(session);
                    counts = true;
                }
                Kind::Pending => {
                    let other = user.is_some_and(|u| {
                        !session.users.is_empty() && !session.users.iter().any(|x| x == u)
                    });
                    add_user(session);
                    session.pending = true;
                    if other {
                        session.failed = true;
                        counts = true;
                    }
                }
                Kind::Success => {
                    let other = user.is_some_and(|u| session.users.iter().any(|x| x != u));
                    counts = other && (session.failed || session.pending);
                    session.failed = false;
                    session.pending = false;
                    session.awaiting = 0;
                    session.users.clear();
                }
                Kind::Close => {
                    counts = session.failed || session.pending || session.awaiting > 0;
                }
                Kind::Info => {}
            }
            // Failures seen before the address was known count as soon as it is.
            if session.awaiting > 0 && session.ip.is_some() {
                counts = true;
                session.awaiting = 0;
            }
            let ip = session.ip;
            if counts && ip.is_none() {
                session.awaiting += 1;
            }
            if hit.kind == Kind::Close {
                sessions.remove(&map_key);
            }
            match ip {
                Some(ip) if counts => ip,
                _ => return,
            }
        }
    };

    stats.matched += 1;
    if options.report_matches {
        let mut fields: Vec<(String, String)> = hit
            .regex
            .capture_names()
            .flatten()
            .filter_map(|name| {
                let value = hit.caps.name(name)?;
                Some((
                    name.to_owned(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                ))
            })
            .collect();
        match fields.iter_mut().find(|(name, _)| name == "ip") {
            Some(field) => field.1 = ip.to_string(),
            None => fields.insert(0, ("ip".to_owned(), ip.to_string())),
        }
        out.push(Event::Match {
            scenario: index,
            ip,
            fields,
        });
    }
    let distinct = scenario
        .bucket
        .distinct
        .as_ref()
        .map(|field| hit.caps.name(field).and_then(text).unwrap_or(""));
    match state.buckets.pour(ip, hit.time, distinct) {
        Poured::Overflow { count } => {
            stats.overflows += 1;
            out.push(Event::Overflow {
                scenario: index,
                ip,
                count,
                alert: Alert {
                    rule: RuleRef::Scenario {
                        name: scenario.name.clone(),
                    },
                    action: scenario.action,
                    severity: scenario.severity,
                    src: Some(ip),
                    src_port: None,
                    dst: None,
                    dst_port: None,
                    time: hit.time,
                    evidence: Evidence::LogLine {
                        source: hit.source_name.to_string(),
                        line_sha256: sha256_hex(hit.line),
                    },
                },
            });
        }
        Poured::Blackholed => stats.blackholed += 1,
        Poured::Duplicate => stats.duplicates += 1,
        Poured::Full => stats.buckets_full += 1,
        Poured::Added => {}
    }
}

/// A capture as text; `None` when it is not UTF-8 (then it is not a field we can use).
fn text(m: regex::bytes::Match<'_>) -> Option<&str> {
    std::str::from_utf8(m.as_bytes()).ok()
}

/// Parses a captured address: IPv4 (leading zeros read as decimal, as log writers mean
/// them), IPv6, and IPv4-mapped IPv6 as the IPv4 address it maps.
pub fn parse_ip(text: &str) -> Option<IpAddr> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    let mut octets = [0u8; 4];
    let mut parts = text.split('.');
    for octet in &mut octets {
        let part = parts.next()?;
        if part.is_empty() || part.len() > 3 || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        *octet = part.parse().ok()?;
    }
    if parts.next().is_some() {
        return None;
    }
    Some(IpAddr::V4(Ipv4Addr::from(octets)))
}

/// SHA-256 of a line, in hex: the evidence kept instead of the line itself.
pub fn sha256_hex(line: &str) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, line.as_bytes()))
}

#[cfg(test)]
mod tests;
