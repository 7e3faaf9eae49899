//! Benchmark (not a test): DNS queries per second through the sinkhole beside direct
//! queries to the same upstream, on loopback, in the same run. The upstream is a hickory
//! authoritative server for `example.` started here; the sinkhole forwards to it. Four
//! loads, each `BENCH_SECS` (default 3) seconds with `BENCH_CLIENTS` (default 32) UDP
//! clients, each sending its next query when the previous answer arrives:
//!
//! - direct, one name: `www.example A` straight to the upstream;
//! - forwarded, one name: the same through the sinkhole (its forwarding cache answers);
//! - direct, unique names / forwarded, unique names: a new name per query (NXDOMAIN from
//!   the upstream), so every forwarded query goes upstream;
//! - sinkholed: `qN.evil.example A`, answered by the sinkhole itself (one alert per client,
//!   the rest counted).
//!
//! `cargo bench -p swarmguard-agent --bench dns`. Prints queries per second and ratios.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use hickory_server::Server;
use hickory_server::net::runtime::TokioRuntimeProvider;
use hickory_server::proto::op::{Message, MessageType, OpCode, Query};
use hickory_server::proto::rr::{LowerName, Name, RecordType};
use hickory_server::proto::serialize::txt::Parser;
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneHandler, ZoneType};
use swarmguard_agent::api::Metrics;
use swarmguard_agent::enforce::dns::{self, DnsConfig};
use swarmguard_agent::subject::Subject;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, watch};

const ZONE: &str = "\
$ORIGIN example.
$TTL 300
@        IN SOA ns.example. admin.example. 1 3600 600 86400 300
@        IN NS  ns.example.
ns       IN A   192.0.2.53
www      IN A   192.0.2.80
";

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn upstream() -> (SocketAddr, Server<Catalog>) {
    let origin = Name::from_ascii("example.").unwrap();
    let (origin, records) = Parser::new(ZONE, None, Some(origin)).parse().unwrap();
    let zone = InMemoryZoneHandler::<TokioRuntimeProvider>::new(
        origin.clone(),
        records,
        ZoneType::Primary,
        AxfrPolicy::Deny,
    )
    .unwrap();
    let mut catalog = Catalog::new();
    catalog.upsert(
        LowerName::from(origin),
        vec![Arc::new(zone) as Arc<dyn ZoneHandler>],
    );
    let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = udp.local_addr().unwrap();
    let tcp = TcpListener::bind(addr).await.unwrap();
    let mut server = Server::new(catalog);
    server.register_socket(udp);
    server.register_listener(tcp, Duration::from_secs(10), 16);
    (addr, server)
}

/// Queries per second of `clients` closed-loop clients for `secs`; `name(i)` is the i-th
/// name a client asks.
async fn load(
    server: SocketAddr,
    clients: u64,
    secs: u64,
    name: impl Fn(u64, u64) -> String + Send + Sync + 'static,
) -> f64 {
    let name = Arc::new(name);
    let answered = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for client in 0..clients {
        let name = name.clone();
        let answered = answered.clone();
        tasks.push(tokio::spawn(async move {
            let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            socket.connect(server).await.unwrap();
            let mut buf = vec![0; 4096];
            let mut i = 0u64;
            while Instant::now() < deadline {
                let mut message =
                    Message::new((i & 0xffff) as u16, MessageType::Query, OpCode::Query);
                message.metadata.recursion_desired = true;
                message.add_query(Query::query(
                    Name::from_ascii(name(client, i)).unwrap(),
                    RecordType::A,
                ));
                socket.send(&message.to_vec().unwrap()).await.unwrap();
                // A lost datagram must not stall the client for the rest of the run.
                if let Ok(Ok(_)) =
                    tokio::time::timeout(Duration::from_secs(1), socket.recv(&mut buf)).await
                {
                    answered.fetch_add(1, Ordering::Relaxed);
                }
                i += 1;
            }
        }));
    }
    let start = Instant::now();
    for task in tasks {
        task.await.unwrap();
    }
    answered.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let clients = env("BENCH_CLIENTS", 32);
    let secs = env("BENCH_SECS", 3);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let (upstream, _server) = upstream().await;
        let metrics = Metrics::new();
        let (alerts_tx, mut alerts_rx) = mpsc::channel(1024);
        tokio::spawn(async move { while alerts_rx.recv().await.is_some() {} });
        let (_stop, stop_rx) = watch::channel(false);
        let config = DnsConfig {
            listen: Some("127.0.0.1:0".parse().unwrap()),
            upstream: vec![upstream],
            blocklists: Vec::new(),
            ..DnsConfig::default()
        };
        let hole = dns::start_with(&config, &metrics, alerts_tx, stop_rx)
            .await
            .unwrap();
        let Ok(Subject::Domain(evil)) = "evil.example".parse::<Subject>() else {
            unreachable!()
        };
        hole.set([(evil, SystemTime::now() + Duration::from_secs(3600))]);
        let sinkhole = hole.udp_addr();

        println!("{clients} clients, {secs} s per load, loopback, hickory upstream");
        let direct = load(upstream, clients, secs, |_, _| "www.example.".into()).await;
        let forwarded = load(sinkhole, clients, secs, |_, _| "www.example.".into()).await;
        let direct_unique =
            load(upstream, clients, secs, |c, i| format!("d{c}-{i}.example.")).await;
        let forwarded_unique =
            load(sinkhole, clients, secs, |c, i| format!("f{c}-{i}.example.")).await;
        let sinkholed = load(sinkhole, clients, secs, |c, i| {
            format!("q{c}-{i}.evil.example.")
        })
        .await;
        println!("direct, one name            {direct:>10.0} q/s");
        println!(
            "forwarded, one name (cache) {forwarded:>10.0} q/s  {:.2}x direct",
            forwarded / direct
        );
        println!("direct, unique names        {direct_unique:>10.0} q/s");
        println!(
            "forwarded, unique names     {forwarded_unique:>10.0} q/s  {:.2}x direct unique",
            forwarded_unique / direct_unique
        );
        println!(
            "sinkholed                   {sinkholed:>10.0} q/s  {:.2}x direct",
            sinkholed / direct
        );
    });
}
