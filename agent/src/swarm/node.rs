//! The running swarm node: the thin tokio glue around the sans-IO [`Swarm`] core. It owns
//! the QUIC endpoint on the agent's one UDP socket, admits peers by credential
//! ([`super::admission`]), turns the core's [`Transmit`]s into QUIC datagrams (SWIM) and
//! unidirectional streams (signals, anti-entropy; one message per stream), persists live
//! signals in the store, and hands events to the decision stage through [`SwarmLink`].
//!
//! [`start`] is the one entry point: it returns `None` when no membership credential is
//! configured or present (the agent runs standalone).
//!
//! One task owns the core; connection tasks (handshake, readers, one writer per
//! connection) talk to it through one bounded channel. Every queue is bounded and every
//! drop is counted under `swarmguard_swarm_dropped_total{reason}`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use prometheus::{Gauge, IntGauge};
use swarmguard_identity::membership::Role;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::admission::{self, Admission, CLOSE_EXPELLED, CLOSE_SHUTDOWN, Rejection};
use super::credential::{self, IdentityError, MAX_CREDENTIAL_LEN};
use super::link::{EVENT_QUEUE, MemberState, MemberView, PUBLISH_QUEUE, SwarmLink, SwarmView};
use super::metrics::SwarmMetrics;
use super::peer::{Peer, PeerId};
use super::protocol::{Channel, Event, Swarm, SwarmConfig, Transmit};
use super::signal::{Signal, SignalBody};
use super::stats::DropReason;
use super::tls::{self, TlsError};
use crate::api::Metrics;
use crate::config::Config;
use crate::store::{Store, StoredSignal};

/// Messages waiting for one connection's writer; past it they are dropped (`outbox_full`).
pub const CONNECTION_QUEUE: usize = 256;
/// Messages waiting for a connection that is being set up.
pub const PENDING_PER_PEER: usize = 64;
/// Messages from all connections waiting for the core.
pub const INBOUND_QUEUE: usize = 4096;
/// Unidirectional streams a peer may have open at once (one message each).
pub const MAX_STREAMS: u32 = 64;
/// How long the handshake and the credential exchange may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one message stream may take to arrive.
const STREAM_TIMEOUT: Duration = Duration::from_secs(30);
/// How long after a failed connection attempt an address is not dialled again.
const DIAL_BACKOFF: Duration = Duration::from_secs(1);

/// Why the node could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("gossip socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    #[error("trusted issuer: {0}")]
    Issuer(#[from] swarmguard_identity::did::DidError),
    #[error(
        "gossip.advertise is needed: the listen address {0} is unspecified and there is no seed to find a route to"
    )]
    NoAdvertise(SocketAddr),
}

/// A test seam standing in for a firewall between groups of nodes: messages to and from
/// blocked addresses are dropped as if the network lost them.
#[derive(Debug, Clone, Default)]
pub struct Firewall(Arc<RwLock<HashSet<SocketAddr>>>);

impl Firewall {
    pub fn block(&self, addr: SocketAddr) {
        if let Ok(mut set) = self.0.write() {
            set.insert(addr);
        }
    }

    pub fn clear(&self) {
        if let Ok(mut set) = self.0.write() {
            set.clear();
        }
    }

    fn blocks(&self, addr: &SocketAddr) -> bool {
        self.0.read().is_ok_and(|set| set.contains(addr))
    }
}

/// What [`start_with`] may change besides the configuration (tests and benchmarks).
#[derive(Debug, Default)]
pub struct NodeOptions {
    /// The core's settings; by default derived from `[gossip]`.
    pub swarm: Option<SwarmConfig>,
    pub firewall: Option<Firewall>,
    /// Seeds found by DNS discovery, joined through (with `gossip.seeds`) as they change.
    pub seeds: Option<watch::Receiver<Vec<SocketAddr>>>,
}

/// The running node, for the daemon to wait on.
#[derive(Debug)]
pub struct NodeTask {
    /// Where the node listens (and, with one socket, speaks from).
    pub addr: SocketAddr,
    /// This agent's identity.
    pub peer: PeerId,
    handle: JoinHandle<()>,
}

impl NodeTask {
    /// Waits until the node has left the swarm and closed its endpoint (after `stop`).
    pub async fn join(self) {
        let _ = self.handle.await;
    }
}

/// Starts the node on `socket` unless the agent has no membership credential.
pub fn start(
    config: &Config,
    socket: UdpSocket,
    metrics: &Metrics,
    store: Arc<Store>,
    stop: watch::Receiver<bool>,
) -> Result<Option<(SwarmLink, NodeTask)>, NodeError> {
    start_with(config, socket, metrics, store, stop, NodeOptions::default())
}

