//! The command lines of `swarmd` and `swarmctl`, defined once here so that the binaries,
//! the man pages and the shell completions all come from the same table.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
pub use swarmguard_identity::cli_docs::GenerateArgs;

/// Where `swarmctl` finds the agent's admin socket unless told otherwise.
pub const DEFAULT_SOCKET: &str = crate::config::DEFAULT_SOCKET;

/// Swarmguard agent: detects attacks in packets and logs, gossips signed threat signals
/// with the swarm, and blocks attackers with nftables.
#[derive(Debug, Parser)]
#[command(name = "swarmd", version, propagate_version = true)]
pub struct SwarmdCli {
    #[command(subcommand)]
    pub command: SwarmdCommand,
}

#[derive(Debug, Subcommand)]
pub enum SwarmdCommand {
    /// Run the agent in the foreground.
    Run(RunArgs),
    /// Validate a configuration file without starting.
    CheckConfig(CheckConfigArgs),
    /// Run the packet rules over a capture file and write eve.json alerts.
    Replay(ReplayArgs),
    /// Remove the agent's nftables table (`inet swarmguard`) from the kernel.
    Cleanup(CleanupArgs),
    /// Start identityd and a swarm of agents on loopback with temporary state, attack
    /// them with bundled data, and show detection, gossip, quorum and blocking live.
    Demo(DemoArgs),
    /// Write the man page or a shell completion script to stdout (for packagers).
    #[command(hide = true)]
    Generate(GenerateArgs),
}

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Agents in the demo swarm (at least 3).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(3..=50))]
    pub agents: u16,
    /// Keep the swarm running after the summary, to explore it with swarmctl; Ctrl-C
    /// stops it and removes its temporary folder.
    #[arg(long)]
    pub keep_running: bool,
    /// Print only the summary, as one JSON object (with --keep-running: once the swarm
    /// has settled).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Configuration file [default: /etc/swarmguard/agent.toml when it exists,
    /// built-in defaults otherwise].
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// State directory (key, credential, database); overrides `agent.state_dir`.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Admin socket for swarmctl; overrides `api.socket`.
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Prometheus metrics address; overrides `api.metrics_listen`.
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,
    /// Swarm gossip UDP address; overrides `gossip.listen`.
    #[arg(long, value_name = "ADDR")]
    pub gossip_listen: Option<SocketAddr>,
    /// How decisions reach the kernel; overrides `enforce.backend`.
    #[arg(long, value_name = "BACKEND", value_parser = ["nftables", "dry-run"])]
    pub enforce: Option<String>,
    /// Run the DNS sinkhole on this UDP and TCP address; overrides `dns.listen`.
    #[arg(long, value_name = "ADDR")]
    pub dns_listen: Option<SocketAddr>,
    /// Resolver the sinkhole forwards to (IP or IP:PORT; repeat for several); overrides
    /// `dns.upstream`.
    #[arg(long, value_name = "ADDR", value_parser = crate::enforce::dns::parse_upstream)]
    pub dns_upstream: Vec<SocketAddr>,
}

#[derive(Debug, clap::Args)]
pub struct CleanupArgs {
    /// Configuration file, for `enforce.nft` [default: /etc/swarmguard/agent.toml when it
    /// exists, built-in defaults otherwise].
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// `swarmd replay`: how teams test a rule on a capture before it ships.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// The capture to read (pcap or pcapng).
    #[arg(long, value_name = "FILE")]
    pub pcap: PathBuf,
    /// Rule files, or folders whose *.rules files are read.
    #[arg(long, value_name = "PATH", num_args = 1.., required = true)]
    pub rules: Vec<PathBuf>,
    /// Write eve.json alert lines here instead of stdout (created even when nothing alerts).
    #[arg(long, value_name = "OUT")]
    pub eve: Option<PathBuf>,
    /// Set a rule variable, e.g. HOME_NET=[10.0.0.0/8] or HTTP_PORTS=[80,8080].
    #[arg(long = "var", value_name = "NAME=VALUE", value_parser = parse_var)]
    pub vars: Vec<(String, String)>,
    /// Checksum validation: packets with a bad checksum match no rule while it is on.
    #[arg(long, value_name = "MODE", default_value = "auto", value_parser = ["auto", "yes", "no"])]
    pub checksum: String,
    /// Count TCP flows picked up without a handshake as established.
    #[arg(long)]
    pub midstream: bool,
}

fn parse_var(text: &str) -> Result<(String, String), String> {
    let (name, value) = text
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=VALUE, found \"{text}\""))?;
    let name = name.trim().trim_start_matches('$');
    if name.is_empty() {
        return Err("empty variable name".to_owned());
    }
    Ok((name.to_owned(), value.trim().to_owned()))
}

#[derive(Debug, clap::Args)]
pub struct CheckConfigArgs {
    /// The file to check.
    pub file: PathBuf,
    /// Treat warnings (such as rule folders that do not exist yet) as errors.
    #[arg(long)]
    pub strict: bool,
}

/// Swarmguard's admin tool: inspect and steer the local agent.
#[derive(Debug, Parser)]
#[command(name = "swarmctl", version, propagate_version = true)]
pub struct SwarmctlCli {
    /// The agent's admin socket.
    #[arg(long, global = true, value_name = "PATH", default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// Print JSON for scripts instead of tables for people.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: SwarmctlCommand,
}

