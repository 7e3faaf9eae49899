//! DNS on loopback, with real UDP (and TCP) queries: an upstream hickory server with an
//! authoritative zone, started by each test; the sinkhole forwarding to it; SRV discovery
//! against it.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hickory_server::Server;
use hickory_server::net::runtime::TokioRuntimeProvider;
use hickory_server::proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_server::proto::rr::rdata::SRV;
use hickory_server::proto::rr::{LowerName, Name, RData, Record, RecordType};
use hickory_server::proto::serialize::txt::Parser;
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneHandler, ZoneType};
use swarmguard_agent::api::Metrics;
use swarmguard_agent::detect::{Alert, Evidence, RuleRef};
use swarmguard_agent::enforce::dns::{self, DnsConfig, SinkholeHandle, blocklist};
use swarmguard_agent::subject::{Domain, Subject};
use swarmguard_agent::swarm::discovery::{self, Discovery, DnsDiscovery};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, watch};

const ZONE: &str = "\
$ORIGIN example.
$TTL 60
@        IN SOA ns.example. admin.example. 1 3600 600 86400 60
@        IN NS  ns.example.
ns       IN A   192.0.2.53
www      IN A   192.0.2.80
www      IN AAAA 2001:db8::80
evil     IN A   203.0.113.66
a.b.evil IN A   203.0.113.67
ads      IN A   203.0.113.70
_swarmguard._udp IN SRV 20 5 7301 agent2.example.
_swarmguard._udp IN SRV 10 5 7300 agent1.example.
agent1   IN A   127.0.0.11
agent2   IN A   127.0.0.12
";

/// An authoritative hickory server for `example.` on loopback UDP and TCP. Dropping the
/// `Server` stops it.
struct Upstream {
    addr: SocketAddr,
    zone: Arc<InMemoryZoneHandler>,
    _server: Server<Catalog>,
}

async fn upstream() -> Upstream {
    let origin = Name::from_ascii("example.").unwrap();
    let (origin, records) = Parser::new(ZONE, None, Some(origin)).parse().unwrap();
    let zone = Arc::new(
        InMemoryZoneHandler::<TokioRuntimeProvider>::new(
            origin.clone(),
            records,
            ZoneType::Primary,
            AxfrPolicy::Deny,
        )
        .unwrap(),
    );
    let mut catalog = Catalog::new();
    catalog.upsert(
        LowerName::from(origin),
        vec![zone.clone() as Arc<dyn ZoneHandler>],
    );
    let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = udp.local_addr().unwrap();
    let tcp = TcpListener::bind(addr).await.unwrap();
    let mut server = Server::new(catalog);
    server.register_socket(udp);
    server.register_listener(tcp, Duration::from_secs(10), 16);
    Upstream {
        addr,
        zone,
        _server: server,
    }
}

