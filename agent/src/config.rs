//! `agent.toml`: the raw file as serde reads it, then the validated [`Config`] that the
//! agent runs with. Every key has a default that works on one host, so the agent also
//! starts with no file at all.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use swarmguard_identity::daemon::{self, ConfigError, ConfigWarning, LogConfig, RawLog, Source};

use crate::decide::quorum::QuorumConfig;
use crate::decide::{BanTime, PolicyConfig};
use crate::detect::Severity;
use crate::enforce::dns::{self, DnsConfig};
use crate::enforce::{BackendKind, EnforceConfig, NftCommand, NftConfig};
use crate::sensor::capture::{self, CaptureConfig};
use crate::store::StoreConfig;
use crate::swarm::discovery::{self, DiscoveryMode, DnsDiscovery};

/// Where the packages install the file.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/swarmguard/agent.toml";
/// Key, membership credential and database.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/swarmguard/agent";
/// Prometheus metrics, loopback only.
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9480";
/// The swarm's gossip (QUIC over UDP).
pub const DEFAULT_GOSSIP_LISTEN: &str = "0.0.0.0:7300";
/// Installed Suricata-format packet rules (`*.rules`).
pub const DEFAULT_RULES_DIR: &str = "/etc/swarmguard/rules.d";
/// The admin socket `swarmctl` talks to.
pub const DEFAULT_SOCKET: &str = "/run/swarmguard/agent.sock";
/// How many recent alerts the admin API keeps for `swarmctl alerts`.
pub const DEFAULT_RECENT_ALERTS: usize = 1000;
/// Installed log scenarios (`*.toml`).
pub const DEFAULT_SCENARIOS_DIR: &str = "/etc/swarmguard/scenarios.d";

/// The validated configuration of `swarmd`.
#[derive(Debug, Clone)]
pub struct Config {
    /// Key, membership credential and database.
    pub state_dir: PathBuf,
    pub log: LogConfig,
    /// Where Prometheus scrapes `/metrics`.
    pub metrics_listen: SocketAddr,
    /// The UDP address the swarm's QUIC endpoint binds.
    pub gossip_listen: SocketAddr,
    /// The admin API's unix socket (`swarmctl --socket`).
    pub socket: PathBuf,
    /// How many recent alerts `swarmctl alerts` can show.
    pub recent_alerts: usize,
    /// The decision policy (`[decide]`).
    pub decide: PolicyConfig,
    /// Packet rule files, or folders whose `*.rules` files are read.
    pub rule_paths: Vec<PathBuf>,
    /// Log scenario files, or folders whose `*.toml` files are read.
    pub scenario_paths: Vec<PathBuf>,
    /// Rule variables (`HOME_NET`, `SSH_PORTS`, ...) on top of Suricata's defaults; names
    /// ending in `_PORTS` (or Suricata's port groups) are port groups.
    pub rule_vars: crate::detect::rules::Vars,
    /// Live packet capture.
    pub capture: CaptureConfig,
    /// How decisions reach the kernel.
    pub enforce: EnforceConfig,
    /// The database's limits and retention.
    pub store: StoreConfig,
    /// How log files, the journal and Suricata's eve.json are followed.
    pub logs: LogsConfig,
    /// How the swarm's seeds are found (`gossip.discovery` and its keys).
    pub discovery: DiscoveryMode,
    /// The DNS sinkhole (`[dns]`).
    pub dns: DnsConfig,
    /// The swarm: seeds, gossip rhythm, membership credential and its checks.
    pub gossip: GossipConfig,
}

/// The `[gossip]` table beyond `listen`: how this agent joins the swarm and checks members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GossipConfig {
    /// Addresses of members to join through (their keys are learnt from the handshake).
    pub seeds: Vec<SocketAddr>,
    /// The address other members reach this agent at; the listen address when it is a
    /// specific one, else the address the system would use to reach the first seed.
    pub advertise: Option<SocketAddr>,
    /// Members each new signal is pushed to, and SWIM gossips to per round.
    pub fanout: usize,
    /// The gossip round.
    pub interval: Duration,
    /// The membership credential (VC-JWT); without it the agent runs standalone. `None`
    /// means `<state_dir>/member.jwt`.
    pub credential: Option<PathBuf>,
    /// DIDs (did:key) whose membership credentials admit a peer.
    pub trusted_issuers: Vec<swarmguard_identity::did::Did>,
    /// identityd's base URL, for renewing this agent's credential.
    pub identity_url: Option<String>,
    /// How long a cached status list may serve when its URL cannot be reached.
    pub status_max_age: Duration,
    /// How often status lists are fetched again (and members re-checked).
    pub status_refresh: Duration,
    /// Warn (and renew, with `identity_url`) this long before the credential expires.
    pub renew_before: Duration,
    /// QUIC connections held at most (members and handshakes in progress).
    pub max_connections: usize,
}

impl GossipConfig {
    /// Where the credential is read from (and a renewed one written to).
    pub fn credential_path(&self, state_dir: &Path) -> PathBuf {
        self.credential
            .clone()
            .unwrap_or_else(|| state_dir.join(crate::swarm::credential::CREDENTIAL_FILE))
    }
}

