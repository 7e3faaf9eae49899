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
    /// Its admin socket, for `swarmctl --socket`.
    socket: std::path::PathBuf,
    did: String,
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

    /// `swarmctl --socket SOCKET ARGS` against this agent.
    fn ctl(&self, args: &[&str]) -> std::process::Output {
        command("swarmctl")
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .output()
            .unwrap()
    }

    /// The decision in force on `subject`, as `swarmctl --json decisions list` shows it.
    fn decision(&self, subject: &str) -> Option<serde_json::Value> {
        let out = self.ctl(&["--json", "decisions", "list"]);
        let list: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        list.as_array()?
            .iter()
            .find(|d| d["subject"] == subject)
            .cloned()
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

/// A real `identityd serve` on loopback, killed on drop.
struct Identityd {
    port: u16,
    /// Its DID: what agents trust.
    issuer: String,
    state: std::path::PathBuf,
    child: Child,
}

impl Identityd {
    fn start(work: &Path) -> Identityd {
        let port = free_tcp_port();
        let state = work.join("identity");
        let child = command("identityd")
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--state-dir")
            .arg(&state)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut issuer = String::new();
        wait_for("identityd answers", || {
            let Some(doc) = http_get(port, "/.well-known/did.json") else {
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
            state.join("admin.token").exists()
        });
        Identityd {
            port,
            issuer,
            state,
            child,
        }
    }
}

impl Drop for Identityd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Enrols and starts one agent per role, gossiping on loopback and joining through the
/// first; `scenarios` (a folder) runs on the first agent only.
fn start_agents(
    work: &Path,
    identityd: &Identityd,
    roles: &[&str],
    scenarios: Option<&Path>,
) -> Vec<Agent> {
    let gossip: Vec<u16> = roles.iter().map(|_| free_udp_port()).collect();
    let mut agents = Vec::new();
    for (index, (port, role)) in gossip.iter().zip(roles).enumerate() {
        let state = work.join(format!("agent{index}"));
        let did = swarmctl(&["credential", "did"], &state);
        assert!(did.starts_with("did:key:z"), "{did}");
        swarmctl(
            &[
                "credential",
                "request",
                "--identity",
                &format!("http://127.0.0.1:{}", identityd.port),
                "--token-file",
                identityd.state.join("admin.token").to_str().unwrap(),
                "--role",
                role,
            ],
            &state,
        );
        let metrics = free_tcp_port();
        let config = work.join(format!("agent{index}.toml"));
        let socket = state.join("agent.sock");
        let scenarios = match scenarios {
            Some(folder) if index == 0 => folder.to_str().unwrap().to_owned(),
            _ => "/nonexistent".to_owned(),
        };
        std::fs::write(
            &config,
            format!(
                "[agent]\nstate_dir = {state:?}\n[api]\nmetrics_listen = \"127.0.0.1:{metrics}\"\nsocket = {socket:?}\n\
                 [gossip]\nlisten = \"127.0.0.1:{port}\"\nseeds = [\"127.0.0.1:{seed}\"]\n\
                 trusted_issuers = [\"{issuer}\"]\ninterval = \"100ms\"\nstatus_refresh = \"1s\"\n\
                 [enforce]\nbackend = \"dry-run\"\n[logs]\npoll_interval = \"50ms\"\n\
                 [rules]\npaths = []\nscenarios = [{scenarios:?}]\n",
                seed = gossip[0],
                issuer = identityd.issuer,
            ),
        )
        .unwrap();
        let mut agent = Agent {
            metrics,
            config,
            socket,
            did: did.trim().to_owned(),
            child: None,
        };
        agent.start();
        agents.push(agent);
    }
    agents
}

#[test]
fn three_agents_enrolled_with_two_commands_share_a_signal_once_and_survive_a_crash() {
    let work = tempfile::tempdir().unwrap();
    let identityd = Identityd::start(work.path());

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

    let mut agents = start_agents(
        work.path(),
        &identityd,
        &["sensor", "sensor", "sensor"],
        Some(&scenarios),
    );
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
}

#[test]
fn an_agent_with_an_operator_credential_blocks_and_lifts_swarm_wide() {
    let work = tempfile::tempdir().unwrap();
    let identityd = Identityd::start(work.path());
    let agents = start_agents(
        work.path(),
        &identityd,
        &["operator", "sensor", "sensor"],
        None,
    );
    wait_for("every agent sees the two others", || {
        agents.iter().all(|a| a.members() == Some(2.0))
    });
    let (operator, sensors) = (&agents[0], &agents[1..]);

    // A sensor's agent may not decide for the swarm.
    let refused = sensors[0].ctl(&[
        "decisions",
        "add",
        "203.0.113.77",
        "--duration",
        "4h",
        "--swarm",
    ]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("needs an operator credential"),
        "{refused:?}"
    );

    let added = operator.ctl(&[
        "decisions",
        "add",
        "203.0.113.77",
        "--duration",
        "4h",
        "--reason",
        "SOC ticket 7",
        "--swarm",
    ]);
    assert!(added.status.success(), "{added:?}");
    let by_operator = serde_json::json!({ "operator": { "did": operator.did } });
    wait_for("every member enforces the operator's decision", || {
        sensors.iter().all(|a| {
            a.decision("203.0.113.77")
                .is_some_and(|d| d["origin"] == by_operator)
        })
    });
    assert_eq!(
        operator.decision("203.0.113.77").unwrap()["origin"],
        by_operator
    );
    let decision = sensors[1].decision("203.0.113.77").unwrap();
    assert!(
        decision["reason"]
            .as_str()
            .unwrap()
            .contains("SOC ticket 7"),
        "{decision}"
    );

    let lifted = operator.ctl(&["decisions", "delete", "203.0.113.77", "--swarm"]);
    assert!(lifted.status.success(), "{lifted:?}");
    wait_for("the lift reaches every member", || {
        agents.iter().all(|a| a.decision("203.0.113.77").is_none())
    });
}