fn message(name: &str, rtype: RecordType) -> Message {
    let mut message = Message::new(rand_id(), MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
    message
}

fn rand_id() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// One UDP query from `socket` (so tests can know the client's address).
async fn query_from(
    socket: &UdpSocket,
    server: SocketAddr,
    name: &str,
    rtype: RecordType,
) -> Message {
    let request = message(name, rtype);
    socket
        .send_to(&request.to_vec().unwrap(), server)
        .await
        .unwrap();
    let mut buf = vec![0; 4096];
    loop {
        // A bound on waiting so that a lost answer fails the test instead of hanging it.
        let (len, _) = tokio::time::timeout(Duration::from_secs(20), socket.recv_from(&mut buf))
            .await
            .expect("an answer")
            .unwrap();
        let answer = Message::from_vec(&buf[..len]).unwrap();
        if answer.metadata.id == request.metadata.id {
            return answer;
        }
    }
}

async fn query(server: SocketAddr, name: &str, rtype: RecordType) -> Message {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    query_from(&socket, server, name, rtype).await
}

async fn query_tcp(server: SocketAddr, name: &str, rtype: RecordType) -> Message {
    let request = message(name, rtype).to_vec().unwrap();
    let mut stream = TcpStream::connect(server).await.unwrap();
    stream
        .write_all(&(request.len() as u16).to_be_bytes())
        .await
        .unwrap();
    stream.write_all(&request).await.unwrap();
    let len = stream.read_u16().await.unwrap();
    let mut buf = vec![0; usize::from(len)];
    stream.read_exact(&mut buf).await.unwrap();
    Message::from_vec(&buf).unwrap()
}

fn addresses(answer: &Message) -> Vec<IpAddr> {
    answer
        .answers
        .iter()
        .filter_map(|record| record.data.ip_addr())
        .collect()
}

fn domain(text: &str) -> Domain {
    match text.parse::<Subject>().unwrap() {
        Subject::Domain(domain) => domain,
        other => panic!("{other} is not a domain"),
    }
}

struct Sinkhole {
    handle: SinkholeHandle,
    alerts: mpsc::Receiver<Alert>,
    metrics: Metrics,
    _stop: watch::Sender<bool>,
}

async fn sinkhole(upstream: SocketAddr, tune: impl FnOnce(&mut DnsConfig)) -> Sinkhole {
    let mut config = DnsConfig {
        listen: Some("127.0.0.1:0".parse().unwrap()),
        upstream: vec![upstream],
        blocklists: Vec::new(),
        ..DnsConfig::default()
    };
    tune(&mut config);
    let metrics = Metrics::new();
    let (alerts_tx, alerts) = mpsc::channel(16);
    let (stop, stop_rx) = watch::channel(false);
    let handle = dns::start_with(&config, &metrics, alerts_tx, stop_rx)
        .await
        .unwrap();
    Sinkhole {
        handle,
        alerts,
        metrics,
        _stop: stop,
    }
}

#[tokio::test]
async fn sinkhole_answers_nxdomain_for_a_decided_domain_and_its_subdomains_and_forwards_the_rest() {
    let upstream = upstream().await;
    let hole = sinkhole(upstream.addr, |_| {}).await;
    let addr = hole.handle.udp_addr();

    // Before any decision everything resolves through the upstream.
    let answer = query(addr, "evil.example.", RecordType::A).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
    assert_eq!(
        addresses(&answer),
        ["203.0.113.66".parse::<IpAddr>().unwrap()]
    );

    hole.handle.set([(
        domain("evil.example"),
        SystemTime::now() + Duration::from_secs(3600),
    )]);
    for name in [
        "evil.example.",
        "a.b.evil.example.",
        "nothing-here.EVIL.example.",
    ] {
        let answer = query(addr, name, RecordType::A).await;
        assert_eq!(
            answer.metadata.response_code,
            ResponseCode::NXDomain,
            "{name}"
        );
        assert!(answer.answers.is_empty(), "{name}");
    }
    let over_tcp = query_tcp(hole.handle.tcp_addr(), "evil.example.", RecordType::AAAA).await;
    assert_eq!(over_tcp.metadata.response_code, ResponseCode::NXDomain);

    // Other names: NOERROR with the upstream's answer, over UDP and TCP.
    let answer = query(addr, "www.example.", RecordType::A).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
    assert_eq!(
        addresses(&answer),
        ["192.0.2.80".parse::<IpAddr>().unwrap()]
    );
    let answer = query_tcp(hole.handle.tcp_addr(), "www.example.", RecordType::AAAA).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
    assert_eq!(
        addresses(&answer),
        ["2001:db8::80".parse::<IpAddr>().unwrap()]
    );
    // A name the upstream does not know stays the upstream's NXDOMAIN.
    let answer = query(addr, "nowhere.example.", RecordType::A).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::NXDomain);

    // A deleted decision lets the name resolve again.
    hole.handle.set([]);
    let answer = query(addr, "a.b.evil.example.", RecordType::A).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
    assert_eq!(
        addresses(&answer),
        ["203.0.113.67".parse::<IpAddr>().unwrap()]
    );

    let text = hole.metrics.render();
    assert!(
        text.contains("swarmguard_dns_queries_total{result=\"sinkholed\"} 4"),
        "{text}"
    );
    assert!(
        text.contains("swarmguard_dns_sinkhole_hits_total{domain=\"evil.example\"} 4"),
        "{text}"
    );
}