/// [`start`], with options.
pub fn start_with(
    config: &Config,
    socket: UdpSocket,
    metrics: &Metrics,
    store: Arc<Store>,
    stop: watch::Receiver<bool>,
    options: NodeOptions,
) -> Result<Option<(SwarmLink, NodeTask)>, NodeError> {
    let gossip = &config.gossip;
    let credential_path = gossip.credential_path(&config.state_dir);
    let Some(own_jwt) = credential::read_credential(&credential_path)? else {
        tracing::warn!(
            credential = %credential_path.display(),
            "no membership credential: running standalone, without the swarm"
        );
        return Ok(None);
    };
    let key = credential::load_or_create_key(&config.state_dir)?;
    let me = key.peer_id();
    if let Err(problem) = issued_to(&own_jwt, &me) {
        // Every peer will refuse it (`key_mismatch`); say why here, where it can be fixed.
        tracing::error!(
            credential = %credential_path.display(),
            did = %me,
            "{problem}: every peer will refuse this agent; request a credential for this \
             DID (swarmctl credential did / request)"
        );
    }
    let http = admission::http_client()?;
    let admission = Admission::new(
        &gossip.trusted_issuers,
        gossip.status_max_age,
        http.clone(),
        metrics,
    )?;
    if gossip.trusted_issuers.is_empty() {
        tracing::warn!("gossip.trusted_issuers is empty: no peer can be admitted");
    }

    let mut transport = quinn::TransportConfig::default();
    transport
        .max_concurrent_bidi_streams(0u32.into())
        .max_concurrent_uni_streams(MAX_STREAMS.into())
        .datagram_receive_buffer_size(Some(256 * 1024))
        .datagram_send_buffer_size(256 * 1024)
        .keep_alive_interval(Some(Duration::from_secs(5)))
        .max_idle_timeout(Some(
            quinn::IdleTimeout::try_from(Duration::from_secs(15)).map_err(std::io::Error::other)?,
        ));
    let transport = Arc::new(transport);
    let mut server = tls::server_config(&key.pkcs8)?;
    server.transport_config(transport.clone());
    let mut client = tls::client_config(&key.pkcs8)?;
    client.transport_config(transport);
    socket.set_nonblocking(true)?;
    let local = socket.local_addr()?;
    let mut endpoint = quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        Some(server),
        socket,
        Arc::new(quinn::TokioRuntime),
    )?;
    endpoint.set_default_client_config(client);

    let advertise = advertise_addr(gossip.advertise, local, &gossip.seeds)?;
    let mut swarm_config = options.swarm.unwrap_or_else(|| SwarmConfig {
        fanout: gossip.fanout,
        interval: gossip.interval,
        ..SwarmConfig::default()
    });
    // QUIC datagrams must fit one packet; larger SWIM messages fall back to a stream.
    swarm_config.max_datagram_size = swarm_config.max_datagram_size.min(1100);
    let clock = Clock::new();
    let now = clock.now();
    let mut swarm = Swarm::new(swarm_config.clone(), key.key, advertise, now);
    let restored = restore(&mut swarm, &store, now);
    swarm.join(now, &gossip.seeds);
    tracing::info!(
        did = %me, listen = %local, %advertise, seeds = gossip.seeds.len(), restored,
        "joining the swarm"
    );

    let (publish_tx, publish_rx) = mpsc::channel(PUBLISH_QUEUE);
    let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
    let own_expiry = jwt_valid_until(&own_jwt);
    let own_role = jwt_role(&own_jwt);
    let (view_tx, view_rx) = watch::channel(SwarmView {
        me: Some(me),
        credential_expires: own_expiry,
        role: own_role.clone(),
        members: Vec::new(),
    });
    let (inbound_tx, inbound_rx) = mpsc::channel(INBOUND_QUEUE);
    let swarm_metrics = match SwarmMetrics::register(metrics.registry()) {
        Ok(registered) => Some(registered),
        Err(err) => {
            tracing::debug!(%err, "swarm metrics not registered");
            None
        }
    };
    let node = Node {
        swarm,
        endpoint,
        admission,
        http,
        clock,
        me,
        own: Arc::new(RwLock::new(own_jwt)),
        own_expiry,
        own_role,
        credential_path,
        identity_url: gossip.identity_url.clone(),
        renew_before: gossip.renew_before,
        pkcs8: key.pkcs8,
        max_connections: gossip.max_connections,
        max_message_size: swarm_config.max_message_size,
        max_members: swarm_config.max_members,
        firewall: options.firewall.unwrap_or_default(),
        conns: HashMap::new(),
        pending: HashMap::new(),
        backoff: HashMap::new(),
        handshakes: 0,
        members: HashMap::new(),
        inbound_tx,
        events_tx,
        view_tx,
        store,
        swarm_metrics,
        connections: metrics.gauge("swarmguard_swarm_connections", "Admitted QUIC connections."),
        days_left: metrics.register(
            Gauge::new(
                "swarmguard_swarm_credential_days_left",
                "Days until this agent's membership credential expires.",
            )
            .expect("static metric definition"),
        ),
        refreshing: false,
    };
    let seeds = Seeds {
        configured: gossip.seeds.clone(),
        discovered: options.seeds,
    };
    let handle = tokio::spawn(node.run(
        inbound_rx,
        publish_rx,
        stop,
        config.gossip.status_refresh,
        seeds,
    ));
    Ok(Some((
        SwarmLink {
            publish: publish_tx,
            events: events_rx,
            view: view_rx,
        },
        NodeTask {
            addr: local,
            peer: me,
            handle,
        },
    )))
}

