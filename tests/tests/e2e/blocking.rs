//! Real agents blocking a real attacker: hosts in network namespaces on one bridge, each
//! agent a `swarmd run` process inside its host with live capture, the bundled rules and
//! the nftables backend; `swarmctl` on their admin sockets; real packets to check the
//! kernel.
//!
//! ```text
//!            switch namespace: bridge sgbr
//!   ┌──────────┬──────────┬──────────┬──────────┬──────────┐
//!  ag1        ag2        ag3        atk        oth
//!  10.88.0.1  10.88.0.2  10.88.0.3  10.88.0.66 10.88.0.77
//!  swarmd     swarmd     swarmd     attacker   another host
//! ```
//!
//! The attacker sends empty UDP probes (rule 9000007 of `rules/suricata/scan.rules`, 30 in
//! 5 s from one source) to agents 1 and 2; both block it locally and tell the swarm. Agent 3
//! is never attacked and blocks it by quorum (`decide.quorum = 2`). The swarm is real:
//! `identityd` runs on its own lab host (`idp`, 10.88.0.5), each agent is enrolled with the
//! documented commands (`swarmctl credential did` / `request`, run inside its host), gossip
//! listens on the agent's bridge address and joins through agent 1, and every status list
//! is fetched from identityd inside the lab.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde_json::Value;
use swarmguard_tests::netns::{Bridge, Netns, sh};
use swarmguard_tests::{bin, workspace_root};

const ATTACKER: &str = "10.88.0.66";
const OTHER: &str = "10.88.0.77";
/// identityd's lab host and where it listens; credentials name status lists under it.
const IDENTITY: &str = "10.88.0.5:8480";
/// Every agent joins the swarm through agent 1.
const SEED: &str = "10.88.0.1:7300";
/// The port the test listens on in each agent host, to see what gets through.
const PROBE_PORT: u16 = 7777;

/// The switch and its hosts; hosts are dropped (deleted) before the switch.
struct Lab {
    hosts: Vec<(String, Netns)>,
    _switch: Bridge,
}

impl Lab {
    fn new(hosts: &[(&str, &str)]) -> Lab {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let id = format!(
            "{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let mut switch = Bridge::new(format!("sge2e-sw-{id}"));
        let hosts = hosts
            .iter()
            .map(|(name, addr)| {
                let host = switch.host(format!("sge2e-{name}-{id}"), &format!("{addr}/24"));
                ((*name).to_owned(), host)
            })
            .collect();
        Lab {
            hosts,
            _switch: switch,
        }
    }

    fn host(&self, name: &str) -> &Netns {
        &self.hosts.iter().find(|(n, _)| n == name).unwrap().1
    }

    /// Sends `payload` over UDP from host `from` to `to:port`.
    fn send(&self, from: &str, to: &str, port: u16, payload: &[u8], count: usize) {
        let to: SocketAddr = format!("{to}:{port}").parse().unwrap();
        self.host(from).run(|| {
            let socket = UdpSocket::bind("0.0.0.0:0").unwrap();
            for _ in 0..count {
                socket.send_to(payload, to).unwrap();
            }
        });
    }
}

/// One `swarmd run` inside a lab host.
struct Agent {
    netns: String,
    dir: PathBuf,
    child: Option<Child>,
}

impl Agent {
    /// Writes the agent's configuration: gossip on `addr` (its bridge address), joining
    /// through [`SEED`], trusting `issuer`.
    fn configure(dir: &Path, addr: &str, issuer: &str) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(
            dir.join("agent.toml"),
            format!(
                "[capture]\ninterfaces = [\"eth0\"]\nbpf = \"udp\"\n\
                 # veth leaves checksums to offload.\nchecksum = \"no\"\n\
                 [rules]\npaths = [{rules:?}]\nscenarios = []\n\
                 [decide]\n# The bundled scan rules are medium (attempted-recon).\nblock_severity = \"medium\"\nquorum = 2\n\
                 [gossip]\nlisten = \"{addr}:7300\"\nseeds = [\"{SEED}\"]\n\
                 trusted_issuers = [\"{issuer}\"]\ninterval = \"100ms\"\nstatus_refresh = \"1s\"\n",
                rules = workspace_root().join("rules/suricata"),
            ),
        )
        .unwrap();
    }

    /// Enrols the agent with the two documented commands, run inside its host: its key and
    /// DID, then a membership credential from identityd.
    fn enrol(netns: &Netns, dir: &Path, token: &Path) {
        let state = dir.join("state");
        let state = state.to_str().unwrap();
        let swarmctl = bin("swarmctl");
        let swarmctl = swarmctl.to_str().unwrap();
        let did = netns.exec(&[swarmctl, "credential", "did", "--state-dir", state]);
        assert!(did.starts_with("did:key:z"), "{did}");
        netns.exec(&[
            swarmctl,
            "credential",
            "request",
            "--identity",
            &format!("http://{IDENTITY}"),
            "--token-file",
            token.to_str().unwrap(),
            "--state-dir",
            state,
        ]);
    }

