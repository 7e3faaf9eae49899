//! The DNS sinkhole: an optional local resolver (hickory-server) that answers NXDOMAIN — or
//! a configured sinkhole address — for the domains the agent has decided on and those of
//! the blocklist files, and forwards every other query to the upstream resolvers.
//!
//! - [`domains`]: [`DomainSet`], the sans-IO match of a query name (and its parents)
//!   against decisions with their expiry and blocklist entries.
//! - [`blocklist`]: `rules/domains/*.txt` files, bad lines reported as `FILE:LINE`.
//! - [`hits`]: the bounded alert limiter and metric labels.
//! - `server`: the hickory request handler.
//!
//! [`start`] binds the configured UDP and TCP address and returns a [`SinkholeHandle`];
//! the decision stage calls [`SinkholeHandle::set`] with the live domain decisions
//! whenever they change. A decision stops matching at its `until` by itself. Each hit
//! counts in `swarmguard_dns_sinkhole_hits_total{domain}` and raises an [`Alert`] naming
//! the client (at most one per client and domain per `dns.alert_interval`).

pub mod blocklist;
pub mod domains;
pub mod hits;
mod server;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverOpts};
use hickory_server::Server;
use hickory_server::proto::rr::{LowerName, Name};
use hickory_server::store::forwarder::{ForwardConfig, ForwardZoneHandler};
use hickory_server::zone_handler::Catalog;
use prometheus::{IntCounterVec, IntGaugeVec};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{Semaphore, mpsc, watch};

pub use blocklist::{Blocklist, BlocklistError};
pub use domains::{DomainSet, MatchSource};

use crate::api::Metrics;
use crate::config::Config;
use crate::decide::{Action as DecisionAction, Decision};
use crate::detect::Alert;
use crate::subject::{Domain, Subject};

/// The `[dns]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsConfig {
    /// UDP and TCP address of the sinkhole resolver; `None` (the default) runs none.
    pub listen: Option<SocketAddr>,
    /// Where other queries go. Required when `listen` is set: reading `/etc/resolv.conf`
    /// instead would loop whenever it names the sinkhole itself.
    pub upstream: Vec<SocketAddr>,
    /// Answer for A queries of sinkholed names; NXDOMAIN when neither address is set.
    pub sinkhole_ipv4: Option<Ipv4Addr>,
    /// Answer for AAAA queries of sinkholed names.
    pub sinkhole_ipv6: Option<Ipv6Addr>,
    /// Blocklist files, or folders whose `*.txt` files are read.
    pub blocklists: Vec<PathBuf>,
    /// Entries in the forwarding cache.
    pub cache_size: u64,
    /// Domains held at most, decided and blocklisted each.
    pub max_domains: usize,
    /// Queries being answered at once, at most; more get REFUSED.
    pub max_inflight: usize,
    /// One alert per client and domain per this interval.
    pub alert_interval: Duration,
    /// (client, domain) pairs the alert limiter remembers at most.
    pub max_alert_pairs: usize,
    /// TTL of sinkhole address answers, in seconds.
    pub answer_ttl: u32,
}

/// Where the packages install domain blocklists.
pub const DEFAULT_BLOCKLISTS_DIR: &str = "/etc/swarmguard/domains.d";
/// The port of `dns.upstream` entries given without one.
pub const DNS_PORT: u16 = 53;
/// Distinct domains labelled in `swarmguard_dns_sinkhole_hits_total`; the rest are
/// `other`.
pub const MAX_HIT_LABELS: usize = 256;

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            listen: None,
            upstream: Vec::new(),
            sinkhole_ipv4: None,
            sinkhole_ipv6: None,
            blocklists: vec![PathBuf::from(DEFAULT_BLOCKLISTS_DIR)],
            cache_size: 8192,
            max_domains: 100_000,
            max_inflight: 1024,
            alert_interval: Duration::from_secs(60),
            max_alert_pairs: 10_000,
            answer_ttl: 60,
        }
    }
}

/// `ADDR` or `IP` (port 53) as `dns.upstream` and `--dns-upstream` take it.
pub fn parse_upstream(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    text.parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, DNS_PORT))
        .map_err(|_| format!("\"{text}\" is not an address (IP or IP:PORT)"))
}

/// Why the sinkhole did not start.
#[derive(Debug, thiserror::Error)]
pub enum SinkholeError {
    /// The listen address is taken or not ours.
    #[error("cannot listen for DNS on {addr} ({proto}): {source}")]
    Bind {
        addr: SocketAddr,
        proto: &'static str,
        source: std::io::Error,
    },
    /// [`start_with`] was called without `dns.listen`.
    #[error("dns.listen is not set")]
    NoListen,
    /// `dns.listen` without any `dns.upstream`.
    #[error("dns.listen is set but dns.upstream is empty")]
    NoUpstream,
    /// hickory refused the forwarder configuration.
    #[error("cannot configure the DNS forwarder: {0}")]
    Forwarder(String),
}