/// The address members reach us at: configured, the listen address when specific, or the
/// source address the kernel picks towards the first seed (nothing is sent to find it).
fn advertise_addr(
    configured: Option<SocketAddr>,
    local: SocketAddr,
    seeds: &[SocketAddr],
) -> Result<SocketAddr, NodeError> {
    if let Some(addr) = configured {
        return Ok(addr);
    }
    if !local.ip().is_unspecified() {
        return Ok(local);
    }
    let seed = seeds.first().ok_or(NodeError::NoAdvertise(local))?;
    let probe = UdpSocket::bind(SocketAddr::new(local.ip(), 0))?;
    probe.connect(seed)?;
    Ok(SocketAddr::new(probe.local_addr()?.ip(), local.port()))
}

/// Loads the signals the store kept into the core.
fn restore(swarm: &mut Swarm, store: &Store, now: SystemTime) -> usize {
    match store.signals() {
        Ok(stored) => swarm.restore(
            now,
            stored
                .into_iter()
                .filter_map(|stored| Signal::decode(&stored.body).ok()),
        ),
        Err(err) => {
            tracing::warn!(%err, "cannot read stored signals; starting without them");
            0
        }
    }
}

/// `validUntil` of a VC-JWT, read without verifying (for our own credential's expiry).
pub fn jwt_valid_until(jwt: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339(jwt_payload(jwt)?.get("validUntil")?.as_str()?).ok()
}

/// The role (`credentialSubject.role`) a membership VC-JWT grants, read without
/// verifying: for our own credential, which identityd issued to us and which every peer
/// verifies anyway.
pub fn jwt_role(jwt: &str) -> Option<String> {
    let payload = jwt_payload(jwt)?;
    Some(
        payload
            .get("credentialSubject")?
            .get("role")?
            .as_str()?
            .to_owned(),
    )
}

/// Whether our own membership VC-JWT was issued to our key (`credentialSubject.id`),
/// read without verifying: a credential copied from another agent fails here.
fn issued_to(jwt: &str, me: &PeerId) -> Result<(), String> {
    let subject = jwt_payload(jwt).and_then(|payload| {
        Some(
            payload
                .get("credentialSubject")?
                .get("id")?
                .as_str()?
                .to_owned(),
        )
    });
    match subject {
        Some(subject) if subject == me.to_did() => Ok(()),
        Some(subject) => Err(format!(
            "the membership credential was issued to {subject}, not to this agent"
        )),
        None => Err("the membership credential names no subject".to_owned()),
    }
}

fn jwt_payload(jwt: &str) -> Option<serde_json::Value> {
    use base64::Engine;
    let payload = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// A clock that does not step: the wall time at start plus monotonic time since.
#[derive(Debug, Clone, Copy)]
struct Clock {
    wall: SystemTime,
    start: Instant,
}

impl Clock {
    fn new() -> Clock {
        Clock {
            wall: SystemTime::now(),
            start: Instant::now(),
        }
    }

    fn now(&self) -> SystemTime {
        self.wall + self.start.elapsed()
    }

    fn instant(&self, at: SystemTime) -> Instant {
        self.start + at.duration_since(self.wall).unwrap_or_default()
    }
}

/// The seeds to join through: configured ones and, with DNS discovery, those found.
struct Seeds {
    configured: Vec<SocketAddr>,
    discovered: Option<watch::Receiver<Vec<SocketAddr>>>,
}

impl Seeds {
    /// The whole list each time discovery finds a different one; pending without
    /// discovery (or once it stopped).
    async fn changed(&mut self) -> Option<Vec<SocketAddr>> {
        let Some(discovered) = &mut self.discovered else {
            return std::future::pending().await;
        };
        if discovered.changed().await.is_err() {
            self.discovered = None;
            return None;
        }
        let mut all = self.configured.clone();
        for seed in discovered.borrow_and_update().iter() {
            if !all.contains(seed) {
                all.push(*seed);
            }
        }
        Some(all)
    }
}

/// An admitted connection.
#[derive(Debug)]
struct Link {
    conn: quinn::Connection,
    peer: PeerId,
    role: Role,
    /// The credential it presented, re-checked at each status refresh.
    jwt: String,
    /// Messages for its writer.
    streams: mpsc::Sender<Vec<u8>>,
}

/// What connection tasks tell the node.
enum Inbound {
    Admitted {
        conn: quinn::Connection,
        peer: PeerId,
        role: Role,
        jwt: String,
    },
    Failed {
        addr: SocketAddr,
        dialed: bool,
    },
    Message {
        addr: SocketAddr,
        peer: PeerId,
        bytes: Vec<u8>,
    },
    Dropped(DropReason),
    Closed {
        addr: SocketAddr,
        id: usize,
    },
    Refreshed {
        renewed: Option<String>,
    },
}

struct Node {
    swarm: Swarm,
    endpoint: quinn::Endpoint,
    admission: Arc<Admission>,
    http: reqwest::Client,
    clock: Clock,
    me: PeerId,
    /// Our credential, as presented in handshakes (replaced on renewal).
    own: Arc<RwLock<String>>,
    own_expiry: Option<SystemTime>,
    /// The role our credential grants (`operator` may publish swarm-wide decisions).
    own_role: Option<String>,
    credential_path: std::path::PathBuf,
    identity_url: Option<String>,
    renew_before: Duration,
    pkcs8: Vec<u8>,
    max_connections: usize,
    max_message_size: usize,
    max_members: usize,
    firewall: Firewall,
    conns: HashMap<SocketAddr, Link>,
    /// Messages for addresses being dialled.
    pending: HashMap<SocketAddr, VecDeque<Transmit>>,
    /// Addresses whose last dial failed, and when they may be dialled again.
    backoff: HashMap<SocketAddr, Instant>,
    handshakes: usize,
    members: HashMap<PeerId, MemberView>,
    inbound_tx: mpsc::Sender<Inbound>,
    events_tx: mpsc::Sender<Event>,
    view_tx: watch::Sender<SwarmView>,
    store: Arc<Store>,
    swarm_metrics: Option<SwarmMetrics>,
    connections: IntGauge,
    days_left: Gauge,
    refreshing: bool,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").field("me", &self.me).finish()
    }
}

