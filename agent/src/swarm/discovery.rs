//! Seed discovery: where a starting agent finds its first peers. Either the static list
//! from `gossip.seeds`, or DNS SRV records (`gossip.discovery = "dns"`): the name in
//! `gossip.discovery_name` (e.g. `_swarmguard._udp.example.gov`) is resolved with
//! hickory-resolver — through `/etc/resolv.conf`, or the server in
//! `gossip.discovery_resolver` — and its targets' addresses become the seed list.
//!
//! [`Discovery::spawn`] refreshes the list every `gossip.discovery_interval` and publishes
//! it on a `watch` channel, which the QUIC node reads whenever it needs seeds. A failed
//! refresh keeps the last good list (a DNS outage must not make the agent forget its swarm)
//! and is counted; [`resolve_seeds`] is the one-shot lookup both use.
//!
//! The ordering of the list follows RFC 2782 loosely: lower priority first, then higher
//! weight; within that, the order of the answer. Weighted random selection is pointless
//! here, since the node contacts several seeds anyway.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{Name, RData, RecordType};
use prometheus::{IntCounterVec, IntGauge};
use tokio::sync::watch;

use crate::api::Metrics;

/// At most this many seeds come out of one lookup; a zone listing thousands of agents
/// would otherwise fill the node's dial queue for nothing.
pub const MAX_SEEDS: usize = 64;
/// SRV targets whose addresses are looked up separately (not in the additional section),
/// at most, per refresh.
const MAX_TARGET_LOOKUPS: usize = 16;
/// Default for `gossip.discovery_interval`.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(300);

/// How the seed list is found (`gossip.discovery`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum DiscoveryMode {
    /// Only `gossip.seeds`.
    #[default]
    Static,
    /// SRV records, see [`DnsDiscovery`].
    Dns(DnsDiscovery),
}

/// `gossip.discovery = "dns"` and its keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsDiscovery {
    /// The SRV name, e.g. `_swarmguard._udp.example.gov`, fully qualified (trailing dot).
    pub name: Name,
    /// The DNS server to ask instead of the system's (`/etc/resolv.conf`).
    pub resolver: Option<SocketAddr>,
    /// How often the records are looked up again.
    pub interval: Duration,
}

/// Why a lookup produced no seeds.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// The system resolver configuration could not be read.
    #[error("cannot read the system resolver configuration: {0}")]
    SystemConf(String),
    /// The SRV lookup failed (timeout, refused, no such name...).
    #[error("SRV lookup of {name} failed: {message}")]
    Lookup { name: String, message: String },
    /// The name has SRV records, but none of their targets has an address.
    #[error("SRV records of {0} name no target with an address")]
    NoAddresses(String),
}

/// The Prometheus metrics of discovery.
#[derive(Debug, Clone)]
pub struct DiscoveryMetrics {
    /// `swarmguard_discovery_lookups_total{result="ok"|"failed"}`.
    lookups: IntCounterVec,
    /// `swarmguard_discovery_seeds`: seeds in the current list.
    seeds: IntGauge,
}

impl DiscoveryMetrics {
    pub fn new(metrics: &Metrics) -> DiscoveryMetrics {
        DiscoveryMetrics {
            lookups: metrics.counter_vec(
                "swarmguard_discovery_lookups_total",
                "SRV lookups for seed discovery, by result.",
                &["result"],
            ),
            seeds: metrics.gauge(
                "swarmguard_discovery_seeds",
                "Seeds in the list the last successful discovery produced.",
            ),
        }
    }
}