/// `gossip.fanout`.
pub const DEFAULT_GOSSIP_FANOUT: usize = 3;
/// `gossip.interval`.
pub const DEFAULT_GOSSIP_INTERVAL: &str = "200ms";
/// `gossip.status_max_age`.
pub const DEFAULT_STATUS_MAX_AGE: &str = "24h";
/// `gossip.status_refresh`.
pub const DEFAULT_STATUS_REFRESH: &str = "5m";
/// `gossip.renew_before`.
pub const DEFAULT_RENEW_BEFORE: &str = "7d";
/// `gossip.max_connections`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// The `[logs]` table: following log files for scenarios and eve.json for alerts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogsConfig {
    /// How often followed files are checked when inotify says nothing.
    pub poll_interval: Duration,
    /// Longer lines are cut to this many bytes (and counted).
    pub max_line: usize,
    /// Also read the systemd journal (`journalctl`) for scenarios with `journal:` sources.
    pub journal: bool,
    /// Lines waiting for detection, at most; a full queue makes the readers wait.
    pub queue: usize,
    /// Suricata eve.json files (or globs) whose alerts become the agent's own.
    pub eve: Vec<PathBuf>,
}

/// `logs.poll_interval`.
pub const DEFAULT_LOG_POLL_INTERVAL: &str = "250ms";
/// `logs.max_line`, in bytes.
pub const DEFAULT_LOG_MAX_LINE: usize = 16 * 1024;
/// `logs.queue`, in lines.
pub const DEFAULT_LOG_QUEUE: usize = 10_000;

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
        let vars = raw.rules.vars.unwrap_or_default();
        let rule_vars = crate::detect::rules::Vars::default()
            .with_overrides(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .map_err(|(name, message)| source.key_error(&format!("rules.vars.{name}"), message))?;
        let addr =
            |key: &str, value: Option<String>, default: &str| -> Result<SocketAddr, ConfigError> {
                let text = value.unwrap_or_else(|| default.to_owned());
                text.parse().map_err(|_| {
                    source.key_error(key, format!("invalid socket address \"{text}\""))
                })
            };
        Ok(Config {
            state_dir: raw
                .agent
                .state_dir
                .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR)),
            log: raw.log.validate(source)?,
            metrics_listen: addr(
                "api.metrics_listen",
                raw.api.metrics_listen,
                DEFAULT_METRICS_LISTEN,
            )?,
            gossip_listen: addr(
                "gossip.listen",
                raw.gossip.listen.clone(),
                DEFAULT_GOSSIP_LISTEN,
            )?,
            socket: raw
                .api
                .socket
                .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET)),
            recent_alerts: match raw.api.recent_alerts {
                None => DEFAULT_RECENT_ALERTS,
                Some(n @ 1..=100_000) => n as usize,
                Some(n) => {
                    return Err(source.key_error(
                        "api.recent_alerts",
                        format!("{n} is out of range (1 to 100000)"),
                    ));
                }
            },
            decide: raw.decide.validate(source)?,
            rule_paths: raw
                .rules
                .paths
                .unwrap_or_else(|| vec![PathBuf::from(DEFAULT_RULES_DIR)]),
            scenario_paths: raw
                .rules
                .scenarios
                .unwrap_or_else(|| vec![PathBuf::from(DEFAULT_SCENARIOS_DIR)]),
            rule_vars,
            capture: raw.capture.validate(source)?,
            enforce: raw.enforce.validate(source)?,
            store: raw.store.validate(source)?,
            logs: raw.logs.validate(source)?,
            discovery: raw.gossip.discovery(source)?,
            dns: raw.dns.validate(source)?,
            gossip: raw.gossip.validate(source)?,
        })
    }

    /// What will not work yet although the file is valid: referenced files and folders
    /// that do not exist.
    pub fn warnings(&self, source: &Source) -> Vec<ConfigWarning> {
        let missing = |key: &str, paths: &[PathBuf]| {
            paths
                .iter()
                .filter(|path| !path.exists())
                .map(|path| source.warning(key, format!("\"{}\" does not exist", path.display())))
                .collect::<Vec<_>>()
        };
        let mut warnings = missing("rules.paths", &self.rule_paths);
        warnings.extend(missing("rules.scenarios", &self.scenario_paths));
        warnings.extend(missing("capture.files", &self.capture.files));
        if self.dns.listen.is_some() {
            warnings.extend(missing("dns.blocklists", &self.dns.blocklists));
        }
        warnings
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    agent: RawAgent,
    #[serde(default)]
    log: RawLog,
    #[serde(default)]
    api: RawApi,
    #[serde(default)]
    gossip: RawGossip,
    #[serde(default)]
    rules: RawRules,
    #[serde(default)]
    capture: RawCapture,
    #[serde(default)]
    enforce: RawEnforce,
    #[serde(default)]
    store: RawStore,
    #[serde(default)]
    logs: RawLogs,
    #[serde(default)]
    decide: RawDecide,
    #[serde(default)]
    dns: RawDns,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDecide {
    block_severity: Option<String>,
    quorum: Option<i64>,
    window: Option<String>,
    severity_threshold: Option<i64>,
    ban_time: Option<String>,
    ban_factor: Option<f64>,
    ban_max: Option<String>,
    allowlist: Option<Vec<String>>,
}

impl RawDecide {
    fn validate(self, source: &Source) -> Result<PolicyConfig, ConfigError> {
        let defaults = PolicyConfig::default();
        let block_severity = match self.block_severity.as_deref() {
            None => defaults.block_severity,
            Some("never") => None,
            Some(name) => Some(Severity::from_name(name).ok_or_else(|| {
                source.key_error(
                    "decide.block_severity",
                    format!(
                        "unknown severity \"{name}\", expected info, low, medium, high, critical or never"
                    ),
                )
            })?),
        };
        let quorum = match self.quorum {
            None => defaults.quorum.quorum,
            Some(n @ 1..=1000) => n as usize,
            Some(n) => {
                return Err(
                    source.key_error("decide.quorum", format!("{n} is out of range (1 to 1000)"))
                );
            }
        };
        let duration = |key: &str, value: Option<String>, default: Duration| match value {
            None => Ok(default),
            Some(text) => {
                let value = daemon::parse_duration(source, key, &text)?;
                if value.is_zero() {
                    Err(source.key_error(key, "must be longer than zero"))
                } else {
                    Ok(value)
                }
            }
        };
        let window = duration("decide.window", self.window, defaults.quorum.window)?;
        // The heaviest single vote is `critical` (4): a threshold at or below it would let
        // one member block alone.
        let severity_threshold = match self.severity_threshold {
            None | Some(0) => None,
            Some(n @ 5..=100_000) => Some(n as u32),
            Some(n) => {
                return Err(source.key_error(
                    "decide.severity_threshold",
                    format!("{n} would let one member block alone; use 0 (off) or 5 and more"),
                ));
            }
        };
        let base = duration("decide.ban_time", self.ban_time, defaults.ban.base)?;
        let cap = duration("decide.ban_max", self.ban_max, defaults.ban.cap)?;
        if cap < base {
            return Err(source.key_error("decide.ban_max", "is shorter than decide.ban_time"));
        }
        let factor = self.ban_factor.unwrap_or(defaults.ban.factor);
        if !(1.0..=100.0).contains(&factor) {
            return Err(source.key_error(
                "decide.ban_factor",
                format!("{factor} is out of range (1 to 100)"),
            ));
        }
        let mut allowlist = Vec::new();
        for text in self.allowlist.unwrap_or_default() {
            let net = text
                .parse::<ipnet::IpNet>()
                .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| {
                    source.key_error(
                        "decide.allowlist",
                        format!("\"{text}\" is not an address or a CIDR network"),
                    )
                })?;
            allowlist.push(net.trunc());
        }
        Ok(PolicyConfig {
            block_severity,
            quorum: QuorumConfig {
                quorum,
                window,
                severity_threshold,
                ..defaults.quorum
            },
            ban: BanTime { base, factor, cap },
            allowlist,
        })
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLogs {
    poll_interval: Option<String>,
    max_line: Option<i64>,
    journal: Option<bool>,
    queue: Option<i64>,
    eve: Option<Vec<PathBuf>>,
}

impl RawLogs {
    fn validate(self, source: &Source) -> Result<LogsConfig, ConfigError> {
        let poll = self
            .poll_interval
            .unwrap_or_else(|| DEFAULT_LOG_POLL_INTERVAL.to_owned());
        let poll_interval = daemon::parse_duration(source, "logs.poll_interval", &poll)?;
        if poll_interval < Duration::from_millis(1) || poll_interval > Duration::from_secs(60) {
            return Err(source.key_error(
                "logs.poll_interval",
                format!("\"{poll}\" is outside 1ms..60s"),
            ));
        }
        let bounded = |key: &str, value: Option<i64>, default: usize, min: usize, max: usize| {
            let value = value.unwrap_or(default as i64);
            usize::try_from(value)
                .ok()
                .filter(|v| (min..=max).contains(v))
                .ok_or_else(|| source.key_error(key, format!("{value} is outside {min}..{max}")))
        };
        Ok(LogsConfig {
            poll_interval,
            max_line: bounded(
                "logs.max_line",
                self.max_line,
                DEFAULT_LOG_MAX_LINE,
                256,
                1 << 20,
            )?,
            journal: self.journal.unwrap_or(false),
            queue: bounded("logs.queue", self.queue, DEFAULT_LOG_QUEUE, 16, 1_000_000)?,
            eve: self.eve.unwrap_or_default(),
        })
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAgent {
    state_dir: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApi {
    metrics_listen: Option<String>,
    socket: Option<PathBuf>,
    recent_alerts: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGossip {
    listen: Option<String>,
    discovery: Option<String>,
    discovery_name: Option<String>,
    discovery_resolver: Option<String>,
    discovery_interval: Option<String>,
    seeds: Option<Vec<String>>,
    advertise: Option<String>,
    fanout: Option<i64>,
    interval: Option<String>,
    credential: Option<PathBuf>,
    trusted_issuers: Option<Vec<String>>,
    identity_url: Option<String>,
    status_max_age: Option<String>,
    status_refresh: Option<String>,
    renew_before: Option<String>,
    max_connections: Option<i64>,
}

impl RawGossip {
    fn validate(self, source: &Source) -> Result<GossipConfig, ConfigError> {
        let addr = |key: &str, text: &str| -> Result<SocketAddr, ConfigError> {
            text.parse()
                .map_err(|_| source.key_error(key, format!("invalid socket address \"{text}\"")))
        };
        let seeds = self
            .seeds
            .unwrap_or_default()
            .iter()
            .map(|seed| addr("gossip.seeds", seed))
            .collect::<Result<Vec<_>, _>>()?;
        let advertise = self
            .advertise
            .map(|text| addr("gossip.advertise", &text))
            .transpose()?;
        let duration = |key: &str, value: Option<String>, default: &str, min: Duration| {
            let text = value.unwrap_or_else(|| default.to_owned());
            let parsed = daemon::parse_duration(source, key, &text)?;
            if parsed < min {
                return Err(source.key_error(
                    key,
                    format!(
                        "\"{text}\" is shorter than {}",
                        humantime::format_duration(min)
                    ),
                ));
            }
            Ok(parsed)
        };
        let bounded = |key: &str, value: Option<i64>, default: usize, max: usize| {
            let value = value.unwrap_or(default as i64);
            usize::try_from(value)
                .ok()
                .filter(|v| (1..=max).contains(v))
                .ok_or_else(|| source.key_error(key, format!("{value} is outside 1..{max}")))
        };
        let trusted_issuers = self
            .trusted_issuers
            .unwrap_or_default()
            .iter()
            .map(|text| {
                let did = swarmguard_identity::did::Did::parse(text)
                    .map_err(|err| source.key_error("gossip.trusted_issuers", err.to_string()))?;
                did.ed25519_key().map_err(|_| {
                    source.key_error(
                        "gossip.trusted_issuers",
                        format!("\"{text}\" is not an Ed25519 did:key"),
                    )
                })?;
                Ok(did)
            })
            .collect::<Result<Vec<_>, ConfigError>>()?;
        let identity_url = match self.identity_url {
            None => None,
            Some(text) if text.starts_with("http://") || text.starts_with("https://") => {
                Some(text.trim_end_matches('/').to_owned())
            }
            Some(text) => {
                return Err(source.key_error(
                    "gossip.identity_url",
                    format!("\"{text}\" is not an http:// or https:// URL"),
                ));
            }
        };
        Ok(GossipConfig {
            seeds,
            advertise,
            fanout: bounded("gossip.fanout", self.fanout, DEFAULT_GOSSIP_FANOUT, 64)?,
            interval: duration(
                "gossip.interval",
                self.interval,
                DEFAULT_GOSSIP_INTERVAL,
                Duration::from_millis(10),
            )?,
            credential: self.credential,
            trusted_issuers,
            identity_url,
            status_max_age: duration(
                "gossip.status_max_age",
                self.status_max_age,
                DEFAULT_STATUS_MAX_AGE,
                Duration::from_secs(1),
            )?,
            status_refresh: duration(
                "gossip.status_refresh",
                self.status_refresh,
                DEFAULT_STATUS_REFRESH,
                Duration::from_millis(100),
            )?,
            renew_before: duration(
                "gossip.renew_before",
                self.renew_before,
                DEFAULT_RENEW_BEFORE,
                Duration::ZERO,
            )?,
            max_connections: bounded(
                "gossip.max_connections",
                self.max_connections,
                DEFAULT_MAX_CONNECTIONS,
                65_536,
            )?,
        })
    }
}

impl RawGossip {
    fn discovery(&self, source: &Source) -> Result<DiscoveryMode, ConfigError> {
        let dns_only = [
            ("gossip.discovery_name", self.discovery_name.is_some()),
            (
                "gossip.discovery_resolver",
                self.discovery_resolver.is_some(),
            ),
            (
                "gossip.discovery_interval",
                self.discovery_interval.is_some(),
            ),
        ];
        match self.discovery.as_deref().unwrap_or("static") {
            "static" => {
                if let Some((key, _)) = dns_only.iter().find(|(_, set)| *set) {
                    return Err(source.key_error(key, "only used with gossip.discovery = \"dns\""));
                }
                Ok(DiscoveryMode::Static)
            }
            "dns" => {
                let key = "gossip.discovery_name";
                let text = self.discovery_name.as_deref().ok_or_else(|| {
                    source.key_error(key, "required with gossip.discovery = \"dns\"")
                })?;
                let mut name = hickory_resolver::proto::rr::Name::from_ascii(text)
                    .ok()
                    .filter(|name| name.num_labels() >= 2)
                    .ok_or_else(|| {
                        source.key_error(
                            key,
                            format!(
                                "\"{text}\" is not a DNS name such as _swarmguard._udp.example.gov"
                            ),
                        )
                    })?;
                name.set_fqdn(true);
                let resolver = match &self.discovery_resolver {
                    None => None,
                    Some(text) => Some(dns::parse_upstream(text).map_err(|message| {
                        source.key_error("gossip.discovery_resolver", message)
                    })?),
                };
                let interval = match &self.discovery_interval {
                    None => discovery::DEFAULT_INTERVAL,
                    Some(text) => {
                        let key = "gossip.discovery_interval";
                        let interval = daemon::parse_duration(source, key, text)?;
                        if interval < Duration::from_secs(1)
                            || interval > Duration::from_secs(86_400)
                        {
                            return Err(
                                source.key_error(key, format!("\"{text}\" is outside 1s..24h"))
                            );
                        }
                        interval
                    }
                };
                Ok(DiscoveryMode::Dns(DnsDiscovery {
                    name,
                    resolver,
                    interval,
                }))
            }
            other => Err(source.key_error(
                "gossip.discovery",
                format!("unknown discovery \"{other}\", expected static or dns"),
            )),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDns {
    listen: Option<String>,
    upstream: Option<Vec<String>>,
    sinkhole_ipv4: Option<String>,
    sinkhole_ipv6: Option<String>,
    blocklists: Option<Vec<PathBuf>>,
    cache_size: Option<i64>,
    max_domains: Option<i64>,
    max_inflight: Option<i64>,
    alert_interval: Option<String>,
    max_alert_pairs: Option<i64>,
    answer_ttl: Option<i64>,
}

impl RawDns {
    fn validate(self, source: &Source) -> Result<DnsConfig, ConfigError> {
        let defaults = DnsConfig::default();
        let listen = match self.listen {
            None => None,
            Some(text) => Some(text.parse::<SocketAddr>().map_err(|_| {
                source.key_error("dns.listen", format!("invalid socket address \"{text}\""))
            })?),
        };
        let upstream = self
            .upstream
            .unwrap_or_default()
            .iter()
            .map(|text| {
                dns::parse_upstream(text)
                    .map_err(|message| source.key_error("dns.upstream", message))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if listen.is_some() && upstream.is_empty() {
            return Err(source.key_error(
                "dns.upstream",
                "required when dns.listen is set (the resolvers the sinkhole forwards to)",
            ));
        }
        if let Some(listen) = listen
            && upstream.contains(&listen)
        {
            return Err(source.key_error(
                "dns.upstream",
                format!("{listen} is dns.listen itself; forwarding there would loop"),
            ));
        }
        let ipv4 = match self.sinkhole_ipv4 {
            None => None,
            Some(text) => Some(text.parse().map_err(|_| {
                source.key_error(
                    "dns.sinkhole_ipv4",
                    format!("invalid IPv4 address \"{text}\""),
                )
            })?),
        };
        let ipv6 = match self.sinkhole_ipv6 {
            None => None,
            Some(text) => Some(text.parse().map_err(|_| {
                source.key_error(
                    "dns.sinkhole_ipv6",
                    format!("invalid IPv6 address \"{text}\""),
                )
            })?),
        };
        let bounded = |key: &str, value: Option<i64>, default: u64, min: u64, max: u64| {
            let value = value.unwrap_or(default as i64);
            u64::try_from(value)
                .ok()
                .filter(|v| (min..=max).contains(v))
                .ok_or_else(|| source.key_error(key, format!("{value} is outside {min}..{max}")))
        };
        let alert_interval = match self.alert_interval {
            None => defaults.alert_interval,
            Some(text) => daemon::parse_duration(source, "dns.alert_interval", &text)?,
        };
        Ok(DnsConfig {
            listen,
            upstream,
            sinkhole_ipv4: ipv4,
            sinkhole_ipv6: ipv6,
            blocklists: self.blocklists.unwrap_or(defaults.blocklists),
            cache_size: bounded(
                "dns.cache_size",
                self.cache_size,
                defaults.cache_size,
                0,
                1 << 20,
            )?,
            max_domains: bounded(
                "dns.max_domains",
                self.max_domains,
                defaults.max_domains as u64,
                1,
                10_000_000,
            )? as usize,
            max_inflight: bounded(
                "dns.max_inflight",
                self.max_inflight,
                defaults.max_inflight as u64,
                1,
                65_536,
            )? as usize,
            alert_interval,
            max_alert_pairs: bounded(
                "dns.max_alert_pairs",
                self.max_alert_pairs,
                defaults.max_alert_pairs as u64,
                1,
                1_000_000,
            )? as usize,
            answer_ttl: bounded(
                "dns.answer_ttl",
                self.answer_ttl,
                u64::from(defaults.answer_ttl),
                0,
                86_400,
            )? as u32,
        })
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRules {
    paths: Option<Vec<PathBuf>>,
    scenarios: Option<Vec<PathBuf>>,
    vars: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCapture {
    interfaces: Option<Vec<String>>,
    files: Option<Vec<PathBuf>>,
    bpf: Option<String>,
    snaplen: Option<u32>,
    promisc: Option<bool>,
    queue: Option<usize>,
    checksum: Option<String>,
}

/// Linux interface names are at most 15 bytes (IFNAMSIZ - 1).
const MAX_INTERFACE_NAME: usize = 15;

impl RawCapture {
    fn validate(self, source: &Source) -> Result<CaptureConfig, ConfigError> {
        let defaults = CaptureConfig::default();
        let interfaces = self.interfaces.unwrap_or_default();
        for name in &interfaces {
            if name.is_empty() || name.len() > MAX_INTERFACE_NAME || name.contains(['/', ' ']) {
                return Err(source.key_error(
                    "capture.interfaces",
                    format!("invalid interface name \"{name}\""),
                ));
            }
        }
        let bpf = self.bpf.filter(|bpf| !bpf.trim().is_empty());
        if let Some(bpf) = &bpf {
            capture::check_filter(bpf).map_err(|err| {
                source.key_error(
                    "capture.bpf",
                    format!("invalid BPF filter \"{bpf}\": {err}"),
                )
            })?;
        }
        let snaplen = self.snaplen.unwrap_or(defaults.snaplen);
        if !(64..=262_144).contains(&snaplen) {
            return Err(source.key_error(
                "capture.snaplen",
                format!("{snaplen} is out of range (64 to 262144 bytes)"),
            ));
        }
        let queue = self.queue.unwrap_or(defaults.queue);
        if !(1..=1_048_576).contains(&queue) {
            return Err(source.key_error(
                "capture.queue",
                format!("{queue} is out of range (1 to 1048576 frames)"),
            ));
        }
        let checksum = match self.checksum {
            None => defaults.checksum,
            Some(text) => text.parse().map_err(|err: String| {
                source.key_error("capture.checksum", format!("\"{text}\": {err}"))
            })?,
        };
        Ok(CaptureConfig {
            interfaces,
            files: self.files.unwrap_or_default(),
            bpf,
            snaplen,
            promisc: self.promisc.unwrap_or(defaults.promisc),
            queue,
            checksum,
        })
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEnforce {
    backend: Option<String>,
    forward: Option<bool>,
    nft: Option<Vec<String>>,
}

impl RawEnforce {
    fn validate(self, source: &Source) -> Result<EnforceConfig, ConfigError> {
        let backend = match self.backend.as_deref() {
            None => BackendKind::Nftables,
            Some(name) => BackendKind::from_name(name).ok_or_else(|| {
                source.key_error(
                    "enforce.backend",
                    format!("unknown backend \"{name}\", expected nftables or dry-run"),
                )
            })?,
        };
        let command = match self.nft {
            None => NftCommand::default(),
            Some(argv) => NftCommand::new(argv).ok_or_else(|| {
                source.key_error(
                    "enforce.nft",
                    "the command is empty; the default is [\"nft\"]",
                )
            })?,
        };
        Ok(EnforceConfig {
            backend,
            nft: NftConfig {
                command,
                forward: self.forward.unwrap_or(false),
            },
        })
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    cache_mib: Option<u64>,
    history_retention: Option<String>,
    peer_retention: Option<String>,
    max_entries: Option<u64>,
}

impl RawStore {
    fn validate(self, source: &Source) -> Result<StoreConfig, ConfigError> {
        let defaults = StoreConfig::default();
        let cache_bytes = match self.cache_mib {
            None => defaults.cache_bytes,
            Some(mib @ 1..=4096) => mib * 1024 * 1024,
            Some(mib) => {
                return Err(source.key_error(
                    "store.cache_mib",
                    format!("{mib} is out of range (1 to 4096 MiB)"),
                ));
            }
        };
        let duration = |key: &str, value: Option<String>, default| match value {
            None => Ok(default),
            Some(text) => daemon::parse_duration(source, key, &text),
        };
        let max_entries = self.max_entries.unwrap_or(defaults.max_entries);
        if max_entries == 0 {
            return Err(source.key_error("store.max_entries", "must be at least 1"));
        }
        Ok(StoreConfig {
            cache_bytes,
            history_retention: duration(
                "store.history_retention",
                self.history_retention,
                defaults.history_retention,
            )?,
            peer_retention: duration(
                "store.peer_retention",
                self.peer_retention,
                defaults.peer_retention,
            )?,
            max_entries,
            ..defaults
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source() -> Source {
        Source::file(Path::new("agent.toml"))
    }

    fn load(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(&source(), text)
    }

    #[test]
    fn empty_file_gives_the_documented_defaults() {
        let config = load("").unwrap();
        assert_eq!(config.gossip_listen, "0.0.0.0:7300".parse().unwrap());
        assert_eq!(config.metrics_listen, "127.0.0.1:9480".parse().unwrap());
        assert_eq!(config.state_dir, Path::new("/var/lib/swarmguard/agent"));
        assert_eq!(
            config.rule_paths,
            [PathBuf::from("/etc/swarmguard/rules.d")]
        );
        assert_eq!(
            config.scenario_paths,
            [PathBuf::from("/etc/swarmguard/scenarios.d")]
        );
    }

    #[test]
    fn shipped_file_is_valid_and_matches_the_defaults() {
        let shipped = load(include_str!("../../packaging/agent.toml")).unwrap();
        let defaults = Config::default();
        assert_eq!(shipped.gossip_listen, defaults.gossip_listen);
        assert_eq!(shipped.metrics_listen, defaults.metrics_listen);
        assert_eq!(shipped.state_dir, defaults.state_dir);
        assert_eq!(shipped.rule_paths, defaults.rule_paths);
        assert_eq!(shipped.scenario_paths, defaults.scenario_paths);
        assert_eq!(shipped.log.level, defaults.log.level);
        assert_eq!(shipped.logs, defaults.logs);
        assert_eq!(shipped.capture, defaults.capture);
        assert_eq!(shipped.enforce, defaults.enforce);
        assert_eq!(shipped.store, defaults.store);
        assert_eq!(shipped.gossip, defaults.gossip);
        assert_eq!(shipped.decide, defaults.decide);
        assert_eq!(shipped.socket, defaults.socket);
        assert_eq!(shipped.recent_alerts, defaults.recent_alerts);
        assert_eq!(shipped.discovery, defaults.discovery);
        assert_eq!(shipped.dns, defaults.dns);
    }

    #[test]
    fn dns_and_discovery_keys_are_read() {
        let config = load(
            "[gossip]\ndiscovery = \"dns\"\ndiscovery_name = \"_swarmguard._udp.example.gov\"\n\
             discovery_resolver = \"192.0.2.53\"\ndiscovery_interval = \"30s\"\n\
             [dns]\nlisten = \"127.0.0.1:5353\"\nupstream = [\"192.0.2.1\", \"[2001:db8::1]:5300\"]\n\
             sinkhole_ipv4 = \"0.0.0.0\"\nblocklists = [\"/srv/domains\"]\ncache_size = 100\n\
             max_domains = 10\nalert_interval = \"5m\"\n",
        )
        .unwrap();
        let DiscoveryMode::Dns(dns) = &config.discovery else {
            panic!("{:?}", config.discovery)
        };
        assert_eq!(dns.name.to_string(), "_swarmguard._udp.example.gov.");
        assert_eq!(dns.resolver, Some("192.0.2.53:53".parse().unwrap()));
        assert_eq!(dns.interval, Duration::from_secs(30));
        assert_eq!(config.dns.listen, Some("127.0.0.1:5353".parse().unwrap()));
        assert_eq!(
            config.dns.upstream,
            [
                "192.0.2.1:53".parse::<SocketAddr>().unwrap(),
                "[2001:db8::1]:5300".parse().unwrap()
            ]
        );
        assert_eq!(
            config.dns.sinkhole_ipv4,
            Some(std::net::Ipv4Addr::UNSPECIFIED)
        );
        assert_eq!(config.dns.sinkhole_ipv6, None);
        assert_eq!(config.dns.blocklists, [PathBuf::from("/srv/domains")]);
        assert_eq!((config.dns.cache_size, config.dns.max_domains), (100, 10));
        assert_eq!(config.dns.alert_interval, Duration::from_secs(300));
    }

    #[test]
    fn bad_dns_and_discovery_values_name_their_key() {
        for (text, expected) in [
            (
                "[gossip]\ndiscovery = \"mdns\"\n",
                "gossip.discovery: unknown discovery \"mdns\"",
            ),
            (
                "[gossip]\ndiscovery = \"dns\"\n",
                "gossip.discovery_name: required",
            ),
            (
                "[gossip]\ndiscovery_name = \"_s._udp.example\"\n",
                "gossip.discovery_name: only used with",
            ),
            (
                "[gossip]\ndiscovery = \"dns\"\ndiscovery_name = \"com\"\n",
                "gossip.discovery_name: \"com\" is not a DNS name",
            ),
            (
                "[gossip]\ndiscovery = \"dns\"\ndiscovery_name = \"_s._udp.example\"\ndiscovery_interval = \"10ms\"\n",
                "gossip.discovery_interval: \"10ms\" is outside",
            ),
            (
                "[gossip]\ndiscovery = \"dns\"\ndiscovery_name = \"_s._udp.example\"\ndiscovery_resolver = \"resolver\"\n",
                "gossip.discovery_resolver: \"resolver\" is not an address",
            ),
            (
                "[dns]\nlisten = \"127.0.0.1\"\n",
                "dns.listen: invalid socket address",
            ),
            (
                "[dns]\nlisten = \"127.0.0.1:53\"\n",
                "dns.upstream: required when dns.listen is set",
            ),
            (
                "[dns]\nlisten = \"127.0.0.1:53\"\nupstream = [\"127.0.0.1\"]\n",
                "dns.upstream: 127.0.0.1:53 is dns.listen itself",
            ),
            (
                "[dns]\nupstream = [\"dns.example\"]\n",
                "dns.upstream: \"dns.example\" is not an address",
            ),
            (
                "[dns]\nsinkhole_ipv4 = \"::1\"\n",
                "dns.sinkhole_ipv4: invalid IPv4 address",
            ),
            (
                "[dns]\nsinkhole_ipv6 = \"0.0.0.0\"\n",
                "dns.sinkhole_ipv6: invalid IPv6 address",
            ),
            ("[dns]\nmax_domains = 0\n", "dns.max_domains: 0 is outside"),
            (
                "[dns]\nalert_interval = \"often\"\n",
                "dns.alert_interval: invalid duration",
            ),
        ] {
            let err = load(text).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("agent.toml: {expected}")),
                "{text:?} gave {err}"
            );
        }
    }

    #[test]
    fn gossip_keys_are_read_and_bad_ones_named() {
        let issuer = "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp";
        let config = load(&format!(
            "[gossip]\nseeds = [\"10.0.0.1:7300\"]\nfanout = 4\ninterval = \"500ms\"\n\
             credential = \"/etc/swarmguard/member.jwt\"\ntrusted_issuers = [\"{issuer}\"]\n\
             identity_url = \"https://id.example:8480/\"\nstatus_max_age = \"1h\"\n"
        ))
        .unwrap();
        assert_eq!(config.gossip.seeds, ["10.0.0.1:7300".parse().unwrap()]);
        assert_eq!(config.gossip.fanout, 4);
        assert_eq!(config.gossip.interval, Duration::from_millis(500));
        assert_eq!(config.gossip.trusted_issuers[0].as_str(), issuer);
        assert_eq!(
            config.gossip.identity_url.as_deref(),
            Some("https://id.example:8480")
        );
        assert_eq!(config.gossip.status_max_age, Duration::from_secs(3600));
        assert_eq!(
            Config::default().gossip.credential_path(Path::new("/s")),
            Path::new("/s/member.jwt")
        );
        for (text, key) in [
            (
                "[gossip]\nseeds = [\"x\"]\n",
                "gossip.seeds: invalid socket address",
            ),
            ("[gossip]\nfanout = 0\n", "gossip.fanout: 0 is outside"),
            (
                "[gossip]\ntrusted_issuers = [\"did:web:a\"]\n",
                "gossip.trusted_issuers:",
            ),
            (
                "[gossip]\nidentity_url = \"ftp://a\"\n",
                "gossip.identity_url:",
            ),
            (
                "[gossip]\nstatus_max_age = \"0s\"\n",
                "gossip.status_max_age:",
            ),
        ] {
            let err = load(text).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("agent.toml: {key}")),
                "{text:?} gave {err}"
            );
        }
    }

    #[test]
    fn capture_enforce_and_store_keys_are_read() {
        let config = load(
            "[capture]\ninterfaces = [\"eth0\", \"any\"]\nbpf = \"not port 7300\"\nsnaplen = 1500\n\
             promisc = true\nqueue = 100\n\
             [enforce]\nbackend = \"dry-run\"\nforward = true\nnft = [\"ip\", \"netns\", \"exec\", \"lab\", \"nft\"]\n\
             [store]\ncache_mib = 8\nhistory_retention = \"7d\"\npeer_retention = \"1h\"\nmax_entries = 50\n",
        )
        .unwrap();
        assert_eq!(config.capture.interfaces, ["eth0", "any"]);
        assert_eq!(config.capture.bpf.as_deref(), Some("not port 7300"));
        assert_eq!(
            (
                config.capture.snaplen,
                config.capture.promisc,
                config.capture.queue
            ),
            (1500, true, 100)
        );
        assert_eq!(config.enforce.backend, BackendKind::DryRun);
        assert!(config.enforce.nft.forward);
        assert_eq!(
            config.enforce.nft.command.argv(),
            ["ip", "netns", "exec", "lab", "nft"]
        );
        assert_eq!(config.store.cache_bytes, 8 << 20);
        assert_eq!(
            config.store.history_retention,
            std::time::Duration::from_secs(7 * 86400)
        );
        assert_eq!(
            config.store.peer_retention,
            std::time::Duration::from_secs(3600)
        );
        assert_eq!(config.store.max_entries, 50);
    }

    #[test]
    fn bad_capture_enforce_and_store_values_name_their_key() {
        for (text, key) in [
            (
                "[capture]\nbpf = \"port banana\"\n",
                "capture.bpf: invalid BPF filter",
            ),
            (
                "[capture]\nsnaplen = 10\n",
                "capture.snaplen: 10 is out of range",
            ),
            ("[capture]\nqueue = 0\n", "capture.queue: 0 is out of range"),
            (
                "[capture]\nchecksum = \"sometimes\"\n",
                "capture.checksum: \"sometimes\": expected auto, yes or no",
            ),
            (
                "[capture]\ninterfaces = [\"\"]\n",
                "capture.interfaces: invalid interface name",
            ),
            (
                "[enforce]\nbackend = \"iptables\"\n",
                "enforce.backend: unknown backend \"iptables\"",
            ),
            ("[enforce]\nnft = []\n", "enforce.nft: the command is empty"),
            (
                "[store]\ncache_mib = 0\n",
                "store.cache_mib: 0 is out of range",
            ),
            (
                "[store]\nhistory_retention = \"soon\"\n",
                "store.history_retention: invalid duration",
            ),
        ] {
            let err = load(text).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("agent.toml: {key}")),
                "{text:?} gave {err}"
            );
        }
    }

    #[test]
    fn decide_keys_are_read_and_bad_ones_named() {
        let config = load(
            "[api]\nsocket = \"/tmp/a.sock\"\nrecent_alerts = 10\n\
             [decide]\nblock_severity = \"medium\"\nquorum = 2\nwindow = \"5m\"\n\
             severity_threshold = 8\nban_time = \"10m\"\nban_factor = 3.0\nban_max = \"1d\"\n\
             allowlist = [\"192.0.2.0/24\", \"2001:db8::1\"]\n",
        )
        .unwrap();
        assert_eq!(config.socket, Path::new("/tmp/a.sock"));
        assert_eq!(config.recent_alerts, 10);
        let decide = &config.decide;
        assert_eq!(decide.block_severity, Some(Severity::Medium));
        assert_eq!(decide.quorum.quorum, 2);
        assert_eq!(decide.quorum.window, Duration::from_secs(300));
        assert_eq!(decide.quorum.severity_threshold, Some(8));
        assert_eq!(
            decide.ban,
            BanTime {
                base: Duration::from_secs(600),
                factor: 3.0,
                cap: Duration::from_secs(86400)
            }
        );
        assert_eq!(decide.allowlist.len(), 2);
        assert_eq!(
            load("[decide]\nblock_severity = \"never\"\n")
                .unwrap()
                .decide
                .block_severity,
            None
        );
        for (text, key) in [
            (
                "[decide]\nblock_severity = \"loud\"\n",
                "decide.block_severity",
            ),
            ("[decide]\nquorum = 0\n", "decide.quorum"),
            (
                "[decide]\nseverity_threshold = 4\n",
                "decide.severity_threshold",
            ),
            (
                "[decide]\nban_time = \"2d\"\nban_max = \"1d\"\n",
                "decide.ban_max",
            ),
            ("[decide]\nban_factor = 0.5\n", "decide.ban_factor"),
            ("[decide]\nallowlist = [\"nope\"]\n", "decide.allowlist"),
            ("[decide]\nwindow = \"0s\"\n", "decide.window"),
            ("[api]\nrecent_alerts = 0\n", "api.recent_alerts"),
        ] {
            let err = load(text).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("agent.toml: {key}")),
                "{text:?} gave {err}"
            );
        }
    }

    #[test]
    fn bad_gossip_address_is_reported_as_in_the_docs() {
        let err = load("[gossip]\nlisten = \"1.2.3\"\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "agent.toml: gossip.listen: invalid socket address \"1.2.3\""
        );
    }

    #[test]
    fn logs_table_is_validated() {
        let config = load("[logs]\npoll_interval = \"50ms\"\nmax_line = 4096\njournal = true\neve = [\"/var/log/suricata/eve.json\"]\n").unwrap();
        assert_eq!(config.logs.poll_interval, Duration::from_millis(50));
        assert_eq!(config.logs.max_line, 4096);
        assert!(config.logs.journal);
        assert_eq!(
            config.logs.eve,
            [PathBuf::from("/var/log/suricata/eve.json")]
        );
        let err = load("[logs]\nmax_line = 10\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "agent.toml: logs.max_line: 10 is outside 256..1048576"
        );
        let err = load("[logs]\npoll_interval = \"often\"\n").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("agent.toml: logs.poll_interval: invalid duration"),
            "{err}"
        );
    }

    #[test]
    fn unknown_key_is_named() {
        let err = load("[gossip]\nlisten = \"0.0.0.0:7300\"\nfanuot = 3\n").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("agent.toml: gossip.fanuot: unknown field"),
            "{err}"
        );
    }

    #[test]
    fn wrong_type_is_named() {
        let err = load("[rules]\npaths = \"/etc/rules\"\n").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("agent.toml: rules.paths: invalid type"),
            "{err}"
        );
    }

    #[test]
    fn rule_variables_override_suricata_defaults_and_bad_ones_are_named() {
        let config =
            load("[rules.vars]\nHOME_NET = \"[10.20.0.0/16]\"\nSSH_PORTS = \"2222\"\n").unwrap();
        assert_eq!(config.rule_vars.address("HOME_NET"), Some("[10.20.0.0/16]"));
        assert_eq!(config.rule_vars.port("SSH_PORTS"), Some("2222"));
        assert_eq!(
            config.rule_vars.address("EXTERNAL_NET"),
            Some("!$HOME_NET"),
            "untouched defaults stay"
        );
        let err = load("[rules.vars]\nHOME_NET = \"10.0.0.0/40\"\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "agent.toml: rules.vars.HOME_NET: invalid prefix in \"10.0.0.0/40\""
        );
    }

    #[test]
    fn missing_rule_folders_are_warnings_not_errors() {
        let dir = tempfile::tempdir().unwrap();
        let present = dir.path().join("rules.d");
        std::fs::create_dir(&present).unwrap();
        let text = format!(
            "[rules]\npaths = [{:?}, {:?}]\nscenarios = [{:?}]\n",
            present,
            dir.path().join("absent.rules"),
            present
        );
        let config = load(&text).unwrap();
        let warnings = config.warnings(&source());
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert_eq!(warnings[0].key, "rules.paths");
        assert!(warnings[0].message.contains("absent.rules"));
    }
}