impl Node {
    async fn run(
        mut self,
        mut inbound: mpsc::Receiver<Inbound>,
        mut publish: mpsc::Receiver<SignalBody>,
        mut stop: watch::Receiver<bool>,
        refresh_every: Duration,
        mut seeds: Seeds,
    ) {
        let mut refresh = tokio::time::interval(refresh_every);
        refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        self.credential_checks();
        loop {
            self.flush();
            let deadline = self
                .swarm
                .poll_timeout()
                .map(|at| self.clock.instant(at))
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
            tokio::select! {
                _ = stop.wait_for(|stop| *stop) => break,
                Some(message) = inbound.recv() => {
                    self.handle(message);
                    // Drain what else is ready before the next flush: fewer wake-ups.
                    for _ in 0..64 {
                        match inbound.try_recv() {
                            Ok(message) => self.handle(message),
                            Err(_) => break,
                        }
                    }
                }
                Some(body) = publish.recv() => self.publish(body),
                _ = tokio::time::sleep_until(deadline) => {
                    let now = self.clock.now();
                    self.swarm.handle_timeout(now);
                }
                Some(incoming) = self.endpoint.accept() => self.accept(incoming),
                _ = refresh.tick() => self.start_refresh(),
                Some(all) = seeds.changed() => {
                    let now = self.clock.now();
                    tracing::info!(seeds = all.len(), "joining through the discovered seeds");
                    self.swarm.join(now, &all);
                }
            }
        }
        self.shutdown().await;
    }

    /// Sends what the core wants sent, hands its events on, refreshes metrics and view.
    fn flush(&mut self) {
        while let Some(transmit) = self.swarm.poll_transmit() {
            self.dispatch(transmit);
        }
        let mut changed = false;
        while let Some(event) = self.swarm.poll_event() {
            changed |= self.note(&event);
            match self.events_tx.try_send(event) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    self.swarm.record_drop(DropReason::EventsFull)
                }
                // Nobody listens (a test, or the daemon stopping): nothing to count.
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
        if changed {
            self.publish_view();
        }
        if let Some(metrics) = &mut self.swarm_metrics {
            metrics.observe(&self.swarm);
        }
        self.connections.set(self.conns.len() as i64);
    }

    /// Logs, persists and tracks membership for one event; whether the view changed.
    fn note(&mut self, event: &Event) -> bool {
        let now = SystemTime::now();
        match event {
            Event::SignalReceived(signal) => {
                tracing::info!(
                    origin = %signal.origin(), seq = signal.seq(), subject = %signal.subject(),
                    rule = %signal.reason().rule, "signal received"
                );
                self.persist(signal);
                false
            }
            Event::MemberUp(member) => {
                tracing::info!(peer = %member.peer, addr = %member.addr, "member up");
                self.set_member(member.peer, member.addr, MemberState::Alive, now);
                true
            }
            Event::MemberSuspect(member) => {
                tracing::info!(peer = %member.peer, addr = %member.addr, "member suspect");
                self.set_member(member.peer, member.addr, MemberState::Suspect, now);
                true
            }
            Event::MemberDown(member) => {
                tracing::warn!(peer = %member.peer, addr = %member.addr, "member down");
                self.set_member(member.peer, member.addr, MemberState::Down, now);
                true
            }
            Event::SignalsWithdrawn { origin, count } => {
                tracing::warn!(peer = %origin, count, "signals of an expelled member withdrawn");
                false
            }
            Event::Isolated => {
                tracing::warn!("every known member is down");
                false
            }
            Event::Joined(identity) => {
                tracing::info!(addr = %identity.addr, "joined the swarm");
                false
            }
            Event::UnknownOrigin(_) => false,
        }
    }