    fn start(netns: &Netns, dir: &Path) -> Agent {
        let config = dir.join("agent.toml");
        // Appended to, so that a restarted agent's log follows the first run's.
        let log = File::options()
            .create(true)
            .append(true)
            .open(dir.join("swarmd.log"))
            .unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &netns.name])
            .arg(bin("swarmd"))
            .arg("run")
            .arg("--config")
            .arg(&config)
            .arg("--state-dir")
            .arg(dir.join("state"))
            .arg("--socket")
            .arg(dir.join("agent.sock"))
            .args(["--metrics-listen", "127.0.0.1:9480"])
            .args(["--enforce", "nftables"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let agent = Agent {
            netns: netns.name.clone(),
            dir: dir.to_owned(),
            child: Some(child),
        };
        agent.wait_for("capture up", |agent| {
            agent.metric("swarmguard_capture_up", "interface=eth0") == Some(1.0)
        });
        agent
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("agent.sock")
    }

    fn swarmctl(&self, args: &[&str]) -> std::process::Output {
        Command::new(bin("swarmctl"))
            .arg("--socket")
            .arg(self.socket())
            .args(args)
            .output()
            .unwrap()
    }

    fn json(&self, args: &[&str]) -> Option<Value> {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.swarmctl(&all);
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).unwrap())
    }

    fn metric(&self, name: &str, labels: &str) -> Option<f64> {
        let families = self.json(&["metrics"])?;
        families
            .as_array()?
            .iter()
            .find(|f| f["name"] == name)?
            .get("samples")?
            .get(labels)?
            .as_f64()
    }

    /// The value of an unlabelled metric (its family's total).
    fn metric_total(&self, name: &str) -> Option<f64> {
        let families = self.json(&["metrics"])?;
        families
            .as_array()?
            .iter()
            .find(|f| f["name"] == name)?
            .get("total")?
            .as_f64()
    }

    /// The decision on `subject`, as `swarmctl decisions list --json` shows it.
    fn decision(&self, subject: &str) -> Option<Value> {
        self.json(&["decisions", "list"])?
            .as_array()?
            .iter()
            .find(|d| d["subject"] == subject)
            .cloned()
    }

    fn decisions(&self) -> Vec<String> {
        self.json(&["decisions", "list"])
            .and_then(|list| {
                list.as_array().map(|list| {
                    list.iter()
                        .map(|d| d["subject"].as_str().unwrap_or("").to_owned())
                        .collect()
                })
            })
            .unwrap_or_default()
    }

    /// Polls `check` until it holds, with a safety limit (~60 s) so that a broken agent
    /// fails the test instead of hanging it.
    fn wait_for(&self, what: &str, check: impl Fn(&Agent) -> bool) {
        for _ in 0..600 {
            if check(self) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let log = std::fs::read_to_string(self.dir.join("swarmd.log")).unwrap_or_default();
        panic!("{}: {what} never happened; log:\n{log}", self.netns);
    }

    /// Whether this host's kernel set holds `addr`.
    fn kernel_blocks(&self, addr: &str) -> bool {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.netns])
            .args(["nft", "list", "set", "inet", "swarmguard", "v4_addrs"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).contains(addr)
    }

    /// Packets the input chain's IPv4 address rule has dropped.
    fn dropped(&self) -> u64 {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.netns])
            .args(["nft", "list", "chain", "inet", "swarmguard", "input"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .find(|line| line.contains("@v4_addrs"))
            .and_then(|line| {
                let mut words = line.split_whitespace();
                words.find(|w| *w == "packets")?;
                words.next()?.parse().ok()
            })
            .unwrap_or(0)
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // `ip netns exec` runs swarmd in its own process (exec), so the pid is swarmd's.
            sh(&["kill", "-TERM", &child.id().to_string()]);
            let status = child.wait().unwrap();
            assert!(
                status.success(),
                "{}: swarmd exited with {status}",
                self.netns
            );
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `identityd serve` on its lab host, listening on [`IDENTITY`]; killed on drop.
struct Identityd {
    child: Child,
    /// The issuer's `did:key`, which the agents trust.
    issuer: String,
    /// The admin token enrolment presents.
    token: PathBuf,
}

impl Identityd {
    fn start(netns: &Netns, dir: &Path) -> Identityd {
        let state = dir.join("identity");
        let log = File::create(dir.join("identityd.log")).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &netns.name])
            .arg(bin("identityd"))
            .args(["serve", "--listen", IDENTITY, "--state-dir"])
            .arg(&state)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut identityd = Identityd {
            child,
            issuer: String::new(),
            token: state.join("admin.token"),
        };
        for _ in 0..600 {
            let doc = netns.run(|| http_get(IDENTITY, "/.well-known/did.json"));
            if let Some(start) = doc.as_deref().and_then(|doc| doc.find("did:key:z")) {
                let doc = doc.unwrap();
                identityd.issuer = doc[start..]
                    .split(['"', '#'])
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                if identityd.token.exists() {
                    return identityd;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let log = std::fs::read_to_string(dir.join("identityd.log")).unwrap_or_default();
        panic!("identityd never answered; log:\n{log}");
    }
}

impl Drop for Identityd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET path` over HTTP/1.0 from the calling thread's namespace; `None` while nothing
/// listens.
fn http_get(addr: &str, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(addr).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    Some(response)
}

/// A UDP listener in `host` on [`PROBE_PORT`].
fn listen(host: &Netns) -> UdpSocket {
    let socket = host.run(|| UdpSocket::bind(("0.0.0.0", PROBE_PORT)).unwrap());
    // A safety net so that a broken test fails instead of hanging; no check relies on it.
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    socket
}

/// Receives until a datagram from `from` arrives; panics after the safety timeout.
fn receive_from(socket: &UdpSocket, from: &str) {
    let mut buf = [0u8; 512];
    loop {
        let (_, sender) = socket
            .recv_from(&mut buf)
            .unwrap_or_else(|err| panic!("nothing from {from}: {err}"));
        if sender.ip().to_string() == from {
            return;
        }
    }
}

/// The attacker's probe to `agent` is dropped by the kernel (its drop counter rises) and
/// another host's datagram still arrives.
fn assert_blocked(lab: &Lab, agent: &Agent, socket: &UdpSocket, addr: &str) {
    let before = agent.dropped();
    lab.send("atk", addr, PROBE_PORT, b"probe", 1);
    agent.wait_for("the attacker's probe dropped", |a| a.dropped() > before);
    lab.send("oth", addr, PROBE_PORT, b"hello", 1);
    receive_from(socket, OTHER);
}

#[test]
fn agents_block_an_attacker_in_the_kernel_keep_it_across_a_restart_and_lift_it_on_request() {
    let lab = Lab::new(&[
        ("ag1", "10.88.0.1"),
        ("ag2", "10.88.0.2"),
        ("ag3", "10.88.0.3"),
        ("idp", "10.88.0.5"),
        ("atk", ATTACKER),
        ("oth", OTHER),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let identityd = Identityd::start(lab.host("idp"), dir.path());
    let hosts = [
        ("ag1", "10.88.0.1"),
        ("ag2", "10.88.0.2"),
        ("ag3", "10.88.0.3"),
    ];
    let mut agents: Vec<Agent> = hosts
        .iter()
        .map(|(name, addr)| {
            let agent_dir = dir.path().join(name);
            Agent::configure(&agent_dir, addr, &identityd.issuer);
            Agent::enrol(lab.host(name), &agent_dir, &identityd.token);
            Agent::start(lab.host(name), &agent_dir)
        })
        .collect();
    for agent in &agents {
        agent.wait_for("the two other agents admitted", |a| {
            a.metric_total("swarmguard_swarm_members") == Some(2.0)
        });
    }
    let sockets: Vec<UdpSocket> = ["ag1", "ag2", "ag3"]
        .iter()
        .map(|name| listen(lab.host(name)))
        .collect();

    // Before the attack, the attacker reaches everyone.
    for (index, addr) in ["10.88.0.1", "10.88.0.2", "10.88.0.3"].iter().enumerate() {
        lab.send("atk", addr, PROBE_PORT, b"hello", 1);
        receive_from(&sockets[index], ATTACKER);
    }

    // The attack: bursts of empty UDP probes to agents 1 and 2, until each has decided.
    for (index, addr) in [(0, "10.88.0.1"), (1, "10.88.0.2")] {
        let agent = &agents[index];
        for _ in 0..30 {
            if agent.decisions().iter().any(|s| s == ATTACKER) {
                break;
            }
            lab.send("atk", addr, 40000, b"", 40);
            std::thread::sleep(Duration::from_millis(500));
        }
        agent.wait_for("the attacker blocked", |a| {
            a.decisions().iter().any(|s| s == ATTACKER) && a.kernel_blocks(ATTACKER)
        });
        assert_blocked(&lab, agent, &sockets[index], addr);
        let alerts = agent.json(&["alerts"]).unwrap();
        assert!(
            alerts
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a["rule"] == "1:9000007" && a["outcome"] == "blocked"),
            "{alerts:#}"
        );
    }

    // Agent 3 was never attacked: it blocks by the quorum of agents 1 and 2's signals.
    agents[2].wait_for("the swarm's quorum", |a| {
        a.decision(ATTACKER).is_some() && a.kernel_blocks(ATTACKER)
    });
    let decision = agents[2].decision(ATTACKER).unwrap();
    assert!(decision["origin"].get("quorum").is_some(), "{decision:#}");
    assert_blocked(&lab, &agents[2], &sockets[2], "10.88.0.3");

    // A restart keeps the block: in the kernel all along, and in the store.
    agents[2].stop();
    assert!(
        agents[2].kernel_blocks(ATTACKER),
        "the block outlived the agent"
    );
    agents[2] = Agent::start(lab.host("ag3"), &dir.path().join("ag3"));
    assert_eq!(agents[2].decisions(), [ATTACKER]);
    assert!(agents[2].kernel_blocks(ATTACKER));
    assert_blocked(&lab, &agents[2], &sockets[2], "10.88.0.3");

    // The operator lifts it, on agent 3 (a quorum decision) and on agent 1 (a local one);
    // traffic flows again. The attack has stopped, so no new signal re-makes either.
    for (index, addr) in [(2, "10.88.0.3"), (0, "10.88.0.1")] {
        let out = agents[index].swarmctl(&["decisions", "delete", ATTACKER]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!agents[index].kernel_blocks(ATTACKER));
        lab.send("atk", addr, PROBE_PORT, b"hello", 1);
        receive_from(&sockets[index], ATTACKER);
        assert_eq!(agents[index].decision(ATTACKER), None);
    }

    for agent in &mut agents {
        agent.stop();
    }
}

#[test]
fn sighup_reloads_rules_and_keeps_the_old_ones_when_a_file_is_bad() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.d");
    std::fs::create_dir(&rules).unwrap();
    std::fs::write(
        rules.join("good.rules"),
        "alert udp any any -> any 9999 (msg:\"one\"; content:\"x\"; sid:9100001; rev:1;)\n",
    )
    .unwrap();
    let socket = dir.path().join("agent.sock");
    let mut child = Command::new(bin("swarmd"))
        .args(["run", "--state-dir"])
        .arg(dir.path().join("state"))
        .arg("--socket")
        .arg(&socket)
        .args([
            "--metrics-listen",
            "127.0.0.1:0",
            "--gossip-listen",
            "127.0.0.1:0",
        ])
        .args(["--enforce", "dry-run", "--config"])
        .arg({
            let config = dir.path().join("agent.toml");
            std::fs::write(
                &config,
                format!("[rules]\npaths = [{rules:?}]\nscenarios = []\n"),
            )
            .unwrap();
            config
        })
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let status = |key: &str| -> Option<Value> {
        let out = Command::new(bin("swarmctl"))
            .arg("--socket")
            .arg(&socket)
            .args(["--json", "status"])
            .output()
            .unwrap();
        let value: Value = serde_json::from_slice(&out.stdout).ok()?;
        Some(value["rules"][key].clone())
    };
    let wait = |check: &dyn Fn() -> bool| {
        for _ in 0..300 {
            if check() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the agent never got there");
    };
    wait(&|| status("packet_rules") == Some(Value::from(1)));

    std::fs::write(
        rules.join("bad.rules"),
        "alert udp any any -> any 9999 (msg:\"two\"; content:\"y\"; sid:9100002; rev:1;)\nalert udp any any -> any (msg:\"broken\"; sid:9100003;)\n",
    )
    .unwrap();
    sh(&["kill", "-HUP", &child.id().to_string()]);
    wait(&|| status("last_reload").is_some_and(|r| !r.is_null()));
    let report = status("last_reload").unwrap();
    assert_eq!(report["rules_applied"], false);
    assert!(
        report["rule_errors"][0]
            .as_str()
            .unwrap()
            .contains("bad.rules:2:"),
        "{report}"
    );
    assert_eq!(
        status("packet_rules"),
        Some(Value::from(1)),
        "old rules kept"
    );

    std::fs::write(
        rules.join("bad.rules"),
        "alert udp any any -> any 9999 (msg:\"two\"; content:\"y\"; sid:9100002; rev:1;)\n",
    )
    .unwrap();
    sh(&["kill", "-HUP", &child.id().to_string()]);
    wait(&|| status("packet_rules") == Some(Value::from(2)));
    assert_eq!(status("last_reload").unwrap()["rules_applied"], true);

    sh(&["kill", "-TERM", &child.id().to_string()]);
    assert!(child.wait().unwrap().success());
}