/// Resolves `settings.name` once: SRV records, then their targets' addresses (from the
/// additional section when the server sent them, else by A/AAAA lookups). Deduplicated,
/// ordered by priority then weight, at most [`MAX_SEEDS`].
pub async fn resolve_seeds(settings: &DnsDiscovery) -> Result<Vec<SocketAddr>, DiscoveryError> {
    let resolver = resolver(settings.resolver)?;
    let name_text = settings.name.to_string();
    let lookup_error = |err: &dyn std::fmt::Display| DiscoveryError::Lookup {
        name: name_text.clone(),
        message: err.to_string(),
    };
    let lookup = resolver
        .lookup(settings.name.clone(), RecordType::SRV)
        .await
        .map_err(|err| lookup_error(&err))?;
    let mut targets: Vec<(u16, u16, Name, u16)> = lookup
        .answers()
        .iter()
        .filter_map(|record| match &record.data {
            RData::SRV(srv) => Some((srv.priority, srv.weight, srv.target.clone(), srv.port)),
            _ => None,
        })
        .collect();
    if targets.is_empty() {
        return Err(lookup_error(&"no SRV records"));
    }
    // Stable: records of equal rank keep the server's order.
    targets.sort_by_key(|(priority, weight, ..)| (*priority, std::cmp::Reverse(*weight)));
    let glue: Vec<(Name, IpAddr)> = lookup
        .additionals()
        .iter()
        .filter_map(|record| Some((record.name.clone(), record.data.ip_addr()?)))
        .collect();

    let mut seeds = Vec::new();
    let mut seen = HashSet::new();
    let mut lookups = 0;
    for (_, _, target, port) in targets {
        // "." as target means "no service here" (RFC 2782).
        if target.is_root() {
            continue;
        }
        let mut addresses: Vec<IpAddr> = glue
            .iter()
            .filter(|(name, _)| *name == target)
            .map(|(_, ip)| *ip)
            .collect();
        if addresses.is_empty() && lookups < MAX_TARGET_LOOKUPS {
            lookups += 1;
            match resolver.lookup_ip(target.clone()).await {
                Ok(ips) => addresses.extend(ips.iter()),
                Err(err) => tracing::debug!(%target, %err, "SRV target has no address"),
            }
        }
        for ip in addresses {
            let seed = SocketAddr::new(ip, port);
            if seen.insert(seed) {
                seeds.push(seed);
            }
        }
        if seeds.len() >= MAX_SEEDS {
            seeds.truncate(MAX_SEEDS);
            break;
        }
    }
    if seeds.is_empty() {
        return Err(DiscoveryError::NoAddresses(name_text));
    }
    Ok(seeds)
}

/// A resolver for one refresh. Built anew each time, so that an edited `/etc/resolv.conf`
/// is read again and the refresh interval, not the records' TTL, says how fresh the list
/// is (the resolver's cache lives only for this refresh).
fn resolver(server: Option<SocketAddr>) -> Result<TokioResolver, DiscoveryError> {
    let provider = TokioRuntimeProvider::default();
    let builder = match server {
        Some(addr) => {
            let mut udp = ConnectionConfig::udp();
            udp.port = addr.port();
            let mut tcp = ConnectionConfig::tcp();
            tcp.port = addr.port();
            let config = ResolverConfig::from_name_servers(vec![NameServerConfig::new(
                addr.ip(),
                true,
                vec![udp, tcp],
            )]);
            TokioResolver::builder_with_config(config, provider)
        }
        None => TokioResolver::builder(provider)
            .map_err(|err| DiscoveryError::SystemConf(err.to_string()))?,
    };
    builder
        .build()
        .map_err(|err| DiscoveryError::SystemConf(err.to_string()))
}

/// The running discovery task's output.
#[derive(Debug)]
pub struct Discovery;

impl Discovery {
    /// Looks the seeds up now and then every `settings.interval` until `stop` turns true.
    /// The receiver holds the latest good list (empty until the first lookup succeeds);
    /// `changed()` fires whenever the list is different.
    pub fn spawn(
        settings: DnsDiscovery,
        metrics: &Metrics,
        mut stop: watch::Receiver<bool>,
    ) -> watch::Receiver<Vec<SocketAddr>> {
        let metrics = DiscoveryMetrics::new(metrics);
        let (tx, rx) = watch::channel(Vec::new());
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(settings.interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticker.tick() => {}
                    _ = stop.wait_for(|stop| *stop) => break,
                }
                match resolve_seeds(&settings).await {
                    Ok(seeds) => {
                        metrics.lookups.with_label_values(&["ok"]).inc();
                        metrics.seeds.set(seeds.len() as i64);
                        tx.send_if_modified(|current| {
                            if *current == seeds {
                                return false;
                            }
                            tracing::info!(name = %settings.name, seeds = seeds.len(), "seed list from DNS");
                            *current = seeds;
                            true
                        });
                    }
                    Err(err) => {
                        metrics.lookups.with_label_values(&["failed"]).inc();
                        tracing::warn!(%err, "seed discovery failed; keeping the last list");
                    }
                }
            }
        });
        rx
    }
}

/// Starts discovery when the configuration asks for DNS (`gossip.discovery = "dns"`);
/// `None` with static seeds.
pub fn spawn_for(
    config: &crate::config::Config,
    metrics: &Metrics,
    stop: watch::Receiver<bool>,
) -> Option<watch::Receiver<Vec<SocketAddr>>> {
    match &config.discovery {
        DiscoveryMode::Static => None,
        DiscoveryMode::Dns(settings) => Some(Discovery::spawn(settings.clone(), metrics, stop)),
    }
}