    fn set_member(&mut self, peer: PeerId, addr: SocketAddr, state: MemberState, now: SystemTime) {
        if peer.is_unknown() {
            return;
        }
        if !self.members.contains_key(&peer) && self.members.len() >= self.max_members {
            return;
        }
        let role = self
            .conns
            .get(&addr)
            .filter(|link| link.peer == peer)
            .map(|link| link.role.as_str().to_owned());
        let entry = self.members.entry(peer).or_insert_with(|| MemberView {
            peer,
            addr,
            state,
            role: String::new(),
            last_seen: None,
        });
        entry.addr = addr;
        entry.state = state;
        if let Some(role) = role {
            entry.role = role;
        }
        if state != MemberState::Down {
            entry.last_seen = Some(now);
        }
    }

    fn publish_view(&self) {
        let mut members: Vec<MemberView> = self.members.values().cloned().collect();
        members.sort_by_key(|member| member.peer);
        self.view_tx.send_replace(SwarmView {
            me: Some(self.me),
            credential_expires: self.own_expiry,
            role: self.own_role.clone(),
            members,
        });
    }

    fn persist(&self, signal: &Signal) {
        let stored = StoredSignal {
            origin: signal.origin().to_did(),
            seq: signal.seq(),
            expires_at: signal.expires_at(),
            body: signal.as_bytes().to_vec(),
        };
        if let Err(err) = self.store.put_signal(&stored) {
            tracing::warn!(%err, "cannot persist a signal");
        }
    }

    fn publish(&mut self, body: SignalBody) {
        let now = self.clock.now();
        match self.swarm.publish(now, body) {
            Ok(signal) => {
                tracing::info!(seq = signal.seq(), subject = %signal.subject(), "signal published");
                self.persist(&signal);
            }
            Err(err) => tracing::warn!(%err, "signal not published"),
        }
    }

    /// Sends one transmit on the connection to its address, or dials it.
    fn dispatch(&mut self, transmit: Transmit) {
        if self.firewall.blocks(&transmit.to) {
            return;
        }
        if let Some(link) = self.conns.get(&transmit.to) {
            if transmit.peer.is_some_and(|peer| peer != link.peer) {
                // Another member holds that address now; the core learns it from SWIM.
                return;
            }
            match transmit.channel {
                Channel::Datagram => {
                    match link.conn.send_datagram(transmit.bytes.clone().into()) {
                        Ok(()) => {}
                        Err(quinn::SendDatagramError::TooLarge) => {
                            if link.streams.try_send(transmit.bytes).is_err() {
                                self.swarm.record_drop(DropReason::OutboxFull);
                            }
                        }
                        // A closing connection: SWIM tolerates the loss.
                        Err(_) => {}
                    }
                }
                Channel::Stream => {
                    if link.streams.try_send(transmit.bytes).is_err() {
                        self.swarm.record_drop(DropReason::OutboxFull);
                    }
                }
            }
            return;
        }
        let to = transmit.to;
        if let Some(queue) = self.pending.get_mut(&to) {
            if queue.len() < PENDING_PER_PEER {
                queue.push_back(transmit);
            } else {
                self.swarm.record_drop(DropReason::OutboxFull);
            }
            return;
        }
        let now = Instant::now();
        if self.backoff.get(&to).is_some_and(|until| *until > now) {
            return;
        }
        if self.conns.len() + self.handshakes >= self.max_connections {
            self.swarm.record_drop(DropReason::OutboxFull);
            return;
        }
        let connecting = match self.endpoint.connect(to, tls::SERVER_NAME) {
            Ok(connecting) => connecting,
            Err(err) => {
                tracing::debug!(%to, %err, "cannot dial");
                return;
            }
        };
        self.handshakes += 1;
        self.pending.insert(to, VecDeque::from([transmit]));
        let expected = self.pending[&to].front().and_then(|t| t.peer);
        tokio::spawn(self.handshake().complete(connecting, to, expected, true));
    }

    /// What a handshake task needs of the node.
    fn handshake(&self) -> Handshake {
        Handshake {
            own: self.own.clone(),
            admission: self.admission.clone(),
            clock: self.clock,
            inbound: self.inbound_tx.clone(),
        }
    }

    fn accept(&mut self, incoming: quinn::Incoming) {
        if self.conns.len() + self.handshakes >= self.max_connections {
            self.admission.reject(Rejection::Busy);
            incoming.refuse();
            return;
        }
        let from = incoming.remote_address();
        if self.firewall.blocks(&from) {
            incoming.ignore();
            return;
        }
        self.handshakes += 1;
        tokio::spawn(self.handshake().complete(incoming, from, None, false));
    }

