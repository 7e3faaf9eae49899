//! The running agent, end to end, in network namespaces this benchmark creates (and
//! deletes). Run as root:
//!
//! ```sh
//! cargo bench -p swarmguard-agent --bench daemon
//! ```
//!
//! 1. **Attack packet → nftables element** on the attacked host: host `b` sends one UDP
//!    datagram matching a `drop` rule from a fresh source address; the agent on host `a`
//!    (`daemon::run` in-process: live capture, rule engine, decision stage, nftables
//!    backend) blocks it. The time is taken from just before the send to the moment
//!    `nft monitor` in host `a` reports the new element (median and p99 of 200).
//! 2. **Idle RSS with 10,000 active decisions**: the real `swarmd` binary started on a
//!    state dir holding 10,000 decisions, reconciled into nftables in host `a`, then left
//!    idle; `VmRSS` from `/proc`, beside the same agent with none.
//! 3. **Attack packet → nftables element on a host that was not attacked**: a swarm on a
//!    bridge (three `swarmd` processes with the default gossip settings and `decide.quorum
//!    = 2`, enrolled by identityd's library serving status lists from its own host). The
//!    attacker sends the attack datagram to agents 1 and 2, which block it and publish a
//!    signal each; the time is taken from just before the first send to the moment `nft
//!    monitor` in agent 3's host reports the element that the quorum made (median and p99
//!    of 100, one attack a second: the swarm allows each member one signal a second after
//!    a burst of 30).
//!
//! `cargo bench -p swarmguard-agent --bench daemon -- swarm` runs only the third.

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use swarmguard_agent::api::Metrics;
use swarmguard_agent::config::Config;
use swarmguard_agent::daemon::{self, Sockets};
use swarmguard_agent::decide::{Action, Decision, Origin};
use swarmguard_agent::detect::ChecksumMode;
use swarmguard_agent::enforce::{BackendKind, EnforceConfig, NftCommand, NftConfig};
use swarmguard_agent::sensor::capture::CaptureConfig;
use swarmguard_agent::store::{Durability, Store, StoreConfig};
use swarmguard_tests::netns::{Netns, sh};

const SAMPLES: u32 = 200;
const DECISIONS: u32 = 10_000;

/// The nftables backend acting on host `netns`.
fn nft(netns: &Netns) -> NftConfig {
    NftConfig {
        command: NftCommand::new(netns.nft_command()).expect("non-empty"),
        forward: false,
    }
}

