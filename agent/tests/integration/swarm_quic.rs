//! The swarm node over real QUIC on loopback, with real membership credentials issued by
//! identityd's library and real status lists served by identityd's router on loopback:
//! dissemination, failure and rejoin, partition and heal, and every way a peer or a
//! message is refused, each counted under its reason.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use swarmguard_agent::api::Metrics;
use swarmguard_agent::config::Config;
use swarmguard_agent::detect::Severity;
use swarmguard_agent::store::{Store, StoreConfig};
use swarmguard_agent::swarm::admission::{self, Rejection};
use swarmguard_agent::swarm::credential;
use swarmguard_agent::swarm::node::{self, Firewall, NodeOptions, NodeTask};
use swarmguard_agent::swarm::{
    Event, MemberState, PeerId, Reason, Signal, SignalBody, SigningKey, SwarmConfig, SwarmView,
    signals_message, tls,
};
use swarmguard_identity::did::Did;
use swarmguard_identity::membership::{Role, member_credential};
use swarmguard_identity::service::Service;
use swarmguard_identity::store::Status;
use swarmguard_identity::vc::Format;
use tokio::sync::{mpsc, watch};

/// An identityd service in this process: its library to issue and revoke, its router on
/// loopback to serve status lists.
struct Issuer {
    service: Arc<Service>,
    /// The base URL, e.g. `http://127.0.0.1:PORT`.
    base: String,
    state: tempfile::TempDir,
}

impl Issuer {
    async fn start() -> Issuer {
        let state = tempfile::tempdir().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let config = swarmguard_identity::config::Config {
            state_dir: state.path().to_owned(),
            listen: listener.local_addr().unwrap(),
            ..swarmguard_identity::config::Config::default()
        };
        let base = format!("http://{}", listener.local_addr().unwrap());
        let service = Arc::new(Service::open(config).unwrap());
        let app = swarmguard_identity::server::router(service.clone(), vec!["t".to_owned()]);
        tokio::spawn(async move { axum::serve(listener, app).await });
        Issuer {
            service,
            base,
            state,
        }
    }

    fn did(&self) -> Did {
        self.service.key.did().clone()
    }

    async fn member(&self, agent: &PeerId) -> String {
        let did = Did::parse(&agent.to_did()).unwrap();
        self.service.issue_member(&did, Role::Sensor).await.unwrap()
    }

    async fn expired_member(&self, agent: &PeerId) -> String {
        let did = Did::parse(&agent.to_did()).unwrap();
        let mut credential =
            member_credential(&self.did(), &did, Role::Sensor, "2020-02-01T00:00:00Z");
        credential["validFrom"] = "2020-01-01T00:00:00Z".into();
        match self
            .service
            .issue(credential, Format::JwtVcJson)
            .await
            .unwrap()
        {
            serde_json::Value::String(jwt) => jwt,
            other => panic!("not a JWT: {other}"),
        }
    }

    fn revoke(&self, jwt: &str) {
        let id = payload(jwt)["id"].as_str().unwrap().to_owned();
        self.service.set_status(&id, Status::Revoked).unwrap();
    }
}