    fn handle(&mut self, message: Inbound) {
        match message {
            Inbound::Message { addr, peer, bytes } => {
                if self.firewall.blocks(&addr) {
                    return;
                }
                let now = self.clock.now();
                self.swarm
                    .handle_message(now, Peer { id: peer, addr }, &bytes);
            }
            Inbound::Dropped(reason) => self.swarm.record_drop(reason),
            Inbound::Admitted {
                conn,
                peer,
                role,
                jwt,
            } => {
                self.handshakes = self.handshakes.saturating_sub(1);
                self.admitted(conn, peer, role, jwt);
            }
            Inbound::Failed { addr, dialed } => {
                self.handshakes = self.handshakes.saturating_sub(1);
                if dialed {
                    if let Some(queue) = self.pending.remove(&addr) {
                        tracing::debug!(%addr, dropped = queue.len(), "could not reach a member");
                    }
                    let now = Instant::now();
                    self.backoff.retain(|_, until| *until > now);
                    self.backoff.insert(addr, now + DIAL_BACKOFF);
                }
            }
            Inbound::Closed { addr, id } => {
                if self
                    .conns
                    .get(&addr)
                    .is_some_and(|link| link.conn.stable_id() == id)
                {
                    self.conns.remove(&addr);
                }
            }
            Inbound::Refreshed { renewed } => {
                self.refreshing = false;
                if let Some(jwt) = renewed {
                    self.own_expiry = jwt_valid_until(&jwt);
                    self.own_role = jwt_role(&jwt);
                    if let Ok(mut own) = self.own.write() {
                        *own = jwt;
                    }
                    self.publish_view();
                }
                self.recheck_members();
                self.credential_checks();
            }
        }
    }

    fn admitted(&mut self, conn: quinn::Connection, peer: PeerId, role: Role, jwt: String) {
        let addr = conn.remote_address();
        if !self.swarm.admit(peer) {
            self.admission.reject(Rejection::Busy);
            conn.close(Rejection::Busy.code().into(), b"busy");
            return;
        }
        tracing::info!(%peer, %addr, %role, "peer admitted");
        let (streams, queue) = mpsc::channel(CONNECTION_QUEUE);
        tokio::spawn(write_streams(conn.clone(), queue));
        tokio::spawn(read_datagrams(
            conn.clone(),
            addr,
            peer,
            self.inbound_tx.clone(),
        ));
        tokio::spawn(read_streams(
            conn.clone(),
            addr,
            peer,
            self.inbound_tx.clone(),
            self.max_message_size,
        ));
        let closed = conn.clone();
        let inbound = self.inbound_tx.clone();
        tokio::spawn(async move {
            let reason = closed.closed().await;
            tracing::debug!(%addr, %reason, "connection closed");
            let _ = inbound
                .send(Inbound::Closed {
                    addr,
                    id: closed.stable_id(),
                })
                .await;
        });
        if let Some(member) = self.members.get_mut(&peer) {
            member.role = role.as_str().to_owned();
        }
        self.conns.insert(
            addr,
            Link {
                conn,
                peer,
                role,
                jwt,
                streams,
            },
        );
        self.backoff.remove(&addr);
        if let Some(queue) = self.pending.remove(&addr) {
            for transmit in queue {
                self.dispatch(transmit);
            }
        }
    }

    /// Starts a status list refresh (and a renewal if due) unless one is running.
    fn start_refresh(&mut self) {
        if self.refreshing {
            return;
        }
        self.refreshing = true;
        let admission = self.admission.clone();
        let inbound = self.inbound_tx.clone();
        let clock = self.clock;
        let renewal = self.renewal_due().then(|| Renewal {
            http: self.http.clone(),
            url: self.identity_url.clone().unwrap_or_default(),
            own: self.own.read().map(|own| own.clone()).unwrap_or_default(),
            pkcs8: self.pkcs8.clone(),
            path: self.credential_path.clone(),
        });
        tokio::spawn(async move {
            admission.refresh(clock.now()).await;
            let renewed = match renewal {
                Some(renewal) => renewal.run().await,
                None => None,
            };
            let _ = inbound.send(Inbound::Refreshed { renewed }).await;
        });
    }

    fn renewal_due(&self) -> bool {
        self.identity_url.is_some()
            && self.own_expiry.is_some_and(|until| {
                until
                    .duration_since(self.clock.now())
                    .map_or(true, |left| left <= self.renew_before)
            })
    }

    /// Expels members whose credential a refresh shows revoked (or that expired).
    fn recheck_members(&mut self) {
        let now = self.clock.now();
        let mut expel = Vec::new();
        for link in self.conns.values() {
            if let Err(reason) = self.admission.recheck(&link.jwt, now) {
                expel.push((link.peer, reason));
            }
        }
        for (peer, reason) in expel {
            tracing::warn!(%peer, %reason, "member expelled");
            self.admission.expelled();
            self.swarm.expel(now, peer);
            self.conns.retain(|_, link| {
                if link.peer == peer {
                    link.conn
                        .close(CLOSE_EXPELLED.into(), reason.as_str().as_bytes());
                    false
                } else {
                    true
                }
            });
        }
    }

