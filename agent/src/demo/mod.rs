//! `swarmd demo`: identityd and a swarm of agents on loopback, in a temporary folder,
//! attacked with the bundled captures and logs, shown live.
//!
//! Nothing here is a stand-in: the demo runs the real `identityd` and `swarmd` binaries
//! (found beside this one), enrols each agent with the documented `swarmctl credential`
//! commands, writes each agent an ordinary `agent.toml` (loopback addresses, the dry-run
//! backend so that no root is needed) and watches them through their admin sockets, as
//! `swarmctl` does. The only demo-specific inputs are the attack data, which agents read
//! through `capture.files` and a log scenario's `sources`.

pub mod summary;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use serde_json::Value;
use tokio::process::{Child, Command};

use crate::api::client;
pub use summary::{AgentSummary, Summary};

/// The bundled attacks: a port scan from 203.0.113.66 (SYN sweep and Xmas probes) and an
/// sshd brute force from 198.51.100.23 (see `agent/demo/`).
const PORTSCAN: &[u8] = include_bytes!("../../demo/portscan.pcap");
const AUTH_LOG: &str = include_str!("../../demo/auth.log");
const SCAN_RULES: &str = include_str!("../../../rules/suricata/scan.rules");
const SSHD_SCENARIO: &str = include_str!("../../../rules/scenarios/sshd-bf.toml");
/// The scanned network of the capture (RFC 5737 documentation addresses).
const SCANNED_NET: &str = "[192.0.2.0/24]";
/// The demo swarm's quorum: two agents seeing the scanner block it everywhere.
pub const QUORUM: usize = 2;
/// How long the demo waits for the swarm to settle before it reports what it has.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);

/// What `swarmd demo` was asked for.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub agents: usize,
    pub keep_running: bool,
    pub json: bool,
}

/// One process the demo started; killed when dropped (Ctrl-C included).
struct Process {
    child: Child,
}