fn payload(jwt: &str) -> serde_json::Value {
    use base64::Engine;
    let part = jwt.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// One agent's swarm node, with what it saw.
struct TestNode {
    addr: SocketAddr,
    peer: PeerId,
    publish: mpsc::Sender<SignalBody>,
    view: watch::Receiver<SwarmView>,
    events: Arc<Mutex<Vec<Event>>>,
    metrics: Metrics,
    firewall: Firewall,
    stop: watch::Sender<bool>,
    task: NodeTask,
}

/// Core settings for a small, quick swarm.
fn quick() -> SwarmConfig {
    SwarmConfig {
        interval: Duration::from_millis(100),
        expected_members: 5,
        rejoin_interval: Duration::from_millis(500),
        announce_to_down_every: Duration::from_secs(1),
        ..SwarmConfig::default()
    }
}

fn node_config(state: &Path, issuer: &Did, seeds: &[SocketAddr]) -> Config {
    let mut config = Config {
        state_dir: state.to_owned(),
        ..Config::default()
    };
    config.gossip.seeds = seeds.to_vec();
    config.gossip.trusted_issuers = vec![issuer.clone()];
    config.gossip.status_refresh = Duration::from_millis(200);
    config
}

/// Gives the agent in `state` a credential from `issuer` for its own key.
async fn enrol(state: &Path, issuer: &Issuer) -> String {
    let key = credential::load_or_create_key(state).unwrap();
    let jwt = issuer.member(&key.peer_id()).await;
    credential::write_credential(&state.join(credential::CREDENTIAL_FILE), &jwt).unwrap();
    jwt
}

async fn start_node(config: &Config, bind: SocketAddr) -> TestNode {
    start_node_with(config, bind, None).await
}

/// [`start_node`], with seeds that "discovery" hands the node while it runs.
async fn start_node_with(
    config: &Config,
    bind: SocketAddr,
    seeds: Option<watch::Receiver<Vec<SocketAddr>>>,
) -> TestNode {
    let socket = bind_retrying(bind).await;
    let metrics = Metrics::new();
    let store = Arc::new(Store::open(&config.state_dir, StoreConfig::default(), &metrics).unwrap());
    let (stop, stop_rx) = watch::channel(false);
    let firewall = Firewall::default();
    let (link, task) = node::start_with(
        config,
        socket,
        &metrics,
        store,
        stop_rx,
        NodeOptions {
            swarm: Some(quick()),
            firewall: Some(firewall.clone()),
            seeds,
        },
    )
    .unwrap()
    .expect("the node has a credential");
    let events = Arc::new(Mutex::new(Vec::new()));
    let log = events.clone();
    let mut receiver = link.events;
    tokio::spawn(async move {
        while let Some(event) = receiver.recv().await {
            log.lock().unwrap().push(event);
        }
    });
    TestNode {
        addr: task.addr,
        peer: task.peer,
        publish: link.publish,
        view: link.view,
        events,
        metrics,
        firewall,
        stop,
        task,
    }
}

/// Binds a UDP socket, waiting while a stopped node's endpoint still holds the port.
async fn bind_retrying(addr: SocketAddr) -> std::net::UdpSocket {
    for _ in 0..200 {
        if let Ok(socket) = std::net::UdpSocket::bind(addr) {
            return socket;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{addr} stayed busy");
}

impl TestNode {
    async fn stop(self) {
        let _ = self.stop.send(true);
        self.task.join().await;
    }

    fn alive(&self) -> usize {
        self.view
            .borrow()
            .members
            .iter()
            .filter(|m| m.state == MemberState::Alive)
            .count()
    }

    fn state_of(&self, peer: PeerId) -> Option<MemberState> {
        self.view
            .borrow()
            .members
            .iter()
            .find(|m| m.peer == peer)
            .map(|m| m.state)
    }

    /// How many times a signal about `subject` was received.
    fn received(&self, subject: &str) -> usize {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|event| {
                matches!(event, Event::SignalReceived(signal) if signal.subject().to_string() == subject)
            })
            .count()
    }

    fn saw(&self, check: impl Fn(&Event) -> bool) -> bool {
        self.events.lock().unwrap().iter().any(check)
    }

    /// The value of one metric line (name with labels), 0 when absent.
    fn metric(&self, name: &str) -> f64 {
        self.metrics
            .render()
            .lines()
            .find_map(|line| {
                line.strip_prefix(name)
                    .and_then(|rest| rest.strip_prefix(' '))
                    .and_then(|value| value.trim().parse().ok())
            })
            .unwrap_or(0.0)
    }

    fn rejected(&self, reason: Rejection) -> f64 {
        self.metric(&format!(
            "swarmguard_swarm_admission_rejected_total{{reason=\"{}\"}}",
            reason.as_str()
        ))
    }

    fn dropped(&self, reason: &str) -> f64 {
        self.metric(&format!(
            "swarmguard_swarm_dropped_total{{reason=\"{reason}\"}}"
        ))
    }

    async fn publish(&self, subject: &str) {
        let now = SystemTime::now();
        self.publish
            .send(SignalBody {
                subject: subject.parse().unwrap(),
                reason: Reason {
                    rule: "ssh-bf".to_owned(),
                    class: String::new(),
                },
                severity: Severity::High,
                observed_at: now,
                expires_at: now + Duration::from_secs(3600),
            })
            .await
            .unwrap();
    }
}

/// Waits until `done` holds; a generous deadline only turns a hang into a failure.
async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..3000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("gave up waiting: {what}");
}

/// `count` nodes, all joined through the first.
async fn swarm_of(count: usize, issuer: &Issuer) -> (Vec<TestNode>, Vec<tempfile::TempDir>) {
    let mut nodes: Vec<TestNode> = Vec::new();
    let mut dirs = Vec::new();
    for index in 0..count {
        let dir = tempfile::tempdir().unwrap();
        enrol(dir.path(), issuer).await;
        let seeds: Vec<SocketAddr> = nodes.first().map(|n| n.addr).into_iter().collect();
        let config = node_config(dir.path(), &issuer.did(), &seeds);
        nodes.push(start_node(&config, "127.0.0.1:0".parse().unwrap()).await);
        dirs.push(dir);
        let _ = index;
    }
    wait_for("every node sees every other alive", || {
        nodes.iter().all(|n| n.alive() == count - 1)
    })
    .await;
    (nodes, dirs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_deliver_each_signal_once_and_detect_failure_and_rejoin() {
    let issuer = Issuer::start().await;
    let (mut nodes, dirs) = swarm_of(5, &issuer).await;

    nodes[2].publish("203.0.113.7").await;
    wait_for("the first signal reaches all", || {
        nodes
            .iter()
            .enumerate()
            .all(|(i, n)| i == 2 || n.received("203.0.113.7") >= 1)
    })
    .await;
    // A second signal from elsewhere: by the time it has reached everyone, the first has
    // been pushed and offered by anti-entropy many times over.
    nodes[3].publish("198.51.100.9").await;
    wait_for("the second signal reaches all", || {
        nodes
            .iter()
            .enumerate()
            .all(|(i, n)| i == 3 || n.received("198.51.100.9") >= 1)
    })
    .await;
    for (i, node) in nodes.iter().enumerate() {
        if i != 2 {
            assert_eq!(node.received("203.0.113.7"), 1, "node {i}");
        }
        assert_eq!(node.rejected(Rejection::KeyMismatch), 0.0);
    }

    // Stop one: the others declare it down.
    let gone = nodes.pop().unwrap();
    let (gone_addr, gone_peer) = (gone.addr, gone.peer);
    gone.stop().await;
    wait_for("the stopped node is declared down", || {
        nodes.iter().all(|n| {
            n.saw(|e| matches!(e, Event::MemberDown(m) if m.peer == gone_peer))
                && n.state_of(gone_peer) == Some(MemberState::Down)
        })
    })
    .await;

    // Restart it with the same key, address and store: it remembers the signals and
    // rejoins.
    let config = node_config(dirs[4].path(), &issuer.did(), &[nodes[0].addr]);
    let back = start_node(&config, gone_addr).await;
    assert_eq!(back.peer, gone_peer);
    wait_for("the restarted node restored both signals", || {
        back.metric("swarmguard_swarm_live_signals") == 2.0
    })
    .await;
    wait_for("the restarted node rejoins", || {
        back.alive() == 4
            && nodes
                .iter()
                .all(|n| n.state_of(gone_peer) == Some(MemberState::Alive))
    })
    .await;
    // It is told nothing twice: it already held both signals.
    assert_eq!(back.received("203.0.113.7"), 0);
    nodes.push(back);
    for node in nodes {
        node.stop().await;
    }
}

/// DNS discovery hands the node seeds while it runs (the discovery itself is tested
/// against a DNS server in `dns.rs`): a node configured with no seed joins through them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_joins_through_seeds_discovered_while_it_runs() {
    let issuer = Issuer::start().await;
    let first_state = tempfile::tempdir().unwrap();
    enrol(first_state.path(), &issuer).await;
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let first = start_node(&node_config(first_state.path(), &issuer.did(), &[]), any).await;
    let second_state = tempfile::tempdir().unwrap();
    enrol(second_state.path(), &issuer).await;
    let (found, seeds) = watch::channel(Vec::new());
    let config = node_config(second_state.path(), &issuer.did(), &[]);
    let second = start_node_with(&config, any, Some(seeds)).await;
    assert_eq!(second.alive(), 0, "no seed, no member yet");
    found.send(vec![first.addr]).unwrap();
    wait_for("both see each other", || {
        first.alive() == 1 && second.alive() == 1
    })
    .await;
    second.stop().await;
    first.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_heals_and_signals_converge() {
    let issuer = Issuer::start().await;
    let (nodes, _dirs) = swarm_of(4, &issuer).await;
    let (left, right) = nodes.split_at(2);
    for a in left {
        for b in right {
            a.firewall.block(b.addr);
            b.firewall.block(a.addr);
        }
    }
    left[0].publish("192.0.2.10").await;
    right[0].publish("192.0.2.20").await;
    wait_for("each side spreads its own signal", || {
        left[1].received("192.0.2.10") == 1 && right[1].received("192.0.2.20") == 1
    })
    .await;
    assert!(right.iter().all(|n| n.received("192.0.2.10") == 0));
    assert!(left.iter().all(|n| n.received("192.0.2.20") == 0));

    for node in &nodes {
        node.firewall.clear();
    }
    wait_for("both signals reach every node once", || {
        left.iter().all(|n| n.received("192.0.2.20") == 1)
            && right.iter().all(|n| n.received("192.0.2.10") == 1)
            && left[1].received("192.0.2.10") == 1
            && right[1].received("192.0.2.20") == 1
    })
    .await;
    for node in nodes {
        node.stop().await;
    }
}

/// A client speaking the swarm's transport by hand, to send what a real node never would.
struct Rogue {
    endpoint: quinn::Endpoint,
    conn: quinn::Connection,
    key: SigningKey,
}

impl Rogue {
    async fn connect(to: SocketAddr, credential: Option<&str>) -> Rogue {
        let (key, pkcs8) = SigningKey::generate().unwrap();
        Rogue::connect_as(to, key, &pkcs8, credential).await
    }

    async fn connect_as(
        to: SocketAddr,
        key: SigningKey,
        pkcs8: &[u8],
        credential: Option<&str>,
    ) -> Rogue {
        let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        endpoint.set_default_client_config(tls::client_config(pkcs8).unwrap());
        let conn = endpoint
            .connect(to, tls::SERVER_NAME)
            .unwrap()
            .await
            .unwrap();
        let mut stream = conn.open_uni().await.unwrap();
        stream
            .write_all(credential.unwrap_or_default().as_bytes())
            .await
            .unwrap();
        stream.finish().unwrap();
        Rogue {
            endpoint,
            conn,
            key,
        }
    }

    async fn send(&self, bytes: &[u8]) {
        if let Ok(mut stream) = self.conn.open_uni().await {
            let _ = stream.write_all(bytes).await;
            let _ = stream.finish();
        }
    }

    fn signal(&self, seq: u64, subject: &str) -> Signal {
        let now = SystemTime::now();
        Signal::sign(
            &self.key,
            seq,
            SignalBody {
                subject: subject.parse().unwrap(),
                reason: Reason {
                    rule: "r".to_owned(),
                    class: String::new(),
                },
                severity: Severity::Low,
                observed_at: now,
                expires_at: now + Duration::from_secs(600),
            },
        )
        .unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_without_a_valid_credential_are_refused_by_reason() {
    let issuer = Issuer::start().await;
    let other_issuer = Issuer::start().await;
    let (nodes, _dirs) = swarm_of(1, &issuer).await;
    let victim = &nodes[0];

    // No credential: an empty presentation, closed with the no_credential code.
    let rogue = Rogue::connect(victim.addr, None).await;
    let closed = rogue.conn.closed().await;
    assert!(
        matches!(&closed, quinn::ConnectionError::ApplicationClosed(close)
            if close.error_code == Rejection::NoCredential.code().into()),
        "{closed:?}"
    );
    assert_eq!(victim.rejected(Rejection::NoCredential), 1.0);

    // Expired, untrusted issuer, another agent's credential, a forged signature.
    let (key, pkcs8) = SigningKey::generate().unwrap();
    let expired = issuer.expired_member(&key.peer_id()).await;
    let untrusted = other_issuer.member(&key.peer_id()).await;
    let someone_else = issuer
        .member(&SigningKey::generate().unwrap().0.peer_id())
        .await;
    // One character in the middle of the signature changed (the last one may only carry
    // padding bits).
    let mut forged = issuer.member(&key.peer_id()).await.into_bytes();
    let at = forged.len() - 20;
    forged[at] = if forged[at] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    for (credential, reason) in [
        (&expired, Rejection::Expired),
        (&untrusted, Rejection::UntrustedIssuer),
        (&someone_else, Rejection::KeyMismatch),
        (&forged, Rejection::BadSignature),
    ] {
        let key = SigningKey::from_pkcs8(&pkcs8).unwrap();
        let rogue = Rogue::connect_as(victim.addr, key, &pkcs8, Some(credential)).await;
        let closed = rogue.conn.closed().await;
        assert!(
            matches!(&closed, quinn::ConnectionError::ApplicationClosed(close)
                if close.error_code == reason.code().into()),
            "{reason}: {closed:?}"
        );
        assert_eq!(victim.rejected(reason), 1.0, "{reason}");
        rogue.endpoint.wait_idle().await;
    }

    // Revoked before it connects: refused once the victim's status list shows it. (Until
    // its next refresh the cached list may still admit it; then it is expelled.)
    let revoked = issuer.member(&key.peer_id()).await;
    issuer.revoke(&revoked);
    loop {
        let key = SigningKey::from_pkcs8(&pkcs8).unwrap();
        let rogue = Rogue::connect_as(victim.addr, key, &pkcs8, Some(&revoked)).await;
        let closed = rogue.conn.closed().await;
        rogue.endpoint.wait_idle().await;
        match &closed {
            quinn::ConnectionError::ApplicationClosed(close)
                if close.error_code == Rejection::Revoked.code().into() =>
            {
                break;
            }
            quinn::ConnectionError::ApplicationClosed(close)
                if close.error_code == admission::CLOSE_EXPELLED.into() => {}
            other => panic!("revoked: {other:?}"),
        }
    }
    assert_eq!(victim.rejected(Rejection::Revoked), 1.0);
    for node in nodes {
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_replayed_and_oversized_messages_are_dropped_by_reason() {
    let issuer = Issuer::start().await;
    let (nodes, _dirs) = swarm_of(1, &issuer).await;
    let victim = &nodes[0];
    let (key, pkcs8) = SigningKey::generate().unwrap();
    let credential = issuer.member(&key.peer_id()).await;
    let rogue = Rogue::connect_as(victim.addr, key, &pkcs8, Some(&credential)).await;
    wait_for("the rogue member is admitted", || {
        victim.metric("swarmguard_swarm_admitted_total") >= 1.0
    })
    .await;

    // A forged signature: one bit of the signature flipped.
    let honest = rogue.signal(1, "192.0.2.66");
    let mut forged = honest.as_bytes().to_vec();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    rogue.send(&signals_message([forged.as_slice()])).await;
    wait_for("the forged signal is dropped", || {
        victim.dropped("bad_signature") == 1.0
    })
    .await;

    // The honest one is taken once; sent again it is a duplicate.
    rogue.send(&signals_message([honest.as_bytes()])).await;
    wait_for("the signal is taken", || victim.received("192.0.2.66") == 1).await;
    let duplicates = victim.dropped("duplicate");
    rogue.send(&signals_message([honest.as_bytes()])).await;
    wait_for("the replay is dropped", || {
        victim.dropped("duplicate") > duplicates
    })
    .await;
    assert_eq!(victim.received("192.0.2.66"), 1);

    // Oversized: one byte over the largest message.
    let big = vec![0u8; SwarmConfig::default().max_message_size + 1];
    rogue.send(&big).await;
    wait_for("the oversized message is dropped", || {
        victim.dropped("too_large") == 1.0
    })
    .await;
    for node in nodes {
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_revoked_after_admission_is_expelled() {
    let issuer = Issuer::start().await;
    let (nodes, dirs) = swarm_of(3, &issuer).await;
    let target = &nodes[2];
    target.publish("192.0.2.99").await;
    wait_for("its signal spread", || {
        nodes[..2].iter().all(|n| n.received("192.0.2.99") == 1)
    })
    .await;
    let jwt = credential::read_credential(&dirs[2].path().join(credential::CREDENTIAL_FILE))
        .unwrap()
        .unwrap();
    issuer.revoke(&jwt);
    wait_for("the others expel it and withdraw its signals", || {
        nodes[..2].iter().all(|n| {
            n.metric("swarmguard_swarm_expelled_total") >= 1.0
                && n.saw(|e| matches!(e, Event::SignalsWithdrawn { origin, count: 1 } if *origin == target.peer))
                && n.state_of(target.peer) == Some(MemberState::Down)
        })
    })
    .await;
    // It cannot come back with the same credential.
    wait_for("its reconnection is refused as revoked", || {
        nodes[0].rejected(Rejection::Revoked) + nodes[1].rejected(Rejection::Revoked) >= 1.0
    })
    .await;
    for node in nodes {
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_credential_near_its_end_is_renewed_from_identityd() {
    let issuer = Issuer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let first = enrol(dir.path(), &issuer).await;
    let mut config = node_config(dir.path(), &issuer.did(), &[]);
    config.gossip.identity_url = Some(issuer.base.clone());
    // Thirty days left is within a year: renew at once.
    config.gossip.renew_before = Duration::from_secs(365 * 86_400);
    let node = start_node(&config, "127.0.0.1:0".parse().unwrap()).await;
    let path = dir.path().join(credential::CREDENTIAL_FILE);
    wait_for("the credential file is replaced", || {
        credential::read_credential(&path).unwrap().unwrap() != first
    })
    .await;
    let renewed = credential::read_credential(&path).unwrap().unwrap();
    assert_eq!(
        payload(&renewed)["credentialSubject"],
        payload(&first)["credentialSubject"]
    );
    assert_ne!(payload(&renewed)["id"], payload(&first)["id"]);
    assert!(node.metric("swarmguard_swarm_credential_days_left") > 29.0);
    node.stop().await;

    // Renewal needs the holder's key: a proof by another key is refused.
    let other = SigningKey::generate().unwrap().1;
    let request = node::renewal_request(&renewed, &other, SystemTime::now()).unwrap();
    let response = reqwest::Client::new()
        .post(format!("{}/members/renew", issuer.base))
        .json(&request)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    // And a revoked credential cannot be renewed.
    let key = std::fs::read(dir.path().join(credential::KEY_FILE)).unwrap();
    issuer.revoke(&renewed);
    let request = node::renewal_request(&renewed, &key, SystemTime::now()).unwrap();
    let response = reqwest::Client::new()
        .post(format!("{}/members/renew", issuer.base))
        .json(&request)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swarmctl_prints_the_did_and_requests_a_credential() {
    let issuer = Issuer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().to_str().unwrap().to_owned();
    let run = |args: Vec<String>| async move {
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_swarmctl"))
                .args(&args)
                .output()
                .unwrap()
        })
        .await
        .unwrap()
    };
    let out = run(vec![
        "credential".into(),
        "did".into(),
        "--state-dir".into(),
        state.clone(),
    ])
    .await;
    assert!(out.status.success(), "{out:?}");
    let did = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let key = credential::load_or_create_key(dir.path()).unwrap();
    assert_eq!(did, key.peer_id().to_did());

    let token_file = issuer.state.path().join("admin.token");
    std::fs::write(&token_file, "t\n").unwrap();
    let out = run(vec![
        "credential".into(),
        "request".into(),
        "--identity".into(),
        issuer.base.clone(),
        "--token-file".into(),
        token_file.to_str().unwrap().to_owned(),
        "--role".into(),
        "sentinel".into(),
        "--state-dir".into(),
        state.clone(),
    ])
    .await;
    assert!(out.status.success(), "{out:?}");
    let jwt = credential::read_credential(&dir.path().join(credential::CREDENTIAL_FILE))
        .unwrap()
        .unwrap();
    assert_eq!(payload(&jwt)["credentialSubject"]["id"], did.as_str());
    assert_eq!(payload(&jwt)["credentialSubject"]["role"], "sentinel");

    let out = run(vec![
        "credential".into(),
        "request".into(),
        "--identity".into(),
        issuer.base.clone(),
        "--token".into(),
        "wrong".into(),
        "--state-dir".into(),
        state,
    ])
    .await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("401"),
        "{out:?}"
    );
}