    /// Exports the days our credential has left, and warns when it is near its end.
    fn credential_checks(&self) {
        let Some(until) = self.own_expiry else {
            return;
        };
        let left = until
            .duration_since(self.clock.now())
            .map_or(0.0, |left| left.as_secs_f64());
        self.days_left.set(left / 86_400.0);
        if left <= self.renew_before.as_secs_f64() {
            tracing::warn!(
                days_left = format!("{:.1}", left / 86_400.0),
                renew = self.identity_url.is_some(),
                "the membership credential expires soon{}",
                if self.identity_url.is_some() {
                    ""
                } else {
                    ": set gossip.identity_url to renew it, or request a new one"
                }
            );
        }
    }

    async fn shutdown(mut self) {
        let now = self.clock.now();
        self.swarm.leave(now);
        while let Some(transmit) = self.swarm.poll_transmit() {
            if transmit.channel == Channel::Datagram {
                self.dispatch(transmit);
            }
        }
        // Give the leave datagrams a moment to go out before the close overtakes them.
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.endpoint.close(CLOSE_SHUTDOWN.into(), b"shutdown");
        let _ = tokio::time::timeout(Duration::from_secs(2), self.endpoint.wait_idle()).await;
        if let Err(err) = self.store.flush() {
            tracing::warn!(%err, "cannot flush the store");
        }
        tracing::info!("left the swarm");
    }
}

/// The credential exchange on a fresh connection, on either side.
struct Handshake {
    own: Arc<RwLock<String>>,
    admission: Arc<Admission>,
    clock: Clock,
    inbound: mpsc::Sender<Inbound>,
}

impl Handshake {
    /// Waits for the QUIC handshake (dialled or accepted), then runs admission; a
    /// handshake that fails or times out is reported so that queued messages are dropped.
    async fn complete<E>(
        self,
        connecting: impl std::future::IntoFuture<Output = Result<quinn::Connection, E>>,
        addr: SocketAddr,
        expected: Option<PeerId>,
        dialed: bool,
    ) {
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, connecting.into_future()).await {
            Ok(Ok(conn)) => self.run(conn, expected, dialed).await,
            _ => {
                let _ = self.inbound.send(Inbound::Failed { addr, dialed }).await;
            }
        }
    }

    async fn run(self, conn: quinn::Connection, expected: Option<PeerId>, dialed: bool) {
        let addr = conn.remote_address();
        let outcome = tokio::time::timeout(HANDSHAKE_TIMEOUT, self.exchange(&conn, expected))
            .await
            .unwrap_or(Err(Rejection::NoCredential));
        let message = match outcome {
            Ok((peer, role, jwt)) => Inbound::Admitted {
                conn,
                peer,
                role,
                jwt,
            },
            Err(reason) => {
                tracing::info!(%addr, %reason, "peer refused");
                conn.close(reason.code().into(), reason.as_str().as_bytes());
                Inbound::Failed { addr, dialed }
            }
        };
        let _ = self.inbound.send(message).await;
    }

    /// Presents our credential and checks theirs (`docs/protocol.md`, "Admission").
    async fn exchange(
        &self,
        conn: &quinn::Connection,
        expected: Option<PeerId>,
    ) -> Result<(PeerId, Role, String), Rejection> {
        let Some(key) = tls::peer_key(conn) else {
            self.admission.reject(Rejection::BadCertificate);
            return Err(Rejection::BadCertificate);
        };
        if expected.is_some_and(|expected| expected != key) {
            self.admission.reject(Rejection::WrongPeer);
            return Err(Rejection::WrongPeer);
        }
        let own = self.own.read().map(|own| own.clone()).unwrap_or_default();
        let send = async {
            let mut stream = conn.open_uni().await.ok()?;
            stream.write_all(own.as_bytes()).await.ok()?;
            stream.finish().ok()
        };
        let receive = async {
            let mut stream = conn.accept_uni().await.ok()?;
            stream.read_to_end(MAX_CREDENTIAL_LEN).await.ok()
        };
        let (_, received) = tokio::join!(send, receive);
        let Some(jwt) = received
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .map(|text| text.trim().to_owned())
            .filter(|text| !text.is_empty())
        else {
            self.admission.reject(Rejection::NoCredential);
            return Err(Rejection::NoCredential);
        };
        let member = self.admission.admit(&jwt, key, self.clock.now()).await?;
        Ok((key, member.role, jwt))
    }
}

/// Renews our credential at identityd (`POST {identity_url}/members/renew`).
struct Renewal {
    http: reqwest::Client,
    url: String,
    own: String,
    pkcs8: Vec<u8>,
    path: std::path::PathBuf,
}