#[derive(Debug, Subcommand)]
pub enum SwarmctlCommand {
    /// The agent's state at a glance.
    Status,
    /// Members of the swarm as this agent sees them.
    Peers,
    /// Recent alerts (the newest last).
    Alerts(AlertsArgs),
    /// List, add or delete decisions.
    #[command(subcommand)]
    Decisions(DecisionsCommand),
    /// Test or reload packet rules.
    #[command(subcommand)]
    Rules(RulesCommand),
    /// Test log scenarios against a log file.
    #[command(subcommand)]
    Scenarios(ScenariosCommand),
    /// A summary of the agent's metrics.
    Metrics,
    /// This agent's identity and membership credential.
    #[command(subcommand)]
    Credential(CredentialCommand),
    /// Write the man page or a shell completion script to stdout (for packagers).
    #[command(hide = true)]
    Generate(GenerateArgs),
}

#[derive(Debug, clap::Args)]
pub struct AlertsArgs {
    /// Keep printing new alerts as they come (one JSON object per line with --json).
    #[arg(long, short = 'f')]
    pub follow: bool,
}

#[derive(Debug, Subcommand)]
pub enum DecisionsCommand {
    /// The decisions in force: subject, action, until, origin, reason.
    List,
    /// Block (or, for a domain, sinkhole) SUBJECT on this host, written to disk and to the
    /// kernel before the answer; with --swarm, on every member of the swarm.
    Add(DecisionsAddArgs),
    /// Lift the decision on SUBJECT (address, CIDR network or domain); with --swarm, on
    /// every member of the swarm.
    Delete(DecisionsDeleteArgs),
}

#[derive(Debug, clap::Args)]
pub struct DecisionsDeleteArgs {
    /// An address, a CIDR network or a domain.
    #[arg(value_name = "SUBJECT")]
    pub subject: String,
    /// Also lift it on every member: a lift signed with this agent's key, which must hold
    /// an operator credential. Whatever the swarm observed about SUBJECT before the lift
    /// no longer counts.
    #[arg(long)]
    pub swarm: bool,
}

#[derive(Debug, clap::Args)]
pub struct DecisionsAddArgs {
    /// An address, a CIDR network or a domain.
    #[arg(value_name = "SUBJECT")]
    pub subject: String,
    /// How long, e.g. 30m, 4h, 7days.
    #[arg(long, value_name = "DURATION")]
    pub duration: String,
    /// Why, for whoever reads `decisions list` later.
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
    /// Make it a swarm-wide decision: signed with this agent's key and gossiped, and
    /// enforced by every member as an operator decision. The agent's membership
    /// credential must grant the operator role; at most 24h (the longest a signal lives).
    #[arg(long)]
    pub swarm: bool,
}

#[derive(Debug, Subcommand)]
pub enum CredentialCommand {
    /// Print this agent's DID (the did:key of <state-dir>/agent.key, created if missing),
    /// for an identityd operator to enrol (`identityd enrol --did DID`).
    Did(CredentialDidArgs),
    /// Ask identityd (POST {identity}/members/issue, with its admin token) for a membership
    /// credential for this agent, and write it where swarmd reads it.
    Request(CredentialRequestArgs),
}

#[derive(Debug, clap::Args)]
pub struct CredentialDidArgs {
    /// The agent's state directory, where its key is.
    #[arg(long, value_name = "DIR", default_value = crate::config::DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct CredentialRequestArgs {
    /// identityd's base URL, e.g. https://identity.example.gov:8480.
    #[arg(long, value_name = "URL")]
    pub identity: String,
    /// identityd's admin bearer token.
    #[arg(long, value_name = "TOKEN", conflicts_with = "token_file")]
    pub token: Option<String>,
    /// A file holding identityd's admin bearer token (e.g. its admin.token).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// The agent to enrol [default: this agent's did:key, from <state-dir>/agent.key,
    /// which is created if missing].
    #[arg(long, value_name = "DID")]
    pub did: Option<String>,
    /// The role the credential grants.
    #[arg(long, value_name = "ROLE", default_value = "sensor", value_parser = ["sensor", "sentinel", "operator"])]
    pub role: String,
    /// Where to write the credential [default: <state-dir>/member.jwt]; `-` for stdout.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// The agent's state directory.
    #[arg(long, value_name = "DIR", default_value = crate::config::DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Lint rule files: exit 0 when every rule loads, 1 otherwise, printing each error as
    /// FILE:LINE:COL: message (with --json, one object with the counts and errors).
    Test(RulesTestArgs),
    /// Make the running agent reload its rules.
    Reload,
}

#[derive(Debug, clap::Args)]
pub struct RulesTestArgs {
    /// Rule files, or folders whose *.rules files are read.
    #[arg(value_name = "PATH", required = true)]
    pub paths: Vec<PathBuf>,
    /// Set a rule variable, e.g. HOME_NET=[10.0.0.0/8].
    #[arg(long = "var", value_name = "NAME=VALUE", value_parser = parse_var)]
    pub vars: Vec<(String, String)>,
}

#[derive(Debug, Subcommand)]
pub enum ScenariosCommand {
    /// Run log scenarios over a log file and show which lines matched which scenario, with
    /// the captured fields, and which buckets overflowed. With --json, one JSON object per
    /// line: {"line": N, "scenario": NAME, "fields": {...}} for a matched line and
    /// {"overflow": NAME, "ip": IP, "count": N} for an overflow.
    Test(ScenariosTestArgs),
}

#[derive(Debug, clap::Args)]
pub struct ScenariosTestArgs {
    /// The log file to read, from its first line (its own timestamps drive the buckets).
    #[arg(long, value_name = "FILE")]
    pub log: PathBuf,
    /// Only this scenario.
    #[arg(long, value_name = "NAME")]
    pub scenario: Option<String>,
    /// The scenario folder (or file).
    #[arg(long, value_name = "DIR", default_value = crate::config::DEFAULT_SCENARIOS_DIR)]
    pub scenarios: PathBuf,
}