impl Process {
    async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            // SIGTERM first: the daemons shut down cleanly and say so in their logs.
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        if tokio::time::timeout(Duration::from_secs(5), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

/// An agent of the demo swarm.
struct Agent {
    name: String,
    did: String,
    socket: PathBuf,
    metrics: String,
    process: Option<Process>,
}

/// Runs the demo; returns its summary (printed by the caller).
pub async fn run(options: DemoOptions) -> anyhow::Result<Summary> {
    if options.agents < 3 {
        bail!("the demo needs at least 3 agents (two scanned, one brute-forced)");
    }
    let say = |line: String| {
        if !options.json {
            eprintln!("{line}");
        }
    };
    let dir = tempfile::Builder::new()
        .prefix("swarmguard-demo-")
        .tempdir()
        .context("cannot create the demo's temporary folder")?;
    let bin = std::env::current_exe()?
        .parent()
        .map(Path::to_owned)
        .context("this binary has no folder")?;
    for name in ["identityd", "swarmctl"] {
        if !bin.join(name).exists() {
            bail!(
                "{} is missing beside swarmd: build all binaries (cargo build --release --bins)",
                bin.join(name).display()
            );
        }
    }
    say(format!("Swarmguard demo in {}", dir.path().display()));

    // identityd, the issuer of membership credentials.
    let identity_port = free_tcp_port()?;
    let identity_url = format!("http://127.0.0.1:{identity_port}");
    let identity_state = dir.path().join("identity");
    let mut processes = vec![spawn(
        "identityd",
        Command::new(bin.join("identityd"))
            .args(["serve", "--listen", &format!("127.0.0.1:{identity_port}")])
            .arg("--state-dir")
            .arg(&identity_state),
        &dir.path().join("identityd.log"),
    )?];
    let issuer = wait_for_issuer(&identity_url, &identity_state).await?;
    say(format!("identityd  {identity_url}  issuer {issuer}"));

    // The attack data and the rules the agents read.
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("rules"))?;
    std::fs::create_dir_all(data.join("scenarios"))?;
    std::fs::write(data.join("portscan.pcap"), PORTSCAN)?;
    std::fs::write(data.join("rules/scan.rules"), SCAN_RULES)?;

    // Agents: the seed (agent-3) first; agent-1 and agent-2 read the scan at start, so
    // they come last, once the others form a swarm.
    let gossip: Vec<u16> = (0..options.agents)
        .map(|_| free_udp_port())
        .collect::<Result<_, _>>()?;
    let seed = format!("127.0.0.1:{}", gossip[2]);
    let mut agents = Vec::new();
    for (index, port) in gossip.iter().enumerate() {
        let name = format!("agent-{}", index + 1);
        let state = dir.path().join(&name);
        let did = enrol(&bin, &state, &identity_url, &identity_state).await?;
        let metrics_port = free_tcp_port()?;
        let mut config = base_config(&state, metrics_port, *port, &seed, &issuer)?;
        config.push_str(&format!("identity_url = {identity_url:?}\n"));
        match index {
            0 | 1 => config.push_str(&format!(
                "[capture]\nfiles = [{:?}]\n[rules]\npaths = [{:?}]\nscenarios = []\n\
                 [rules.vars]\nHOME_NET = {SCANNED_NET:?}\n",
                data.join("portscan.pcap"),
                data.join("rules"),
            )),
            2 => {
                let log = state.join("auth.log");
                std::fs::write(&log, "")?;
                let scenarios = state.join("scenarios");
                std::fs::create_dir_all(&scenarios)?;
                std::fs::write(scenarios.join("sshd-bf.toml"), with_sources(&log))?;
                config.push_str(&format!(
                    "[rules]\npaths = []\nscenarios = [{scenarios:?}]\n"
                ));
            }
            _ => config.push_str("[rules]\npaths = []\nscenarios = []\n"),
        }
        std::fs::write(state.join("agent.toml"), config)?;
        say(format!("{name}    {did}"));
        agents.push(Agent {
            name,
            did,
            socket: state.join("agent.sock"),
            metrics: format!("http://127.0.0.1:{metrics_port}/metrics"),
            process: None,
        });
    }
    say(format!(
        "enrolled {} agents (swarmctl credential did / request); quorum {QUORUM}, dry-run enforcement",
        agents.len()
    ));

    let start_agent = |agent: &mut Agent| -> anyhow::Result<()> {
        let state = agent
            .socket
            .parent()
            .context("socket in a folder")?
            .to_owned();
        agent.process = Some(spawn(
            &agent.name,
            Command::new(bin.join("swarmd"))
                .args(["run", "--config"])
                .arg(state.join("agent.toml")),
            &state.join("swarmd.log"),
        )?);
        Ok(())
    };
    for agent in agents.iter_mut().skip(2) {
        start_agent(agent)?;
    }
    wait_until("the swarm forms", Duration::from_secs(30), || {
        agents[2..]
            .iter()
            .all(|agent| members_alive(&agent.socket) == Some(agents.len() - 3))
    })
    .await?;
    say(format!("{} agents formed a swarm", agents.len() - 2));

    // The impostor: a credential stolen from agent-3, presented with its own key.
    let impostor_state = dir.path().join("impostor");
    std::fs::create_dir_all(&impostor_state)?;
    std::fs::copy(
        dir.path().join("agent-3/member.jwt"),
        impostor_state.join("member.jwt"),
    )?;
    let impostor_metrics = free_tcp_port()?;
    let mut impostor_config = base_config(
        &impostor_state,
        impostor_metrics,
        free_udp_port()?,
        &seed,
        &issuer,
    )?;
    impostor_config.push_str("[rules]\npaths = []\nscenarios = []\n");
    std::fs::write(impostor_state.join("agent.toml"), impostor_config)?;
    processes.push(spawn(
        "impostor",
        Command::new(bin.join("swarmd"))
            .args(["run", "--config"])
            .arg(impostor_state.join("agent.toml")),
        &impostor_state.join("swarmd.log"),
    )?);
    say("impostor   starts with agent-3's credential and a key of its own".to_owned());

    // The attacks.
    let started = Instant::now();
    let attack_began = SystemTime::now();
    for agent in agents.iter_mut().take(2) {
        start_agent(agent)?;
    }
    say(
        "attack     203.0.113.66 port-scans agent-1 and agent-2 (capture replayed as they start)"
            .to_owned(),
    );
    std::fs::write(dir.path().join("agent-3/auth.log"), AUTH_LOG)?;
    say(
        "attack     198.51.100.23 brute-forces sshd on agent-3 (auth.log lines appended)"
            .to_owned(),
    );

    let mut watch = Watch {
        attack_began,
        alerts: BTreeMap::new(),
        decisions: BTreeMap::new(),
        signals: BTreeMap::new(),
        refusals: BTreeMap::new(),
    };
    let mut impostor_refused = false;
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    let settled = loop {
        for agent in &agents {
            for line in watch.poll(agent) {
                say(format!(
                    "[{:>6.2}s] {line}",
                    started.elapsed().as_secs_f64()
                ));
            }
        }
        if !impostor_refused && watch.refusals.values().sum::<u64>() > 0 {
            impostor_refused = true;
            say(format!(
                "[{:>6.2}s] impostor   refused by the swarm (credential names another key)",
                started.elapsed().as_secs_f64()
            ));
        }
        let (attackers, _) = watch.sources();
        let scanner_everywhere = !attackers.is_empty()
            && agents
                .iter()
                .all(|agent| attackers.iter().all(|a| watch.blocks(&agent.name, a)));
        let brute_force_local = watch.blocks("agent-3", "198.51.100.23");
        if scanner_everywhere && brute_force_local && impostor_refused {
            break true;
        }
        if Instant::now() > deadline {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    // A last look, so the counts are the final ones.
    for agent in &agents {
        watch.poll(agent);
    }
    let summary = watch.summary(&agents, impostor_refused, settled);
    if !settled {
        say(format!(
            "the swarm did not settle within {}s; logs are in {}",
            SETTLE_TIMEOUT.as_secs(),
            dir.path().display()
        ));
    }

    if options.keep_running {
        if options.json {
            println!("{}", serde_json::to_string(&summary)?);
        } else {
            eprintln!("\n{}", summary.table());
            explore(&bin, &agents);
            eprintln!(
                "The swarm keeps running; Ctrl-C stops it and removes {}.",
                dir.path().display()
            );
        }
        // Until Ctrl-C (the caller stops waiting; the processes die with their handles).
        std::future::pending::<()>().await;
    }
    for agent in &mut agents {
        if let Some(process) = agent.process.take() {
            process.stop().await;
        }
    }
    for process in processes {
        process.stop().await;
    }
    if !options.keep_running && !options.json {
        explore(&bin, &[]);
    }
    Ok(summary)
}

/// Tells where to look next.
fn explore(bin: &Path, agents: &[Agent]) {
    if let Some(agent) = agents.first() {
        eprintln!("Explore:");
        eprintln!(
            "  {} --socket {} decisions list",
            bin.join("swarmctl").display(),
            agent.socket.display()
        );
        eprintln!(
            "  {} --socket {} peers",
            bin.join("swarmctl").display(),
            agent.socket.display()
        );
        eprintln!("  curl -s {}", agent.metrics);
    } else {
        eprintln!(
            "Run `swarmd demo --keep-running` to explore the swarm with swarmctl and its metrics."
        );
    }
}

fn spawn(name: &str, command: &mut Command, log: &Path) -> anyhow::Result<Process> {
    let log_file = std::fs::File::create(log)?;
    let child = command
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {name}"))?;
    Ok(Process { child })
}

/// The agent configuration every demo agent shares.
fn base_config(
    state: &Path,
    metrics: u16,
    gossip: u16,
    seed: &str,
    issuer: &str,
) -> anyhow::Result<String> {
    std::fs::create_dir_all(state)?;
    Ok(format!(
        "[agent]\nstate_dir = {state:?}\n\
         [log]\nformat = \"plain\"\n\
         [api]\nmetrics_listen = \"127.0.0.1:{metrics}\"\nsocket = {socket:?}\n\
         [decide]\nquorum = {QUORUM}\nblock_severity = \"medium\"\n\
         [enforce]\nbackend = \"dry-run\"\n\
         [logs]\npoll_interval = \"50ms\"\n\
         [gossip]\nlisten = \"127.0.0.1:{gossip}\"\nseeds = [{seed:?}]\n\
         trusted_issuers = [{issuer:?}]\ninterval = \"100ms\"\nstatus_refresh = \"5s\"\n",
        socket = state.join("agent.sock"),
    ))
}

/// The shipped sshd scenario, reading `log`.
fn with_sources(log: &Path) -> String {
    SSHD_SCENARIO
        .lines()
        .map(|line| {
            if line.starts_with("sources = ") {
                format!("sources = [{log:?}]")
            } else {
                line.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The two documented enrolment commands; returns the agent's DID.
async fn enrol(
    bin: &Path,
    state: &Path,
    identity_url: &str,
    identity_state: &Path,
) -> anyhow::Result<String> {
    std::fs::create_dir_all(state)?;
    let did = Command::new(bin.join("swarmctl"))
        .args(["credential", "did", "--state-dir"])
        .arg(state)
        .output()
        .await?;
    if !did.status.success() {
        bail!(
            "swarmctl credential did: {}",
            String::from_utf8_lossy(&did.stderr)
        );
    }
    let request = Command::new(bin.join("swarmctl"))
        .args([
            "credential",
            "request",
            "--identity",
            identity_url,
            "--token-file",
        ])
        .arg(identity_state.join("admin.token"))
        .arg("--state-dir")
        .arg(state)
        .output()
        .await?;
    if !request.status.success() {
        bail!(
            "swarmctl credential request: {}",
            String::from_utf8_lossy(&request.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&did.stdout).trim().to_owned())
}

/// Waits for identityd to serve its DID document and write its admin token.
async fn wait_for_issuer(url: &str, state: &Path) -> anyhow::Result<String> {
    let client = crate::swarm::admission::http_client()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(response) = client
            .get(format!("{url}/.well-known/did.json"))
            .send()
            .await
            && let Ok(document) = response.json::<Value>().await
            && let Some(id) = document["id"].as_str()
            && state.join("admin.token").exists()
        {
            return Ok(id.to_owned());
        }
        if Instant::now() > deadline {
            bail!("identityd did not start (see its log)");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_until(
    what: &str,
    timeout: Duration,
    mut done: impl FnMut() -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while !done() {
        if Instant::now() > deadline {
            bail!("gave up waiting: {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

fn get(socket: &Path, path: &str) -> Option<Value> {
    let answer = client::request(socket, "GET", path, None).ok()?;
    serde_json::from_str(&answer.body).ok()
}

fn members_alive(socket: &Path) -> Option<usize> {
    get(socket, "/v1/status")?["members_alive"]
        .as_u64()
        .map(|n| n as usize)
}

/// The total of one metric over its labels, in the admin API's `/v1/metrics` answer.
fn metric_total(metrics: &Value, name: &str) -> u64 {
    metrics
        .as_array()
        .and_then(|metrics| {
            metrics
                .iter()
                .find(|metric| metric["name"] == name)
                .and_then(|metric| metric["total"].as_f64())
        })
        .unwrap_or(0.0) as u64
}

/// What the demo has seen of each agent so far.
struct Watch {
    /// When the demo started the attacks.
    attack_began: SystemTime,
    /// Per agent: alerts seen (source, rule message, time).
    alerts: BTreeMap<String, Vec<(String, String, SystemTime)>>,
    /// Per agent: subject -> (origin kind, created).
    decisions: BTreeMap<String, BTreeMap<String, (String, SystemTime)>>,
    signals: BTreeMap<String, u64>,
    /// Per agent: peers refused at admission.
    refusals: BTreeMap<String, u64>,
}

impl Watch {
    /// Reads one agent's alerts, decisions and signal count; returns what is new, as lines.
    fn poll(&mut self, agent: &Agent) -> Vec<String> {
        let mut lines = Vec::new();
        if let Some(Value::Array(alerts)) = get(&agent.socket, "/v1/alerts") {
            let seen = self.alerts.entry(agent.name.clone()).or_default();
            for alert in alerts.iter().skip(seen.len()) {
                let source = alert["src"].as_str().map(host_of).unwrap_or_default();
                let message = alert["message"].as_str().unwrap_or_default().to_owned();
                // A log alert carries its line's time, which may lie anywhere (the
                // bundled auth.log says January 1st): count from when the attack began.
                let now = SystemTime::now();
                let time = alert["time"]
                    .as_str()
                    .and_then(parse_time)
                    .filter(|time| (self.attack_began..=now).contains(time))
                    .unwrap_or(now);
                lines.push(format!(
                    "{:<10} alert    {message} from {source}",
                    agent.name
                ));
                seen.push((source, message, time));
            }
        }
        // One metrics read per agent and poll: signals heard, peers refused.
        let metrics = get(&agent.socket, "/v1/metrics").unwrap_or(Value::Null);
        let signals = metric_total(&metrics, "swarmguard_swarm_signals_received_total");
        self.refusals.insert(
            agent.name.clone(),
            metric_total(&metrics, "swarmguard_swarm_admission_rejected_total"),
        );
        let before = self
            .signals
            .insert(agent.name.clone(), signals)
            .unwrap_or(0);
        if signals > before {
            lines.push(format!(
                "{:<10} heard    {} signal(s) from the swarm ({signals} in all)",
                agent.name,
                signals - before
            ));
        }
        if let Some(Value::Array(decisions)) = get(&agent.socket, "/v1/decisions") {
            let known = self.decisions.entry(agent.name.clone()).or_default();
            for decision in decisions {
                let subject = decision["subject"].as_str().unwrap_or_default().to_owned();
                if known.contains_key(&subject) {
                    continue;
                }
                let origin = &decision["origin"];
                let (kind, why) = if let Some(quorum) = origin.get("quorum") {
                    let count = quorum["origins"].as_u64().unwrap_or(0);
                    (
                        "quorum",
                        format!("quorum reached: {count} members signalled it"),
                    )
                } else if let Some(local) = origin.get("local") {
                    (
                        "local",
                        format!(
                            "own detection, rule {}",
                            local["rule"].as_str().unwrap_or("?")
                        ),
                    )
                } else {
                    ("operator", "operator decision".to_owned())
                };
                let created = decision["created"]
                    .as_str()
                    .and_then(parse_time)
                    .unwrap_or_else(SystemTime::now);
                lines.push(format!("{:<10} BLOCKS   {subject} ({why})", agent.name));
                known.insert(subject, (kind.to_owned(), created));
            }
        }
        lines
    }

    /// Sources alerted on by at least `QUORUM` agents (attackers) and by one (single).
    fn sources(&self) -> (Vec<String>, Vec<String>) {
        let mut seen_by: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for (agent, alerts) in &self.alerts {
            for (source, _, _) in alerts {
                seen_by.entry(source).or_default().insert(agent);
            }
        }
        let attackers = seen_by
            .iter()
            .filter(|(_, agents)| agents.len() >= QUORUM)
            .map(|(source, _)| source.to_string())
            .collect();
        let single = seen_by
            .iter()
            .filter(|(_, agents)| agents.len() == 1)
            .map(|(source, _)| source.to_string())
            .collect();
        (attackers, single)
    }

    fn blocks(&self, agent: &str, subject: &str) -> bool {
        self.decisions
            .get(agent)
            .is_some_and(|decisions| decisions.contains_key(subject))
    }

    fn summary(&self, agents: &[Agent], impostor_refused: bool, settled: bool) -> Summary {
        let (attackers, single_reports) = self.sources();
        // When the swarm first saw each attacker.
        let first_alert = |attacker: &str| {
            self.alerts
                .values()
                .flatten()
                .filter(|(source, _, _)| source == attacker)
                .map(|(_, _, time)| *time)
                .min()
        };
        let agents = agents
            .iter()
            .map(|agent| {
                let decisions = self.decisions.get(&agent.name);
                let blocked: Vec<String> = decisions
                    .map(|d| d.keys().cloned().collect())
                    .unwrap_or_default();
                // From the swarm's first alert on an attacker to this agent's block of
                // it; the quickest attacker counts.
                let time_to_block_ms = decisions.and_then(|d| {
                    attackers
                        .iter()
                        .filter_map(|attacker| {
                            let (_, created) = d.get(attacker)?;
                            let took = created.duration_since(first_alert(attacker)?).ok()?;
                            Some(took.as_millis() as u64)
                        })
                        .min()
                });
                AgentSummary {
                    name: agent.name.clone(),
                    did: agent.did.clone(),
                    socket: agent.socket.display().to_string(),
                    metrics: agent.metrics.clone(),
                    alerts: self.alerts.get(&agent.name).map_or(0, |a| a.len() as u64),
                    signals_received: self.signals.get(&agent.name).copied().unwrap_or(0),
                    blocked,
                    time_to_block_ms,
                }
            })
            .collect();
        Summary {
            attackers,
            single_reports,
            impostor_refused,
            quorum: QUORUM,
            settled,
            agents,
        }
    }
}

/// `203.0.113.66:40001` → `203.0.113.66`; `[2001:db8::1]:22` → `2001:db8::1`.
fn host_of(addr: &str) -> String {
    addr.parse::<std::net::SocketAddr>()
        .map(|a| a.ip().to_string())
        .unwrap_or_else(|_| addr.to_owned())
}

fn parse_time(text: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339_weak(text).ok().or_else(|| {
        chrono::DateTime::parse_from_rfc3339(text)
            .ok()
            .map(SystemTime::from)
    })
}

fn free_tcp_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn free_udp_port() -> std::io::Result<u16> {
    Ok(std::net::UdpSocket::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