impl Renewal {
    async fn run(self) -> Option<String> {
        let request = match renewal_request(&self.own, &self.pkcs8, SystemTime::now()) {
            Some(request) => request,
            None => {
                tracing::warn!("cannot sign the renewal request");
                return None;
            }
        };
        let response = self
            .http
            .post(format!("{}/members/renew", self.url))
            .json(&request)
            .send()
            .await;
        let jwt = match response {
            Ok(response) if response.status().is_success() => response
                .json::<serde_json::Value>()
                .await
                .ok()
                .and_then(|body| {
                    body.get("verifiableCredential")
                        .and_then(|v| v.as_str())
                        .map(str::to_owned)
                }),
            Ok(response) => {
                tracing::warn!(status = %response.status(), "identityd refused to renew the membership credential");
                None
            }
            Err(err) => {
                tracing::warn!(%err, "cannot reach identityd to renew the membership credential");
                None
            }
        }?;
        match credential::write_credential(&self.path, &jwt) {
            Ok(()) => {
                tracing::info!(path = %self.path.display(), "membership credential renewed");
                Some(jwt)
            }
            Err(err) => {
                tracing::warn!(%err, "cannot save the renewed credential");
                None
            }
        }
    }
}

/// The body of a renewal request: the current credential, the time, and the agent key's
/// signature over `swarmguard-renew-v1\n{created}\n{credential}` (base64url), so that
/// only the credential's holder can renew it, and only for a few minutes.
pub fn renewal_request(jwt: &str, pkcs8: &[u8], now: SystemTime) -> Option<serde_json::Value> {
    use base64::Engine;
    let pair = ring::signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8).ok()?;
    let created = humantime::format_rfc3339_seconds(now).to_string();
    let message = swarmguard_identity::membership::renewal_message(&created, jwt);
    let signature = pair.sign(message.as_bytes());
    Some(serde_json::json!({
        "credential": jwt,
        "created": created,
        "proof": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(signature.as_ref()),
    }))
}

async fn write_streams(conn: quinn::Connection, mut queue: mpsc::Receiver<Vec<u8>>) {
    while let Some(bytes) = queue.recv().await {
        let Ok(mut stream) = conn.open_uni().await else {
            break;
        };
        if stream.write_all(&bytes).await.is_err() {
            break;
        }
        let _ = stream.finish();
    }
}

async fn read_datagrams(
    conn: quinn::Connection,
    addr: SocketAddr,
    peer: PeerId,
    inbound: mpsc::Sender<Inbound>,
) {
    while let Ok(bytes) = conn.read_datagram().await {
        let message = Inbound::Message {
            addr,
            peer,
            bytes: bytes.to_vec(),
        };
        if inbound.send(message).await.is_err() {
            break;
        }
    }
}

async fn read_streams(
    conn: quinn::Connection,
    addr: SocketAddr,
    peer: PeerId,
    inbound: mpsc::Sender<Inbound>,
    max_message_size: usize,
) {
    while let Ok(mut stream) = conn.accept_uni().await {
        let inbound = inbound.clone();
        // One task per stream; the peer may open at most MAX_STREAMS at once.
        tokio::spawn(async move {
            let message =
                match tokio::time::timeout(STREAM_TIMEOUT, stream.read_to_end(max_message_size))
                    .await
                {
                    Ok(Ok(bytes)) => Inbound::Message { addr, peer, bytes },
                    Ok(Err(quinn::ReadToEndError::TooLong)) => {
                        let _ = stream.stop(0u32.into());
                        tracing::debug!(%peer, "dropped an oversized message");
                        Inbound::Dropped(DropReason::TooLarge)
                    }
                    _ => return,
                };
            let _ = inbound.send(message).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(payload: serde_json::Value) -> String {
        use base64::Engine;
        let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        format!(
            "{}.{}.{}",
            b64(br#"{"alg":"EdDSA"}"#),
            b64(payload.to_string().as_bytes()),
            b64(b"signature")
        )
    }

    #[test]
    fn our_credential_must_name_our_key_and_gives_our_role() {
        let me = crate::swarm::SigningKey::from_seed(&[1; 32])
            .unwrap()
            .peer_id();
        let other = crate::swarm::SigningKey::from_seed(&[2; 32])
            .unwrap()
            .peer_id();
        let ours = jwt(serde_json::json!({
            "validUntil": "2030-01-01T00:00:00Z",
            "credentialSubject": { "id": me.to_did(), "role": "operator" }
        }));
        assert_eq!(issued_to(&ours, &me), Ok(()));
        assert_eq!(jwt_role(&ours).as_deref(), Some("operator"));
        assert!(jwt_valid_until(&ours).is_some());
        let problem = issued_to(&ours, &other).unwrap_err();
        assert!(problem.contains(&me.to_did()), "{problem}");
        assert!(issued_to("not.a-jwt", &me).is_err());
        assert_eq!(jwt_role("garbage"), None);
    }
}
