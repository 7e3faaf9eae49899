//! The running agent's decision stage and admin API: `daemon::run_with_swarm` in-process on
//! a temporary state dir and admin socket, driven with the real `swarmctl` binary, and a
//! [`SwarmLink`] built from channels that the test feeds with real signed signals.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, SystemTime};

use serde_json::Value;
use swarmguard_agent::config::Config;
use swarmguard_agent::daemon::{self, Sockets};
use swarmguard_agent::detect::Severity;
use swarmguard_agent::enforce::{BackendKind, EnforceConfig};
use swarmguard_agent::swarm::{
    Event, MemberId, MemberState, MemberView, Reason, Signal, SignalBody, SigningKey, SwarmLink,
    SwarmView,
};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, oneshot, watch};

/// An agent running in this process; dropping the stop sender stops it.
pub(crate) struct Agent {
    pub(crate) socket: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Agent {
    pub(crate) async fn start(config: Config, link: Option<SwarmLink>) -> Agent {
        let socket = config.socket.clone();
        let metrics = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let gossip = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let admin = swarmguard_agent::api::admin::bind(&socket).unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(daemon::run_with_swarm(
            config,
            Sockets {
                metrics,
                gossip,
                admin: Some(admin),
            },
            link,
            async {
                let _ = stopped.await;
            },
        ));
        Agent {
            socket,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub(crate) async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap().unwrap();
    }
}

pub(crate) fn config(dir: &Path) -> Config {
    Config {
        state_dir: dir.join("state"),
        socket: dir.join("agent.sock"),
        rule_paths: vec![],
        scenario_paths: vec![],
        enforce: EnforceConfig {
            backend: BackendKind::DryRun,
            ..EnforceConfig::default()
        },
        ..Config::default()
    }
}

/// Runs the real `swarmctl --socket SOCKET ARGS` (off the async workers).
pub(crate) async fn swarmctl(socket: &Path, args: &[&str]) -> Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_swarmctl"));
    command.arg("--socket").arg(socket).args(args);
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

pub(crate) async fn swarmctl_json(socket: &Path, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = swarmctl(socket, &all).await;
    assert!(
        out.status.success(),
        "swarmctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Polls `swarmctl decisions list --json` until `check` holds (bounded: ~30 s).
pub(crate) async fn wait_for_decisions(
    socket: &Path,
    check: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let mut last = Vec::new();
    for _ in 0..300 {
        let list = swarmctl_json(socket, &["decisions", "list"]).await;
        last = list.as_array().unwrap().clone();
        if check(&last) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("decisions never matched; last: {last:#?}");
}

fn subjects(list: &[Value]) -> Vec<&str> {
    list.iter()
        .map(|d| d["subject"].as_str().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn swarmctl_adds_lists_and_deletes_decisions_over_the_admin_socket() {
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start(config(dir.path()), None).await;
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&agent.socket)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o660);
    }

    let added = swarmctl(
        &agent.socket,
        &[
            "decisions",
            "add",
            "192.0.2.7",
            "--duration",
            "4h",
            "--reason",
            "seen in the SOC",
        ],
    )
    .await;
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    assert!(String::from_utf8_lossy(&added.stdout).contains("192.0.2.7"));

    let list = swarmctl_json(&agent.socket, &["decisions", "list"]).await;
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 1);
    let decision = &list[0];
    for key in ["subject", "action", "until", "origin", "reason"] {
        assert!(decision.get(key).is_some(), "{key} missing: {decision}");
    }
    assert_eq!(decision["subject"], "192.0.2.7");
    assert_eq!(decision["action"], "block");
    assert_eq!(decision["reason"], "seen in the SOC");
    assert_eq!(
        decision["origin"],
        serde_json::json!({"operator": {"did": "local"}})
    );
    let until = humantime::parse_rfc3339(decision["until"].as_str().unwrap()).unwrap();
    let left = until.duration_since(SystemTime::now()).unwrap();
    assert!(left > Duration::from_secs(3 * 3600) && left <= Duration::from_secs(4 * 3600));

    // A domain is sinkholed; the table shows it.
    let out = swarmctl(
        &agent.socket,
        &["decisions", "add", "Evil.Example", "--duration", "1h"],
    )
    .await;
    assert!(out.status.success());
    let table = swarmctl(&agent.socket, &["decisions", "list"]).await;
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.starts_with("SUBJECT"), "{table}");
    assert!(table.contains("evil.example  sinkhole"), "{table}");

    // The allowlist wins, and says why.
    let refused = swarmctl(
        &agent.socket,
        &["decisions", "add", "127.0.0.1", "--duration", "1h"],
    )
    .await;
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("loopback"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    // Bad input is a usage error, before the agent is asked.
    let bad = swarmctl(
        &agent.socket,
        &["decisions", "add", "300.1.1.1", "--duration", "1h"],
    )
    .await;
    assert_eq!(bad.status.code(), Some(64));

    let status = swarmctl_json(&agent.socket, &["status"]).await;
    assert_eq!(status["mode"], "standalone");
    assert_eq!(status["backend"], "dry-run");
    assert_eq!(status["backend_loaded"], true);
    assert_eq!(status["decisions"]["operator"], 2);

    let metrics = swarmctl_json(&agent.socket, &["metrics"]).await;
    let refused_total = metrics
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "swarmguard_decisions_refused_total")
        .unwrap();
    assert_eq!(refused_total["samples"]["reason=loopback"], 1.0);
    let human = swarmctl(&agent.socket, &["metrics"]).await;
    assert!(String::from_utf8_lossy(&human.stdout).contains("decisions_active"));

    let deleted = swarmctl(&agent.socket, &["decisions", "delete", "192.0.2.7"]).await;
    assert!(deleted.status.success());
    let list = swarmctl_json(&agent.socket, &["decisions", "list"]).await;
    assert_eq!(subjects(list.as_array().unwrap()), ["evil.example"]);
    let missing = swarmctl(&agent.socket, &["decisions", "delete", "192.0.2.7"]).await;
    assert_eq!(missing.status.code(), Some(1));

    let peers = swarmctl_json(&agent.socket, &["peers"]).await;
    assert_eq!(peers, serde_json::json!([]));
    agent.stop().await;
}

/// The channels a swarm node would hold, for the test to play the node.
struct FakeNode {
    events: mpsc::Sender<Event>,
    published: mpsc::Receiver<SignalBody>,
    view: watch::Sender<SwarmView>,
}

fn fake_node() -> (FakeNode, SwarmLink) {
    let (events_tx, events) = mpsc::channel(64);
    let (publish, published) = mpsc::channel(64);
    let (view_tx, view) = watch::channel(SwarmView::default());
    (
        FakeNode {
            events: events_tx,
            published,
            view: view_tx,
        },
        SwarmLink {
            publish,
            events,
            view,
        },
    )
}

fn signal(key: &SigningKey, seq: u64, subject: &str) -> Signal {
    let now = SystemTime::now();
    signed(
        key,
        seq,
        subject,
        ("1:9000007", "attempted-recon"),
        Severity::Medium,
        now,
    )
}

/// An operator's swarm-wide block or lift.
fn classed(key: &SigningKey, seq: u64, subject: &str, class: &str) -> Signal {
    let now = SystemTime::now();
    signed(key, seq, subject, ("operator", class), Severity::High, now)
}

fn signed(
    key: &SigningKey,
    seq: u64,
    subject: &str,
    (rule, class): (&str, &str),
    severity: Severity,
    now: SystemTime,
) -> Signal {
    Signal::sign(
        key,
        seq,
        SignalBody {
            subject: subject.parse().unwrap(),
            reason: Reason {
                rule: rule.to_owned(),
                class: class.to_owned(),
            },
            severity,
            observed_at: now,
            expires_at: now + Duration::from_secs(600),
        },
    )
    .unwrap()
}

impl FakeNode {
    /// The node hands the stage a signal it received.
    async fn hear(&self, signal: Signal) {
        self.events
            .send(Event::SignalReceived(signal))
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_swarm_quorum_blocks_through_the_running_stage_and_local_blocks_are_published() {
    let dir = tempfile::tempdir().unwrap();
    let eve = dir.path().join("eve.json");
    std::fs::write(&eve, "").unwrap();
    let mut config = config(dir.path());
    config.decide.quorum.quorum = 2;
    config.logs.eve = vec![eve.clone()];
    config.logs.poll_interval = Duration::from_millis(20);
    let (mut node, link) = fake_node();
    let member = SigningKey::from_seed(&[7; 32]).unwrap();
    node.view.send_replace(SwarmView {
        me: None,
        credential_expires: None,
        role: None,
        members: vec![MemberView {
            peer: member.peer_id(),
            addr: "198.51.100.1:7300".parse().unwrap(),
            state: MemberState::Alive,
            role: "sensor".to_owned(),
            last_seen: None,
        }],
    });
    let agent = Agent::start(config, Some(link)).await;

    let (a, b, c) = (
        SigningKey::from_seed(&[1; 32]).unwrap(),
        SigningKey::from_seed(&[2; 32]).unwrap(),
        SigningKey::from_seed(&[3; 32]).unwrap(),
    );
    // One member alone, however often it signals, does not block.
    for seq in 1..=5 {
        node.hear(signal(&a, seq, "203.0.113.9")).await;
    }
    // A quorum on a member's own address is refused.
    for key in [&a, &b] {
        node.hear(signal(key, 10, "198.51.100.1")).await;
    }
    // b's signal on the first subject makes two distinct members: the quorum.
    node.hear(signal(&b, 1, "203.0.113.9")).await;
    let list = wait_for_decisions(&agent.socket, |list| !list.is_empty()).await;
    assert_eq!(subjects(&list), ["203.0.113.9"]);
    assert_eq!(
        list[0]["origin"],
        serde_json::json!({"quorum": {"origins": 2}})
    );

    // An expelled member's votes are withdrawn: c plus a withdrawn a is no quorum.
    node.events
        .send(Event::SignalsWithdrawn {
            origin: a.peer_id(),
            count: 6,
        })
        .await
        .unwrap();
    node.hear(signal(&a, 20, "192.0.2.99")).await;
    node.events
        .send(Event::SignalsWithdrawn {
            origin: a.peer_id(),
            count: 1,
        })
        .await
        .unwrap();
    node.hear(signal(&c, 1, "192.0.2.99")).await;
    node.events
        .send(Event::MemberDown(MemberId {
            peer: c.peer_id(),
            addr: "192.0.2.250:7300".parse().unwrap(),
            bump: 1,
        }))
        .await
        .unwrap();

    // A local detection (a Suricata alert it blocked) is decided and published.
    std::fs::write(
        &eve,
        concat!(
            r#"{"timestamp":"2024-03-05T10:15:43.000001+0000","flow_id":99,"event_type":"alert","src_ip":"203.0.113.5","src_port":4444,"dest_ip":"192.0.2.1","dest_port":80,"proto":"TCP","alert":{"action":"blocked","gid":1,"signature_id":9000001,"rev":1,"signature":"LOCAL exploit","category":"Attempted Administrator Privilege Gain","severity":1}}"#,
            "\n"
        ),
    )
    .unwrap();
    let published = tokio::time::timeout(Duration::from_secs(30), node.published.recv())
        .await
        .expect("a signal published within the safety timeout")
        .unwrap();
    assert_eq!(published.subject.to_string(), "203.0.113.5");
    assert_eq!(published.reason.rule, "1:9000001");
    assert!(published.expires_at > SystemTime::now());

    let list = wait_for_decisions(&agent.socket, |list| list.len() == 2).await;
    assert_eq!(subjects(&list), ["203.0.113.5", "203.0.113.9"]);
    assert_eq!(
        list[0]["origin"],
        serde_json::json!({"local": {"rule": "1:9000001"}})
    );

    let alerts = swarmctl_json(&agent.socket, &["alerts"]).await;
    assert_eq!(alerts[0]["outcome"], "blocked", "{alerts}");
    let metrics = swarmctl_json(&agent.socket, &["metrics"]).await;
    let family = |name: &str| {
        metrics
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == name)
            .unwrap_or_else(|| panic!("{name} missing"))
            .clone()
    };
    // Each of the two signals on the member's address was refused.
    assert_eq!(
        family("swarmguard_decisions_refused_total")["samples"]["reason=swarm_member"],
        2.0
    );
    assert_eq!(
        family("swarmguard_decisions_active")["samples"]["origin=quorum"],
        1.0
    );
    assert_eq!(
        family("swarmguard_decisions_active")["samples"]["origin=local"],
        1.0
    );
    assert_eq!(family("swarmguard_signals_published_total")["total"], 1.0);

    let status = swarmctl_json(&agent.socket, &["status"]).await;
    assert_eq!(status["mode"], "swarm");
    assert_eq!(status["members"], 1);
    let peers = swarmctl_json(&agent.socket, &["peers"]).await;
    assert_eq!(peers[0]["did"], member.peer_id().to_did());
    assert_eq!(peers[0]["addr"], "198.51.100.1:7300");
    agent.stop().await;
}

async fn next_published(node: &mut FakeNode) -> SignalBody {
    tokio::time::timeout(Duration::from_secs(30), node.published.recv())
        .await
        .expect("a signal published within the safety timeout")
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_credential_makes_swarm_wide_decisions_and_lifts_and_others_obey_them() {
    let dir = tempfile::tempdir().unwrap();
    let (mut node, link) = fake_node();
    let me = SigningKey::from_seed(&[40; 32]).unwrap();
    let other = SigningKey::from_seed(&[41; 32]).unwrap();
    let view = |role: &str| SwarmView {
        me: Some(me.peer_id()),
        credential_expires: None,
        role: Some(role.to_owned()),
        members: vec![MemberView {
            peer: other.peer_id(),
            addr: "198.51.100.41:7300".parse().unwrap(),
            state: MemberState::Alive,
            role: "operator".to_owned(),
            last_seen: None,
        }],
    };
    node.view.send_replace(view("sensor"));
    let agent = Agent::start(config(dir.path()), Some(link)).await;
    let add = ["decisions", "add", "203.0.113.50", "--duration", "4h"];
    let swarm_add = [&add[..], &["--swarm", "--reason", "campaign 42"]].concat();

    // A sensor's agent may decide for itself, not for the swarm.
    let refused = swarmctl(&agent.socket, &swarm_add).await;
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("role sensor, not operator"), "{stderr}");
    assert!(swarmctl_json(&agent.socket, &["decisions", "list"]).await == serde_json::json!([]));

    // With an operator credential, the decision is signed and handed to the swarm.
    node.view.send_replace(view("operator"));
    let status = swarmctl_json(&agent.socket, &["status"]).await;
    assert_eq!(status["role"], "operator");
    let mut added = None;
    for _ in 0..300 {
        let out = swarmctl(&agent.socket, &[&["--json"][..], &swarm_add].concat()).await;
        if out.status.success() {
            added = Some(serde_json::from_slice::<Value>(&out.stdout).unwrap());
            break;
        }
        // The stage has not seen the new view yet.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let added = added.expect("the operator's swarm-wide decision");
    assert_eq!(
        added["origin"],
        serde_json::json!({"operator": {"did": me.peer_id().to_did()}})
    );
    let published = next_published(&mut node).await;
    assert_eq!(published.subject.to_string(), "203.0.113.50");
    assert_eq!(published.reason.class, "operator-block");
    assert_eq!(published.reason.rule, "campaign 42");
    assert_eq!(
        published
            .expires_at
            .duration_since(published.observed_at)
            .unwrap(),
        Duration::from_secs(4 * 3600)
    );

    // Longer than a signal may live: refused, nothing stored or sent.
    let long = swarmctl(
        &agent.socket,
        &[
            "decisions",
            "add",
            "203.0.113.51",
            "--duration",
            "2days",
            "--swarm",
        ],
    )
    .await;
    assert!(!long.status.success());
    assert!(String::from_utf8_lossy(&long.stderr).contains("at most 1day"));
    // A local one stays local.
    let local = swarmctl_json(
        &agent.socket,
        &["decisions", "add", "203.0.113.52", "--duration", "1h"],
    )
    .await;
    assert_eq!(
        local["origin"],
        serde_json::json!({"operator": {"did": "local"}})
    );

    // The operator lifts it swarm-wide: gone here, and a signed lift goes out; a lift of
    // a subject this host never decided on goes out too (202).
    let lifted = swarmctl(
        &agent.socket,
        &["decisions", "delete", "203.0.113.50", "--swarm"],
    )
    .await;
    assert!(lifted.status.success(), "{lifted:?}");
    let lift = next_published(&mut node).await;
    assert_eq!(lift.subject.to_string(), "203.0.113.50");
    assert_eq!(lift.reason.class, "operator-lift");
    let elsewhere = swarmctl(
        &agent.socket,
        &["decisions", "delete", "192.0.2.200", "--swarm"],
    )
    .await;
    assert!(elsewhere.status.success(), "{elsewhere:?}");
    assert!(String::from_utf8_lossy(&elsewhere.stdout).contains("lift signed and sent"));
    assert_eq!(
        next_published(&mut node).await.reason.class,
        "operator-lift"
    );
    assert!(
        node.published.try_recv().is_err(),
        "nothing else was published"
    );

    // Another operator's signed decision is enforced here, and its lift lifts it.
    node.hear(classed(&other, 1, "198.51.100.99", "operator-block"))
        .await;
    let list = wait_for_decisions(&agent.socket, |list| list.len() == 2).await;
    let theirs = list
        .iter()
        .find(|d| d["subject"] == "198.51.100.99")
        .unwrap();
    assert_eq!(
        theirs["origin"],
        serde_json::json!({"operator": {"did": other.peer_id().to_did()}})
    );
    node.hear(classed(&other, 2, "198.51.100.99", "operator-lift"))
        .await;
    let list = wait_for_decisions(&agent.socket, |list| list.len() == 1).await;
    assert_eq!(subjects(&list), ["203.0.113.52"]);
    let metrics = swarmctl_json(&agent.socket, &["metrics"]).await;
    let lifts = metrics
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "swarmguard_operator_lifts")
        .unwrap()["total"]
        .clone();
    assert_eq!(lifts, 1.0);
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operators_stored_lift_counts_again_once_the_restarted_agent_knows_the_operator() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.decide.quorum.quorum = 2;
    let op = SigningKey::from_seed(&[50; 32]).unwrap();
    let (a, b) = (
        SigningKey::from_seed(&[51; 32]).unwrap(),
        SigningKey::from_seed(&[52; 32]).unwrap(),
    );
    // Before the restart: a's vote on the subject, then the operator lifted it.
    let vote = signed(
        &a,
        1,
        "203.0.113.60",
        ("1:9000007", "attempted-recon"),
        Severity::Medium,
        SystemTime::now() - Duration::from_secs(1),
    );
    let lift = classed(&op, 1, "203.0.113.60", "operator-lift");
    {
        let metrics = swarmguard_agent::api::Metrics::new();
        let store = swarmguard_agent::store::Store::open(
            &config.state_dir,
            swarmguard_agent::store::StoreConfig::default(),
            &metrics,
        )
        .unwrap();
        for signal in [&vote, &lift] {
            store
                .put_signal(&swarmguard_agent::store::StoredSignal {
                    origin: signal.origin().to_did(),
                    seq: signal.seq(),
                    expires_at: signal.expires_at(),
                    body: signal.as_bytes().to_vec(),
                })
                .unwrap();
        }
        store.flush().unwrap();
    }
    let (node, link) = fake_node();
    let agent = Agent::start(config, Some(link)).await;
    let lifts = || async {
        let metrics = swarmctl_json(&agent.socket, &["metrics"]).await;
        metrics
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == "swarmguard_operator_lifts")
            .unwrap()["total"]
            .as_f64()
            .unwrap()
    };
    // The restarted agent does not know yet who the operator is.
    assert_eq!(lifts().await, 0.0);
    node.view.send_replace(SwarmView {
        members: vec![MemberView {
            peer: op.peer_id(),
            addr: "198.51.100.50:7300".parse().unwrap(),
            state: MemberState::Alive,
            role: "operator".to_owned(),
            last_seen: None,
        }],
        ..SwarmView::default()
    });
    for _ in 0..300 {
        if lifts().await == 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(lifts().await, 1.0);
    // a's vote from before the lift was voided again: b's alone is no quorum.
    node.hear(signal(&b, 1, "203.0.113.60")).await;
    // The stage takes events in order: once the operator's next block is in force, b's
    // vote has been counted.
    node.hear(classed(&op, 2, "203.0.113.61", "operator-block"))
        .await;
    let list = wait_for_decisions(&agent.socket, |list| !list.is_empty()).await;
    assert_eq!(subjects(&list), ["203.0.113.61"]);
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn alerts_follow_streams_new_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let eve = dir.path().join("eve.json");
    std::fs::write(&eve, "").unwrap();
    let mut config = config(dir.path());
    config.logs.eve = vec![eve.clone()];
    config.logs.poll_interval = Duration::from_millis(20);
    let agent = Agent::start(config, None).await;
    let mut follower = std::process::Command::new(env!("CARGO_BIN_EXE_swarmctl"))
        .arg("--socket")
        .arg(&agent.socket)
        .args(["--json", "alerts", "--follow"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = follower.stdout.take().unwrap();
    let first_line = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .unwrap();
        line
    });
    // The agent answers once its sensors are started.
    swarmctl_json(&agent.socket, &["status"]).await;
    std::fs::write(
        &eve,
        concat!(
            r#"{"timestamp":"2024-03-05T10:15:43.000001+0000","flow_id":98,"event_type":"alert","src_ip":"203.0.113.6","src_port":1,"dest_ip":"192.0.2.1","dest_port":80,"proto":"TCP","alert":{"action":"allowed","gid":1,"signature_id":9000002,"rev":1,"signature":"LOCAL probe","category":"Misc activity","severity":3}}"#,
            "\n"
        ),
    )
    .unwrap();
    let line = tokio::time::timeout(Duration::from_secs(30), first_line)
        .await
        .expect("a streamed alert within the safety timeout")
        .unwrap();
    let record: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(record["rule"], "1:9000002");
    assert_eq!(record["outcome"], "none");
    follower.kill().unwrap();
    follower.wait().unwrap();
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rules_reload_keeps_the_old_rules_when_a_file_is_bad() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.d");
    std::fs::create_dir(&rules).unwrap();
    std::fs::write(
        rules.join("good.rules"),
        "alert udp any any -> any 9999 (msg:\"lab\"; content:\"x\"; sid:9100001; rev:1;)\n",
    )
    .unwrap();
    let mut config = config(dir.path());
    config.rule_paths = vec![rules.clone()];
    let agent = Agent::start(config, None).await;
    let status = swarmctl_json(&agent.socket, &["status"]).await;
    assert_eq!(status["rules"]["packet_rules"], 1);

    std::fs::write(
        rules.join("bad.rules"),
        "alert udp any any -> any 9999 (msg:\"two\"; content:\"y\"; sid:9100002; rev:1;)\nalert udp any any -> any (msg:\"broken\"; sid:9100003;)\n",
    )
    .unwrap();
    let out = swarmctl(&agent.socket, &["rules", "reload"]).await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bad.rules:2:"), "{stderr}");
    let status = swarmctl_json(&agent.socket, &["status"]).await;
    assert_eq!(status["rules"]["packet_rules"], 1, "the old rules stay");
    assert_eq!(status["rules"]["last_reload"]["rules_applied"], false);

    std::fs::remove_file(rules.join("bad.rules")).unwrap();
    std::fs::write(
        rules.join("more.rules"),
        "alert udp any any -> any 9999 (msg:\"two\"; content:\"y\"; sid:9100002; rev:1;)\n",
    )
    .unwrap();
    let report = swarmctl_json(&agent.socket, &["rules", "reload"]).await;
    assert_eq!(report["rules_applied"], true);
    assert_eq!(report["packet_rules"], 2);
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn swarmctl_without_an_agent_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let out = swarmctl(&dir.path().join("absent.sock"), &["status"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach the agent"));
}

/// Whether the agent's IPv4 address set in `netns` holds `addr`.
fn kernel_blocks(netns: &crate::netlab::Netns, addr: &str) -> bool {
    let listing = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &netns.name,
            "nft",
            "list",
            "set",
            "inet",
            "swarmguard",
            "v4_addrs",
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&listing.stdout).contains(addr)
}

/// Sends one datagram from `from` and a marker from the control address 10.77.0.3; returns
/// whether the first arrived before the marker (on one veth path, datagrams keep order).
async fn arrives(
    lab: &std::sync::Arc<crate::netlab::Lab>,
    socket: &std::sync::Arc<std::net::UdpSocket>,
    from: &str,
    port: u16,
) -> bool {
    let (lab, socket, from) = (lab.clone(), socket.clone(), from.to_owned());
    tokio::task::spawn_blocking(move || {
        lab.send(&from, crate::netlab::A4, port, b"probe");
        lab.send("10.77.0.3", crate::netlab::A4, port, b"marker");
        let before = crate::netlab::receive_until(&socket, b"marker");
        before.iter().any(|(_, payload)| payload == b"probe")
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn decisions_survive_a_restart_and_the_kernel_is_reconciled_from_the_store() {
    let lab = std::sync::Arc::new(crate::netlab::Lab::new());
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.enforce = EnforceConfig {
        backend: BackendKind::Nftables,
        nft: swarmguard_agent::enforce::NftConfig {
            command: swarmguard_agent::enforce::NftCommand::new(lab.a.nft_command()).unwrap(),
            forward: false,
        },
    };
    let port = 9977;
    let socket = std::sync::Arc::new(lab.listen(crate::netlab::A4, port));

    let agent = Agent::start(config.clone(), None).await;
    assert!(
        arrives(&lab, &socket, "10.77.0.2", port).await,
        "nothing is blocked yet"
    );
    let out = swarmctl(
        &agent.socket,
        &["decisions", "add", "10.77.0.2", "--duration", "1h"],
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Acknowledged means in the kernel: no waiting needed.
    assert!(kernel_blocks(&lab.a, "10.77.0.2"));
    assert!(
        !arrives(&lab, &socket, "10.77.0.2", port).await,
        "the blocked source got through"
    );
    agent.stop().await;

    // The kernel keeps the block while the agent is down...
    assert!(kernel_blocks(&lab.a, "10.77.0.2"));
    // ...and a restart after the table is lost (a reboot, an `nft flush ruleset`) puts it
    // back from the store.
    lab.a
        .exec(&["nft", "delete", "table", "inet", "swarmguard"]);
    assert!(arrives(&lab, &socket, "10.77.0.2", port).await);
    let agent = Agent::start(config, None).await;
    let list = wait_for_decisions(&agent.socket, |list| !list.is_empty()).await;
    assert_eq!(subjects(&list), ["10.77.0.2"]);
    let status = swarmctl_json(&agent.socket, &["status"]).await;
    assert_eq!(status["backend_loaded"], true, "{status}");
    assert!(kernel_blocks(&lab.a, "10.77.0.2"), "reconciled at start");
    assert!(!arrives(&lab, &socket, "10.77.0.2", port).await);

    let out = swarmctl(&agent.socket, &["decisions", "delete", "10.77.0.2"]).await;
    assert!(out.status.success());
    assert!(!kernel_blocks(&lab.a, "10.77.0.2"));
    assert!(
        arrives(&lab, &socket, "10.77.0.2", port).await,
        "traffic flows again"
    );
    agent.stop().await;
}