fn source(i: u32) -> Ipv4Addr {
    Ipv4Addr::new(10, 79, 1 + (i / 250) as u8, 1 + (i % 250) as u8)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

/// The one `drop` rule every part of this benchmark attacks, written into `dir`.
fn bench_rules(dir: &std::path::Path) -> std::path::PathBuf {
    let rules = dir.join("bench.rules");
    std::fs::write(
        &rules,
        "drop udp any any -> any 9999 (msg:\"bench attack\"; content:\"swarmguard-bench-attack\"; sid:9200001; rev:1;)\n",
    )
    .unwrap();
    rules
}

/// `nft monitor new elements` in a host: every element its kernel adds, with when it was
/// seen. Killed on drop.
struct Monitor {
    child: std::process::Child,
    seen: mpsc::Receiver<(String, Instant)>,
}

impl Monitor {
    fn start(netns: &Netns) -> Monitor {
        let mut child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &netns.name,
                "nft",
                "monitor",
                "new",
                "elements",
            ])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let (seen_tx, seen) = mpsc::channel();
        let lines = BufReader::new(child.stdout.take().unwrap());
        std::thread::spawn(move || {
            for line in lines.lines() {
                let Ok(line) = line else { break };
                let _ = seen_tx.send((line, Instant::now()));
            }
        });
        Monitor { child, seen }
    }

    /// How long after `sent` the element for `addr` appeared.
    fn element(&self, addr: Ipv4Addr, sent: Instant) -> Duration {
        let wanted = addr.to_string();
        loop {
            let (line, at) = self
                .seen
                .recv_timeout(Duration::from_secs(30))
                .expect("the element within 30 s");
            if line.contains(&wanted) {
                return at - sent;
            }
        }
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends the attack datagram from `from` (an address of host `netns`) to port 9999 of each
/// target; returns when the first left.
fn attack(netns: &Netns, from: Ipv4Addr, targets: &[&str]) -> Instant {
    netns.run(|| {
        let socket = UdpSocket::bind(SocketAddr::from((from, 0))).unwrap();
        let at = Instant::now();
        for target in targets {
            socket
                .send_to(b"swarmguard-bench-attack", (*target, 9999))
                .unwrap();
        }
        at
    })
}

/// Prints median, p99 and max of `samples`.
fn report(what: &str, mut samples: Vec<Duration>) {
    samples.sort();
    println!(
        "{what}, {} samples: median {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        samples.len(),
        percentile(&samples, 0.5).as_secs_f64() * 1e3,
        percentile(&samples, 0.99).as_secs_f64() * 1e3,
        samples.last().unwrap().as_secs_f64() * 1e3,
    );
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn main() {
    let only_swarm = std::env::args().skip(1).any(|arg| arg == "swarm");
    if !only_swarm {
        attacked_host();
    }
    swarm::not_attacked_host();
}

fn attacked_host() {
    let id = std::process::id();
    let a = Netns::create(format!("sgbd-a-{id}"));
    let b = Netns::create(format!("sgbd-b-{id}"));
    sh(&[
        "ip", "link", "add", "sg0", "netns", &a.name, "type", "veth", "peer", "name", "sg0",
        "netns", &b.name,
    ]);
    a.exec(&["ip", "addr", "add", "10.79.0.1/16", "dev", "sg0"]);
    b.exec(&["ip", "addr", "add", "10.79.0.2/16", "dev", "sg0"]);
    for i in 0..SAMPLES {
        b.exec(&[
            "ip",
            "addr",
            "add",
            &format!("{}/16", source(i)),
            "dev",
            "sg0",
        ]);
    }
    a.exec(&["ip", "link", "set", "sg0", "up"]);
    b.exec(&["ip", "link", "set", "sg0", "up"]);

    latency(&a, &b);
    idle_rss(&a);
}

fn latency(a: &Netns, b: &Netns) {
    let dir = tempfile::tempdir().unwrap();
    let rules = bench_rules(dir.path());
    let config = Config {
        state_dir: dir.path().join("state"),
        rule_paths: vec![rules],
        scenario_paths: vec![],
        capture: CaptureConfig {
            interfaces: vec!["sg0".to_owned()],
            bpf: Some("udp port 9999".to_owned()),
            checksum: ChecksumMode::No,
            ..CaptureConfig::default()
        },
        enforce: EnforceConfig {
            backend: BackendKind::Nftables,
            nft: nft(a),
        },
        ..Config::default()
    };

    let monitor = Monitor::start(a);

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (up_tx, up_rx) = mpsc::channel::<()>();
    let agent = std::thread::scope(|scope| {
        let agent = scope.spawn(|| {
            a.run(|| {
                let runtime = tokio::runtime::Runtime::new().unwrap();
                runtime.block_on(async {
                    let metrics = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                    let metrics_addr = metrics.local_addr().unwrap();
                    let gossip = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
                    let task = tokio::spawn(daemon::run(
                        config,
                        Sockets {
                            metrics,
                            gossip,
                            admin: None,
                        },
                        async {
                            let _ = stop_rx.await;
                        },
                    ));
                    // Up once the capture reports it.
                    loop {
                        let text = http_metrics(metrics_addr).await;
                        if text.contains("swarmguard_capture_up{interface=\"sg0\"} 1") {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    up_tx.send(()).unwrap();
                    task.await.unwrap().unwrap();
                })
            })
        });
        up_rx.recv().unwrap();
        let mut samples = Vec::new();
        for i in 0..SAMPLES {
            let sent = attack(b, source(i), &["10.79.0.1"]);
            samples.push(monitor.element(source(i), sent));
        }
        let _ = stop_tx.send(());
        agent.join().unwrap();
        samples
    });
    drop(monitor);
    report(
        "attack packet -> nftables element on the attacked host",
        agent,
    );
}

async fn http_metrics(addr: SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).await.unwrap();
    text
}

fn idle_rss(a: &Netns) {
    for decisions in [0, DECISIONS] {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path(), StoreConfig::default(), &Metrics::new()).unwrap();
            let now = SystemTime::now();
            for i in 0..decisions {
                let decision = Decision {
                    subject: swarmguard_agent::subject::Subject::Ip(
                        Ipv4Addr::from(0x0b00_0000 + i).into(),
                    ),
                    action: Action::Block,
                    until: now + Duration::from_secs(3600),
                    origin: Origin::Local {
                        rule: "1:9200001".to_owned(),
                    },
                    reason: "[1:9200001:1] bench attack".to_owned(),
                    created: now,
                };
                store.put_decision(&decision, Durability::Lazy).unwrap();
            }
            store.flush().unwrap();
        }
        let socket = dir.path().join("agent.sock");
        let mut child = Command::new("ip")
            .args(["netns", "exec", &a.name])
            .arg(env!("CARGO_BIN_EXE_swarmd"))
            .args(["run", "--enforce", "nftables", "--state-dir"])
            .arg(dir.path())
            .arg("--socket")
            .arg(&socket)
            .args([
                "--metrics-listen",
                "127.0.0.1:0",
                "--gossip-listen",
                "127.0.0.1:0",
            ])
            .env("RUST_LOG", "warn")
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Ready (reconciled) once the admin socket answers with every decision active.
        let start = Instant::now();
        loop {
            let out = Command::new(env!("CARGO_BIN_EXE_swarmctl"))
                .arg("--socket")
                .arg(&socket)
                .args(["--json", "status"])
                .output()
                .unwrap();
            let status: Option<serde_json::Value> = serde_json::from_slice(&out.stdout).ok();
            if let Some(status) = status {
                let active = status["decisions"]["local"].as_u64().unwrap_or(0);
                if active == u64::from(decisions) && status["backend_loaded"] == true {
                    break;
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "agent never ready"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let ready = start.elapsed();
        std::thread::sleep(Duration::from_secs(15));
        let rss = rss_kib(child.id());
        println!(
            "swarmd idle with {decisions} active decisions (nftables, no capture): RSS {:.1} MiB (ready after {:.1} s)",
            rss as f64 / 1024.0,
            ready.as_secs_f64()
        );
        sh(&["kill", "-TERM", &child.id().to_string()]);
        let _ = child.wait();
    }
}

/// The third figure: see the module documentation.
mod swarm {
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Stdio};
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    use swarmguard_agent::swarm::credential;
    use swarmguard_identity::did::Did;
    use swarmguard_identity::membership::Role;
    use swarmguard_identity::service::Service;

    use swarmguard_tests::netns::{Bridge, Netns};

    use super::{Monitor, attack, bench_rules, report, source};

    const SAMPLES: u32 = 100;
    /// One attack per this: under the swarm's per-origin rate (1/s after a burst of 30).
    const PACE: Duration = Duration::from_millis(1050);
    const IDENTITY: &str = "10.79.0.5:8480";
    const AGENTS: [&str; 3] = ["10.79.0.1", "10.79.0.2", "10.79.0.3"];
    const ATTACKER: &str = "10.79.0.9";

    /// identityd's library in its own lab host: issues each agent's credential, then
    /// serves status lists until `stop`.
    fn identity(
        netns: &Netns,
        dir: PathBuf,
        agents: Vec<String>,
        stop: tokio::sync::oneshot::Receiver<()>,
    ) -> (String, Vec<String>, std::thread::JoinHandle<()>) {
        let (issued_tx, issued) = mpsc::channel();
        let name = netns.name.clone();
        let thread = std::thread::spawn(move || {
            swarmguard_tests::netns::enter(&name);
            let runtime = tokio::runtime::Runtime::new().unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind(IDENTITY).await.unwrap();
                let config = swarmguard_identity::config::Config {
                    state_dir: dir,
                    listen: listener.local_addr().unwrap(),
                    ..swarmguard_identity::config::Config::default()
                };
                let service = std::sync::Arc::new(Service::open(config).unwrap());
                let mut jwts = Vec::new();
                for did in &agents {
                    let did = Did::parse(did).unwrap();
                    jwts.push(service.issue_member(&did, Role::Sensor).await.unwrap());
                }
                issued_tx
                    .send((service.key.did().as_str().to_owned(), jwts))
                    .unwrap();
                let app = swarmguard_identity::server::router(service, vec![]);
                axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stop.await;
                    })
                    .await
                    .unwrap();
            });
        });
        let (issuer, jwts) = issued.recv().expect("credentials issued");
        (issuer, jwts, thread)
    }

    struct Agent {
        netns: String,
        dir: PathBuf,
        child: Child,
    }

    impl Agent {
        fn start(netns: &Netns, dir: &Path, addr: &str, issuer: &str, rules: &Path) -> Agent {
            let config = dir.join("agent.toml");
            std::fs::write(
                &config,
                format!(
                    "[capture]\ninterfaces = [\"eth0\"]\nbpf = \"udp port 9999\"\nchecksum = \"no\"\n\
                     [rules]\npaths = [{rules:?}]\nscenarios = []\n\
                     [decide]\nquorum = 2\n\
                     [gossip]\nlisten = \"{addr}:7300\"\nseeds = [\"{seed}:7300\"]\n\
                     trusted_issuers = [\"{issuer}\"]\n",
                    seed = AGENTS[0],
                ),
            )
            .unwrap();
            let child = Command::new("ip")
                .args(["netns", "exec", &netns.name])
                .arg(env!("CARGO_BIN_EXE_swarmd"))
                .arg("run")
                .arg("--config")
                .arg(&config)
                .arg("--state-dir")
                .arg(dir.join("state"))
                .arg("--socket")
                .arg(dir.join("agent.sock"))
                .args([
                    "--metrics-listen",
                    "127.0.0.1:9480",
                    "--enforce",
                    "nftables",
                ])
                .env("RUST_LOG", "warn")
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            Agent {
                netns: netns.name.clone(),
                dir: dir.to_owned(),
                child,
            }
        }

        fn json(&self, args: &[&str]) -> Option<serde_json::Value> {
            let out = Command::new(env!("CARGO_BIN_EXE_swarmctl"))
                .arg("--socket")
                .arg(self.dir.join("agent.sock"))
                .arg("--json")
                .args(args)
                .output()
                .unwrap();
            serde_json::from_slice(&out.stdout).ok()
        }

        /// Capturing, and every other agent admitted and alive.
        fn ready(&self) -> bool {
            let alive = self
                .json(&["status"])
                .is_some_and(|status| status["members_alive"] == 2);
            let capturing = self.json(&["metrics"]).is_some_and(|families| {
                families.as_array().is_some_and(|families| {
                    families.iter().any(|f| {
                        f["name"] == "swarmguard_capture_up"
                            && f["samples"]["interface=eth0"] == 1.0
                    })
                })
            });
            alive && capturing
        }
    }

    impl Drop for Agent {
        fn drop(&mut self) {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
            let _ = self.child.wait();
            let _ = Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &self.netns,
                    "nft",
                    "delete",
                    "table",
                    "inet",
                    "swarmguard",
                ])
                .stderr(Stdio::null())
                .status();
        }
    }

    pub(crate) fn not_attacked_host() {
        let id = std::process::id();
        let mut switch = Bridge::new(format!("sgbs-sw-{id}"));
        let idp = switch.host(format!("sgbs-idp-{id}"), "10.79.0.5/16");
        let hosts: Vec<Netns> = AGENTS
            .iter()
            .enumerate()
            .map(|(i, addr)| switch.host(format!("sgbs-ag{}-{id}", i + 1), &format!("{addr}/16")))
            .collect();
        let attacker = switch.host(format!("sgbs-atk-{id}"), &format!("{ATTACKER}/16"));
        for i in 0..SAMPLES {
            attacker.exec(&[
                "ip",
                "addr",
                "add",
                &format!("{}/16", source(i)),
                "dev",
                "eth0",
            ]);
        }

        let dir = tempfile::tempdir().unwrap();
        let rules = bench_rules(dir.path());
        let dirs: Vec<PathBuf> = (1..=AGENTS.len())
            .map(|i| dir.path().join(format!("agent{i}")))
            .collect();
        let dids: Vec<String> = dirs
            .iter()
            .map(|d| {
                let key = credential::load_or_create_key(&d.join("state")).unwrap();
                key.peer_id().to_did()
            })
            .collect();
        let (stop_identity, stop) = tokio::sync::oneshot::channel();
        let (issuer, jwts, identity) = identity(&idp, dir.path().join("identity"), dids, stop);
        for (d, jwt) in dirs.iter().zip(&jwts) {
            let path = d.join("state").join(credential::CREDENTIAL_FILE);
            credential::write_credential(&path, jwt).unwrap();
        }

        let monitor = Monitor::start(&hosts[2]);

        let agents: Vec<Agent> = hosts
            .iter()
            .zip(&dirs)
            .zip(AGENTS)
            .map(|((netns, d), addr)| Agent::start(netns, d, addr, &issuer, &rules))
            .collect();
        let start = Instant::now();
        while !agents.iter().all(Agent::ready) {
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "the swarm never formed"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        println!(
            "swarm of 3 formed (admitted, alive, capturing) {:.1} s after start",
            start.elapsed().as_secs_f64()
        );

        let mut samples = Vec::new();
        for i in 0..SAMPLES {
            let sent = attack(&attacker, source(i), &AGENTS[..2]);
            samples.push(monitor.element(source(i), sent));
            std::thread::sleep(PACE.saturating_sub(sent.elapsed()));
        }
        drop(agents);
        drop(monitor);
        let _ = stop_identity.send(());
        identity.join().unwrap();
        drop((hosts, attacker, idp, switch));
        report(
            "attack packet -> nftables element on a host that was NOT attacked (quorum 2 of 3, default gossip)",
            samples,
        );
    }
}
