//! Three `swarmd` processes form a swarm over QUIC on loopback, enrolled with the two
//! documented commands (`swarmctl credential did` / `request`) against a real `identityd`;
//! a signal published by one (its local block of an sshd brute force) reaches the two
//! others exactly once; a killed agent is declared failed by the others, and rejoins when
//! restarted.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use swarmguard_tests::{command, workspace_root};

fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET path` over HTTP/1.0; `None` while nothing listens.
fn http_get(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    Some(response)
}

/// Waits until `done` holds; the deadline only turns a hang into a failure.
fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while !done() {
        assert!(Instant::now() < deadline, "gave up waiting: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The value of an unlabelled metric of the agent whose metrics port is `port`.
fn metric(port: u16, name: &str) -> Option<f64> {
    let text = http_get(port, "/metrics")?;
    text.lines().find_map(|line| {
        line.strip_prefix(name)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|value| value.trim().parse().ok())
    })
}

struct Agent {
    metrics: u16,
    config: std::path::PathBuf,
    child: Option<Child>,
}

impl Agent {
    fn start(&mut self) {
        let child = command("swarmd")
            .args(["run", "--config"])
            .arg(&self.config)
            .env("SWARMGUARD_TEST", "1")
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn members(&self) -> Option<f64> {
        metric(self.metrics, "swarmguard_swarm_members")
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
    }
}

fn swarmctl(args: &[&str], state: &Path) -> String {
    let output = command("swarmctl")
        .args(args)
        .arg("--state-dir")
        .arg(state)
        .output()
        .unwrap();
    assert!(output.status.success(), "swarmctl {args:?}: {output:?}");
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn three_agents_enrolled_with_two_commands_share_a_signal_once_and_survive_a_crash() {
    let work = tempfile::tempdir().unwrap();
    let identity_port = free_tcp_port();
    let identity_state = work.path().join("identity");
    let mut identityd = command("identityd")
        .args(["serve", "--listen", &format!("127.0.0.1:{identity_port}")])
        .arg("--state-dir")
        .arg(&identity_state)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut issuer = String::new();
    wait_for("identityd answers", || {
        let Some(doc) = http_get(identity_port, "/.well-known/did.json") else {
            return false;
        };
        let Some(start) = doc.find("did:key:z") else {
            return false;
        };
        issuer = doc[start..]
            .split(['"', '#'])
            .next()
            .unwrap_or_default()
            .to_owned();
        identity_state.join("admin.token").exists()
    });

    // Agent 0 follows an auth log through the shipped sshd brute-force scenario.
    let auth_log = work.path().join("auth.log");
    std::fs::write(&auth_log, "").unwrap();
    let scenarios = work.path().join("scenarios.d");
    std::fs::create_dir(&scenarios).unwrap();
    let shipped =
        std::fs::read_to_string(workspace_root().join("rules/scenarios/sshd-bf.toml")).unwrap();
    let sources = shipped
        .lines()
        .find(|line| line.starts_with("sources = "))
        .unwrap();
    std::fs::write(
        scenarios.join("sshd-bf.toml"),
        shipped.replace(sources, &format!("sources = [{auth_log:?}]")),
    )
    .unwrap();

    let gossip: Vec<u16> = (0..3).map(|_| free_udp_port()).collect();
    let mut agents = Vec::new();
    for (index, port) in gossip.iter().enumerate() {
        let state = work.path().join(format!("agent{index}"));
        let did = swarmctl(&["credential", "did"], &state);
        assert!(did.starts_with("did:key:z"), "{did}");
        swarmctl(
            &[
                "credential",
                "request",
                "--identity",
                &format!("http://127.0.0.1:{identity_port}"),
                "--token-file",
                identity_state.join("admin.token").to_str().unwrap(),
            ],
            &state,
        );
        let metrics = free_tcp_port();
        let config = work.path().join(format!("agent{index}.toml"));
        std::fs::write(
            &config,
            format!(
                "[agent]\nstate_dir = {state:?}\n[api]\nmetrics_listen = \"127.0.0.1:{metrics}\"\nsocket = {socket:?}\n\
                 [gossip]\nlisten = \"127.0.0.1:{port}\"\nseeds = [\"127.0.0.1:{seed}\"]\n\
                 trusted_issuers = [\"{issuer}\"]\ninterval = \"100ms\"\nstatus_refresh = \"1s\"\n\
                 [enforce]\nbackend = \"dry-run\"\n[logs]\npoll_interval = \"50ms\"\n\
                 [rules]\npaths = []\nscenarios = [{scenarios:?}]\n",
                seed = gossip[0],
                socket = state.join("agent.sock"),
                scenarios = if index == 0 { scenarios.to_str().unwrap() } else { "/nonexistent" },
            ),
        )
        .unwrap();
        let mut agent = Agent {
            metrics,
            config,
            child: None,
        };
        agent.start();
        agents.push(agent);
    }
    wait_for("every agent sees the two others", || {
        agents.iter().all(|a| a.members() == Some(2.0))
    });

    // An sshd brute force against agent 0: it blocks locally and publishes a signal.
    let attack = std::fs::read_to_string(workspace_root().join("agent/demo/auth.log")).unwrap();
    std::fs::write(&auth_log, &attack).unwrap();
    let received = |agent: &Agent| metric(agent.metrics, "swarmguard_swarm_signals_received_total");
    wait_for("the signal reaches both other agents", || {
        agents[1..].iter().all(|a| received(a) == Some(1.0))
    });
    assert_eq!(
        metric(
            agents[0].metrics,
            "swarmguard_swarm_signals_published_total"
        ),
        Some(1.0)
    );
    // Ten more gossip rounds of push and anti-entropy deliver it no second time.
    std::thread::sleep(Duration::from_secs(1));
    for agent in &agents[1..] {
        assert_eq!(received(agent), Some(1.0), "each signal exactly once");
    }

    agents[2].kill();
    wait_for("the crashed agent is declared failed", || {
        agents[..2].iter().all(|a| a.members() == Some(1.0))
    });
    agents[2].start();
    wait_for("the restarted agent rejoins", || {
        agents.iter().all(|a| a.members() == Some(2.0))
    });
    for agent in &agents {
        assert_eq!(
            metric(
                agent.metrics,
                "swarmguard_swarm_admission_rejected_total{reason=\"key_mismatch\"}"
            ),
            Some(0.0)
        );
    }
    drop(agents);
    let _ = identityd.kill();
    let _ = identityd.wait();
}