/// The `swarmguard_dns_*` metrics.
#[derive(Debug, Clone)]
pub struct DnsMetrics {
    /// `swarmguard_dns_queries_total{result="forwarded"|"sinkholed"|"busy"}`.
    queries: IntCounterVec,
    /// `swarmguard_dns_sinkhole_hits_total{domain}`: by the matched entry, bounded labels.
    hits: IntCounterVec,
    /// `swarmguard_dns_sinkhole_alerts_total{outcome}`: sent, suppressed (rate limit),
    /// table_full, queue_full, closed.
    alerts: IntCounterVec,
    /// `swarmguard_dns_sinkhole_domains{source="decision"|"blocklist"}`.
    domains: IntGaugeVec,
    /// `swarmguard_dns_sinkhole_dropped_total{reason}`: decisions past `dns.max_domains`
    /// and bad blocklist lines.
    dropped: IntCounterVec,
}

impl DnsMetrics {
    pub fn new(metrics: &Metrics) -> DnsMetrics {
        let counter =
            |name: &str, help: &str, label: &str| metrics.counter_vec(name, help, &[label]);
        DnsMetrics {
            queries: counter(
                "swarmguard_dns_queries_total",
                "Queries the DNS sinkhole answered, by how.",
                "result",
            ),
            hits: counter(
                "swarmguard_dns_sinkhole_hits_total",
                "Queries for sinkholed names, by the decided or listed domain (the first 256, then other).",
                "domain",
            ),
            alerts: counter(
                "swarmguard_dns_sinkhole_alerts_total",
                "Alerts for sinkhole hits, by outcome.",
                "outcome",
            ),
            domains: metrics.gauge_vec(
                "swarmguard_dns_sinkhole_domains",
                "Domains the sinkhole answers for, by source.",
                &["source"],
            ),
            dropped: counter(
                "swarmguard_dns_sinkhole_dropped_total",
                "Domains not sinkholed: decisions past dns.max_domains, bad blocklist lines.",
                "reason",
            ),
        }
    }
}

/// What the rest of the agent holds of the running sinkhole.
#[derive(Debug, Clone)]
pub struct SinkholeHandle {
    shared: Arc<server::Shared>,
    udp: SocketAddr,
    tcp: SocketAddr,
}

impl SinkholeHandle {
    /// Replaces the decided domains by `decided` (each with its `until`); blocklist
    /// entries stay. Takes effect for the next query. Past `dns.max_domains`, the
    /// earliest-expiring are left out (and counted).
    pub fn set(&self, decided: impl IntoIterator<Item = (Domain, SystemTime)>) {
        let now = SystemTime::now();
        let mut slot = self
            .shared
            .set
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (set, left_out) = slot.with_decisions(decided, self.shared.max_domains, now);
        if left_out > 0 {
            tracing::warn!(left_out, "more domain decisions than dns.max_domains");
            self.shared
                .metrics
                .dropped
                .with_label_values(&["max_domains"])
                .inc_by(left_out as u64);
        }
        let (decided, _) = set.len();
        self.shared
            .metrics
            .domains
            .with_label_values(&["decision"])
            .set(decided as i64);
        *slot = Arc::new(set);
    }

    /// [`set`](Self::set) from the agent's live decisions: every decision on a domain whose
    /// action is `sinkhole` or `block` (a domain cannot be blocked any other way);
    /// `alert-only` ones and address subjects are not the sinkhole's business.
    pub fn set_decisions<'a>(&self, decisions: impl IntoIterator<Item = &'a Decision>) {
        self.set(decisions.into_iter().filter_map(|decision| {
            match (&decision.subject, decision.action) {
                (Subject::Domain(domain), DecisionAction::Sinkhole | DecisionAction::Block) => {
                    Some((domain.clone(), decision.until))
                }
                _ => None,
            }
        }));
    }

    /// Whether `name` would be sinkholed now, and why.
    pub fn matches(&self, name: &str) -> Option<(String, MatchSource)> {
        self.shared
            .current()
            .lookup(name, SystemTime::now())
            .map(|(domain, source)| (domain.to_owned(), source))
    }

    /// The bound UDP address (tests bind port 0).
    pub fn udp_addr(&self) -> SocketAddr {
        self.udp
    }

    /// The bound TCP address.
    pub fn tcp_addr(&self) -> SocketAddr {
        self.tcp
    }
}

/// Starts the sinkhole when `dns.listen` is set: loads the blocklists (bad lines are logged
/// as `FILE:LINE` and skipped), binds, and serves until `stop` turns true.
pub async fn start(
    config: &Config,
    metrics: &Metrics,
    alerts: mpsc::Sender<Alert>,
    stop: watch::Receiver<bool>,
) -> Result<Option<SinkholeHandle>, SinkholeError> {
    if config.dns.listen.is_none() {
        return Ok(None);
    }
    start_with(&config.dns, metrics, alerts, stop)
        .await
        .map(Some)
}