#[tokio::test]
async fn decisions_on_domains_feed_the_sinkhole_by_action() {
    use swarmguard_agent::decide::{Action, Decision, Origin};

    let upstream = upstream().await;
    let hole = sinkhole(upstream.addr, |_| {}).await;
    let addr = hole.handle.udp_addr();
    let now = SystemTime::now();
    let decision = |subject: &str, action| Decision {
        subject: subject.parse().unwrap(),
        action,
        until: now + Duration::from_secs(3600),
        origin: Origin::Operator {
            did: "local".to_owned(),
        },
        reason: "test".to_owned(),
        created: now,
    };
    let decisions = [
        decision("evil.example", Action::Sinkhole),
        decision("ads.example", Action::Block),
        decision("www.example", Action::AlertOnly),
        decision("192.0.2.80", Action::Block),
    ];
    hole.handle.set_decisions(&decisions);
    for (name, code) in [
        ("evil.example.", ResponseCode::NXDomain),
        ("x.ads.example.", ResponseCode::NXDomain),
        ("www.example.", ResponseCode::NoError),
    ] {
        let answer = query(addr, name, RecordType::A).await;
        assert_eq!(answer.metadata.response_code, code, "{name}");
    }
    let text = hole.metrics.render();
    assert!(
        text.contains("swarmguard_dns_sinkhole_domains{source=\"decision\"} 2"),
        "{text}"
    );
}

#[tokio::test]
async fn an_expired_decision_stops_matching_without_an_update() {
    let upstream = upstream().await;
    let hole = sinkhole(upstream.addr, |_| {}).await;
    let addr = hole.handle.udp_addr();
    let until = SystemTime::now() + Duration::from_secs(3);
    hole.handle.set([(domain("evil.example"), until)]);
    let answer = query(addr, "evil.example.", RecordType::A).await;
    // Only meaningful while the decision is live (the machine may be slow).
    if SystemTime::now() < until {
        assert_eq!(answer.metadata.response_code, ResponseCode::NXDomain);
    }
    // Nothing calls `set` again: the expiry alone lifts the sinkhole.
    let wait = until.duration_since(SystemTime::now()).unwrap_or_default();
    tokio::time::sleep(wait + Duration::from_millis(10)).await;
    let answer = query(addr, "evil.example.", RecordType::A).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
    assert_eq!(
        addresses(&answer),
        ["203.0.113.66".parse::<IpAddr>().unwrap()]
    );
    assert_eq!(hole.handle.matches("evil.example"), None);
}

#[tokio::test]
async fn a_hit_raises_one_alert_naming_the_client_and_repeats_are_aggregated() {
    let upstream = upstream().await;
    let mut hole = sinkhole(upstream.addr, |_| {}).await;
    let addr = hole.handle.udp_addr();
    hole.handle.set([(
        domain("evil.example"),
        SystemTime::now() + Duration::from_secs(3600),
    )]);
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let client_addr = client.local_addr().unwrap();
    query_from(&client, addr, "c2.evil.example.", RecordType::A).await;

    let alert = hole.alerts.recv().await.unwrap();
    assert_eq!(alert.src, Some(client_addr.ip()));
    assert_eq!(alert.src_port, Some(client_addr.port()));
    assert_eq!(
        alert.rule,
        RuleRef::Sinkhole {
            domain: "evil.example".to_owned()
        }
    );
    assert!(
        !alert.action.blocks(),
        "a hit never blocks the client by itself"
    );
    assert_eq!(
        alert.evidence,
        Evidence::DnsQuery {
            name: "c2.evil.example.".to_owned(),
            qtype: "A".to_owned(),
            repeats: 0
        }
    );

    // The same client asking again within the interval: counted, no second alert.
    for _ in 0..3 {
        query_from(&client, addr, "c2.evil.example.", RecordType::A).await;
    }
    assert!(hole.alerts.try_recv().is_err());
    let text = hole.metrics.render();
    assert!(
        text.contains("swarmguard_dns_sinkhole_hits_total{domain=\"evil.example\"} 4"),
        "{text}"
    );
    assert!(
        text.contains("swarmguard_dns_sinkhole_alerts_total{outcome=\"sent\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("swarmguard_dns_sinkhole_alerts_total{outcome=\"suppressed\"} 3"),
        "{text}"
    );
    // A forwarded query raises nothing.
    query_from(&client, addr, "www.example.", RecordType::A).await;
    assert!(hole.alerts.try_recv().is_err());
}

#[tokio::test]
async fn a_configured_sinkhole_address_is_the_answer() {
    let upstream = upstream().await;
    let hole = sinkhole(upstream.addr, |config| {
        config.sinkhole_ipv4 = Some("192.0.2.1".parse().unwrap());
    })
    .await;
    let addr = hole.handle.udp_addr();
    hole.handle.set([(
        domain("evil.example"),
        SystemTime::now() + Duration::from_secs(3600),
    )]);
    let answer = query(addr, "x.evil.example.", RecordType::A).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
    assert_eq!(addresses(&answer), ["192.0.2.1".parse::<IpAddr>().unwrap()]);
    assert_eq!(
        answer.answers[0].name,
        Name::from_ascii("x.evil.example.").unwrap()
    );
    // No IPv6 sinkhole configured: the name exists, without AAAA records.
    let answer = query(addr, "x.evil.example.", RecordType::AAAA).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
    assert!(answer.answers.is_empty());
}

#[tokio::test]
async fn a_blocklist_with_a_bad_line_loads_the_rest_and_names_file_and_line() {
    let upstream = upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("local.txt");
    std::fs::write(
        &file,
        "# local list\nads.example\nthis is wrong\n0.0.0.0 evil.example\n",
    )
    .unwrap();

    let list = blocklist::load(&[dir.path().to_owned()], 100);
    let errors: Vec<String> = list.errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(
        errors,
        [format!(
            "{}:3: expected one domain per line, found \"this\" followed by \"is\"",
            file.display()
        )]
    );

    let hole = sinkhole(upstream.addr, |config| {
        config.blocklists = vec![dir.path().to_owned()];
    })
    .await;
    let addr = hole.handle.udp_addr();
    for name in ["ads.example.", "www.ads.example.", "a.b.evil.example."] {
        let answer = query(addr, name, RecordType::A).await;
        assert_eq!(
            answer.metadata.response_code,
            ResponseCode::NXDomain,
            "{name}"
        );
    }
    // Decisions come and go; the blocklist stays.
    hole.handle.set([]);
    let answer = query(addr, "ads.example.", RecordType::A).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::NXDomain);
    let answer = query(addr, "www.example.", RecordType::A).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
    let text = hole.metrics.render();
    assert!(
        text.contains("swarmguard_dns_sinkhole_domains{source=\"blocklist\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("swarmguard_dns_sinkhole_dropped_total{reason=\"bad_line\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn the_shipped_blocklist_loads_without_errors() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../rules/domains");
    let list = blocklist::load(&[dir.into()], 100_000);
    assert!(list.errors.is_empty(), "{:?}", list.errors);
    assert!(list.files >= 1 && !list.domains.is_empty());
}

fn discovery_settings(resolver: SocketAddr, interval: Duration) -> DnsDiscovery {
    DnsDiscovery {
        name: Name::from_ascii("_swarmguard._udp.example.").unwrap(),
        resolver: Some(resolver),
        interval,
    }
}

#[tokio::test]
async fn discovery_resolves_srv_records_to_seeds_in_priority_order() {
    let upstream = upstream().await;
    let seeds =
        discovery::resolve_seeds(&discovery_settings(upstream.addr, Duration::from_secs(60)))
            .await
            .unwrap();
    assert_eq!(
        seeds,
        [
            "127.0.0.11:7300".parse::<SocketAddr>().unwrap(),
            "127.0.0.12:7301".parse().unwrap(),
        ]
    );
    let missing = DnsDiscovery {
        name: Name::from_ascii("_none._udp.example.").unwrap(),
        ..discovery_settings(upstream.addr, Duration::from_secs(60))
    };
    let err = discovery::resolve_seeds(&missing).await.unwrap_err();
    assert!(
        err.to_string()
            .starts_with("SRV lookup of _none._udp.example. failed"),
        "{err}"
    );
}

#[tokio::test]
async fn discovery_refresh_picks_up_a_changed_zone() {
    let upstream = upstream().await;
    let metrics = Metrics::new();
    let (_stop, stop_rx) = watch::channel(false);
    let mut seeds = Discovery::spawn(
        discovery_settings(upstream.addr, Duration::from_millis(100)),
        &metrics,
        stop_rx,
    );
    seeds.wait_for(|list| list.len() == 2).await.unwrap();

    let name = Name::from_ascii("_swarmguard._udp.example.").unwrap();
    let srv = SRV::new(5, 5, 7302, Name::from_ascii("agent3.example.").unwrap());
    assert!(
        upstream
            .zone
            .upsert(Record::from_rdata(name, 60, RData::SRV(srv)), 2)
            .await
    );
    let agent3 = Name::from_ascii("agent3.example.").unwrap();
    let a = RData::A("127.0.0.13".parse::<std::net::Ipv4Addr>().unwrap().into());
    assert!(
        upstream
            .zone
            .upsert(Record::from_rdata(agent3, 60, a), 3)
            .await
    );

    let list = seeds
        .wait_for(|list| list.len() == 3)
        .await
        .unwrap()
        .clone();
    // Priority 5 comes first.
    assert_eq!(list[0], "127.0.0.13:7302".parse().unwrap());
    let text = metrics.render();
    assert!(text.contains("swarmguard_discovery_seeds 3"), "{text}");
    assert!(
        text.contains("swarmguard_discovery_lookups_total{result=\"ok\"}"),
        "{text}"
    );
}

#[tokio::test]
async fn daemon_run_serves_the_sinkhole_and_feeds_it_domain_decisions() {
    use swarmguard_agent::config::Config;

    let upstream = upstream().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("list.txt"), "evil.example\n").unwrap();
    // A port free for UDP and TCP alike, as `--dns-listen` would name one.
    let listen = loop {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = udp.local_addr().unwrap();
        if std::net::TcpListener::bind(addr).is_ok() {
            break addr;
        }
    };
    let mut config = Config {
        state_dir: dir.path().to_owned(),
        ..Config::default()
    };
    config.dns.listen = Some(listen);
    config.dns.upstream = vec![upstream.addr];
    config.dns.blocklists = vec![dir.path().to_owned()];
    let socket = dir.path().join("agent.sock");
    let agent = crate::running::Running::start(config, Some(&socket)).await;

    // The agent binds while starting; wait until it answers over TCP.
    let mut tries = 0;
    while TcpStream::connect(listen).await.is_err() {
        tries += 1;
        assert!(tries < 2000, "the sinkhole never listened on {listen}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let answer = query(listen, "www.example.", RecordType::A).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
    assert_eq!(
        addresses(&answer),
        ["192.0.2.80".parse::<IpAddr>().unwrap()]
    );
    let answer = query(listen, "x.evil.example.", RecordType::A).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::NXDomain);

    // An operator's domain decision reaches the sinkhole through the decision stage,
    // and deleting it lets the name resolve again.
    let out = crate::admin::swarmctl(
        &socket,
        &["decisions", "add", "www.example", "--duration", "1h"],
    )
    .await;
    assert!(out.status.success(), "{out:?}");
    let answer = query(listen, "www.example.", RecordType::A).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::NXDomain);
    let out = crate::admin::swarmctl(&socket, &["decisions", "delete", "www.example"]).await;
    assert!(out.status.success(), "{out:?}");
    let answer = query(listen, "www.example.", RecordType::A).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::NoError);

    agent.stop().await;
}

#[test]
fn run_flags_override_the_dns_listen_and_upstreams() {
    use clap::Parser as _;
    use swarmguard_agent::cli::{SwarmdCli, SwarmdCommand};

    let cli = SwarmdCli::try_parse_from([
        "swarmd",
        "run",
        "--dns-listen",
        "127.0.0.1:5353",
        "--dns-upstream",
        "192.0.2.1",
        "--dns-upstream",
        "[2001:db8::1]:5300",
    ])
    .unwrap();
    let SwarmdCommand::Run(args) = cli.command else {
        panic!("not run")
    };
    assert_eq!(args.dns_listen, Some("127.0.0.1:5353".parse().unwrap()));
    assert_eq!(
        args.dns_upstream,
        [
            "192.0.2.1:53".parse::<SocketAddr>().unwrap(),
            "[2001:db8::1]:5300".parse().unwrap()
        ]
    );
    let err = SwarmdCli::try_parse_from(["swarmd", "run", "--dns-upstream", "resolver"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("\"resolver\" is not an address"), "{err}");
}