/// [`start`] for a `[dns]` table on its own (tests, benchmarks). `config.listen` must be
/// set.
pub async fn start_with(
    config: &DnsConfig,
    metrics: &Metrics,
    alerts: mpsc::Sender<Alert>,
    mut stop: watch::Receiver<bool>,
) -> Result<SinkholeHandle, SinkholeError> {
    let listen = config.listen.ok_or(SinkholeError::NoListen)?;
    if config.upstream.is_empty() {
        return Err(SinkholeError::NoUpstream);
    }
    let dns_metrics = DnsMetrics::new(metrics);
    let list = blocklist::load(&config.blocklists, config.max_domains);
    for err in &list.errors {
        tracing::warn!("{err}");
    }
    dns_metrics
        .dropped
        .with_label_values(&["bad_line"])
        .inc_by(list.errors.len() as u64);
    dns_metrics
        .domains
        .with_label_values(&["blocklist"])
        .set(list.domains.len() as i64);
    dns_metrics.domains.with_label_values(&["decision"]).set(0);
    tracing::info!(
        files = list.files,
        domains = list.domains.len(),
        errors = list.errors.len(),
        "domain blocklists loaded"
    );

    let (udp, tcp) = bind(listen).await?;
    let udp_addr = udp.local_addr().map_err(|source| SinkholeError::Bind {
        addr: listen,
        proto: "udp",
        source,
    })?;
    let tcp_addr = tcp.local_addr().map_err(|source| SinkholeError::Bind {
        addr: listen,
        proto: "tcp",
        source,
    })?;

    let shared = Arc::new(server::Shared {
        set: RwLock::new(Arc::new(DomainSet::with_blocklist(list.domains))),
        answer: server::SinkholeAnswer {
            ipv4: config.sinkhole_ipv4,
            ipv6: config.sinkhole_ipv6,
            ttl: config.answer_ttl,
        },
        limiter: Mutex::new(hits::HitLimiter::new(
            config.alert_interval,
            config.max_alert_pairs,
        )),
        labels: Mutex::new(hits::DomainLabels::new(MAX_HIT_LABELS)),
        alerts,
        metrics: dns_metrics,
        max_domains: config.max_domains,
    });
    let handler = server::Handler {
        shared: shared.clone(),
        forward: forwarder(config)?,
        inflight: Semaphore::new(config.max_inflight.max(1)),
    };
    let mut dns = Server::new(handler);
    dns.register_socket(udp);
    dns.register_listener(tcp, server::UPSTREAM_TIMEOUT * 2, 64);
    tokio::spawn(async move {
        let _ = stop.wait_for(|stop| *stop).await;
        if let Err(err) = dns.shutdown_gracefully().await {
            tracing::warn!(%err, "DNS sinkhole stopped with an error");
        }
    });
    tracing::info!(udp = %udp_addr, tcp = %tcp_addr, upstream = ?config.upstream, "DNS sinkhole listening");
    Ok(SinkholeHandle {
        shared,
        udp: udp_addr,
        tcp: tcp_addr,
    })
}

/// Binds UDP, then TCP on the same port. With port 0 the kernel picks the UDP port, which
/// may be taken for TCP; a few tries find one free for both.
async fn bind(listen: SocketAddr) -> Result<(UdpSocket, TcpListener), SinkholeError> {
    let tries = if listen.port() == 0 { 8 } else { 1 };
    let mut attempt = 0;
    loop {
        attempt += 1;
        let udp = UdpSocket::bind(listen)
            .await
            .map_err(|source| SinkholeError::Bind {
                addr: listen,
                proto: "udp",
                source,
            })?;
        let port = udp.local_addr().map(|a| a.port()).unwrap_or(listen.port());
        let tcp_addr = SocketAddr::new(listen.ip(), port);
        match TcpListener::bind(tcp_addr).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(source) if attempt >= tries => {
                return Err(SinkholeError::Bind {
                    addr: tcp_addr,
                    proto: "tcp",
                    source,
                });
            }
            Err(_) => continue,
        }
    }
}

/// hickory's forwarding zone handler for the root zone, to the configured upstreams.
fn forwarder(config: &DnsConfig) -> Result<Catalog, SinkholeError> {
    let name_servers = config
        .upstream
        .iter()
        .map(|addr| {
            let mut udp = ConnectionConfig::udp();
            udp.port = addr.port();
            let mut tcp = ConnectionConfig::tcp();
            tcp.port = addr.port();
            NameServerConfig::new(addr.ip(), true, vec![udp, tcp])
        })
        .collect();
    let mut options = ResolverOpts::default();
    options.cache_size = config.cache_size;
    options.timeout = server::UPSTREAM_TIMEOUT;
    // Queries arrive fully qualified; never append search domains to them.
    options.ndots = 0;
    let handler = ForwardZoneHandler::builder_tokio(ForwardConfig {
        name_servers,
        options: Some(options),
    })
    .build()
    .map_err(SinkholeError::Forwarder)?;
    let mut catalog = Catalog::new();
    catalog.upsert(LowerName::from(Name::root()), vec![Arc::new(handler)]);
    Ok(catalog)
}
