//! `swarmd`: parses the command line, reads the configuration, binds the sockets, and hands
//! the shutdown signal to [`swarmguard_agent::daemon::run`]. Errors become exit codes here.

use std::process::ExitCode;

use anyhow::Context;
use clap::CommandFactory;
use swarmguard_agent::api::Metrics;
use swarmguard_agent::cli::{
    CheckConfigArgs, CleanupArgs, DemoArgs, ReplayArgs, RunArgs, SwarmdCli, SwarmdCommand,
};
use swarmguard_agent::config::Config;
use swarmguard_agent::daemon::{self, Sockets};
use swarmguard_agent::enforce::{Backend, BackendKind, NftBackend, TABLE};
use swarmguard_identity::cli_docs;
use swarmguard_identity::daemon::{self as edge, EXIT_USAGE};

fn main() -> ExitCode {
    let cli = match edge::parse_cli::<SwarmdCli>() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    match cli.command {
        SwarmdCommand::Run(args) => run(args),
        SwarmdCommand::CheckConfig(args) => check_config(&args),
        SwarmdCommand::Demo(args) => demo(&args),
        SwarmdCommand::Replay(args) => replay(&args),
        SwarmdCommand::Cleanup(args) => cleanup(&args),
        SwarmdCommand::Generate(args) => cli_docs::run(SwarmdCli::command(), args.what),
    }
}

/// `swarmd replay`: exit 0 when the capture was read (even if some rules were skipped), 1
/// when no rule loaded, 2 when the capture or a rule path cannot be read.
fn replay(args: &ReplayArgs) -> ExitCode {
    use swarmguard_agent::detect::rules::{Classification, Vars};
    use swarmguard_agent::detect::{EngineConfig, flow::FlowConfig};
    use swarmguard_agent::replay as offline;

    const EXIT_NO_RULES: u8 = 1;
    const EXIT_UNREADABLE: u8 = 2;
    // The output exists whatever happens next, so scripts can always read it.
    let mut eve: Box<dyn std::io::Write> = match &args.eve {
        Some(path) => match std::fs::File::create(path) {
            Ok(file) => Box::new(std::io::BufWriter::new(file)),
            Err(err) => {
                eprintln!("{}: cannot create eve output: {err}", path.display());
                return ExitCode::from(EXIT_UNREADABLE);
            }
        },
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let mut vars = Vars::default();
    for (name, value) in &args.vars {
        vars.set(name, value);
    }
    let rules = match offline::load_rules(&args.rules, vars, Classification::builtin()) {
        Ok(rules) => rules,
        Err(err) => {
            eprintln!("swarmd replay: {err}");
            return ExitCode::from(EXIT_UNREADABLE);
        }
    };
    eprint!("{}", offline::error_lines(&rules.errors));
    if rules.rules.is_empty() {
        eprintln!("rules: {}", rules.summary);
        eprintln!("swarmd replay: no rule could be loaded");
        return ExitCode::from(EXIT_NO_RULES);
    }
    let config = EngineConfig {
        checksum: args.checksum.parse().unwrap_or_default(),
        flow: FlowConfig {
            midstream: args.midstream,
            ..FlowConfig::default()
        },
        ..EngineConfig::default()
    };
    match offline::run(&args.pcap, &rules, config, &mut eve) {
        Ok(report) => {
            drop(eve);
            eprint!("{}", offline::summary(&rules, &report));
            ExitCode::SUCCESS
        }
        Err(err @ offline::ReplayError::Output(_)) => {
            eprintln!("swarmd replay: {err}");
            ExitCode::FAILURE
        }
        Err(err) => {
            eprintln!("swarmd replay: {err}");
            ExitCode::from(EXIT_UNREADABLE)
        }
    }
}

/// Removes the nftables table, whichever backend the configuration names: cleanup is about
/// what is left in the kernel.
fn cleanup(args: &CleanupArgs) -> ExitCode {
    let config = match Config::load(args.config.as_deref()) {
        Ok((config, _)) => config,
        Err(err) => {
            eprintln!("{err}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let mut backend = NftBackend::new(config.enforce.nft, &Metrics::new());
    let result = backend.list_table().and_then(|listed| match listed {
        None => Ok(false),
        Some(_) => backend.cleanup().map(|()| true),
    });
    match result {
        Ok(true) => {
            println!("removed nftables table inet {TABLE}");
            ExitCode::SUCCESS
        }
        Ok(false) => {
            println!("no nftables table inet {TABLE}: nothing to remove");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("swarmd cleanup: {err}");
            ExitCode::FAILURE
        }
    }
}

fn check_config(args: &CheckConfigArgs) -> ExitCode {
    edge::check_config(&args.file, args.strict, |source, text| {
        Ok(Config::from_toml(source, text)?.warnings(source))
    })
}

fn run(args: RunArgs) -> ExitCode {
    let mut config = match Config::load(args.config.as_deref()) {
        Ok((config, _)) => config,
        Err(err) => {
            eprintln!("{err}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    if let Some(dir) = args.state_dir {
        config.state_dir = dir;
    }
    if let Some(path) = args.socket {
        config.socket = path;
    }
    if let Some(addr) = args.metrics_listen {
        config.metrics_listen = addr;
    }
    if let Some(addr) = args.gossip_listen {
        config.gossip_listen = addr;
    }
    if let Some(backend) = args.enforce.as_deref().and_then(BackendKind::from_name) {
        config.enforce.backend = backend;
    }
    if let Some(addr) = args.dns_listen {
        config.dns.listen = Some(addr);
    }
    if !args.dns_upstream.is_empty() {
        config.dns.upstream = args.dns_upstream;
    }
    if config.dns.listen.is_some() && config.dns.upstream.is_empty() {
        eprintln!("--dns-listen needs --dns-upstream (or dns.upstream in the file)");
        return ExitCode::from(EXIT_USAGE);
    }
    edge::init_logging(&config.log);
    match run_until_signal(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{err:#}");
            ExitCode::FAILURE
        }
    }
}

#[tokio::main]
async fn run_until_signal(config: Config) -> anyhow::Result<()> {
    let sockets = bind(&config).await?;
    daemon::run(config, sockets, edge::shutdown_signal()).await?;
    Ok(())
}

async fn bind(config: &Config) -> anyhow::Result<Sockets> {
    let metrics = tokio::net::TcpListener::bind(config.metrics_listen)
        .await
        .with_context(|| format!("cannot listen for metrics on {}", config.metrics_listen))?;
    let gossip = tokio::net::UdpSocket::bind(config.gossip_listen)
        .await
        .with_context(|| format!("cannot bind the gossip socket {}", config.gossip_listen))?;
    // Without the admin socket the agent still detects and blocks: a warning, not a stop.
    let admin = match swarmguard_agent::api::admin::bind(&config.socket) {
        Ok(listener) => Some(listener),
        Err(err) => {
            tracing::warn!(path = %config.socket.display(), error = %err, "cannot bind the admin socket");
            None
        }
    };
    Ok(Sockets {
        metrics,
        gossip,
        admin,
    })
}

/// `swarmd demo`: exit 0 when the swarm settled as it should, 1 otherwise.
fn demo(args: &DemoArgs) -> ExitCode {
    let options = swarmguard_agent::demo::DemoOptions {
        agents: usize::from(args.agents),
        keep_running: args.keep_running,
        json: args.json,
    };
    match demo_until_signal(options) {
        Ok(Some(summary)) if summary.settled => ExitCode::SUCCESS,
        Ok(Some(_)) => ExitCode::FAILURE,
        // Ctrl-C: the processes and the temporary folder are gone.
        Ok(None) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("swarmd demo: {err:#}");
            ExitCode::FAILURE
        }
    }
}

#[tokio::main]
async fn demo_until_signal(
    options: swarmguard_agent::demo::DemoOptions,
) -> anyhow::Result<Option<swarmguard_agent::demo::Summary>> {
    let (json, keep_running) = (options.json, options.keep_running);
    // Ctrl-C drops the demo's future: its processes are killed on drop and its temporary
    // folder removed.
    let summary = tokio::select! {
        summary = swarmguard_agent::demo::run(options) => summary?,
        () = edge::shutdown_signal() => return Ok(None),
    };
    if !keep_running {
        if json {
            println!("{}", serde_json::to_string(&summary)?);
        } else {
            println!("\n{}", summary.table());
            println!(
                "quorum {}; attackers blocked everywhere: {}; single reports: {}; impostor refused: {}",
                summary.quorum,
                summary.attackers.join(", "),
                summary.single_reports.join(", "),
                summary.impostor_refused
            );
        }
    }
    Ok(Some(summary))
}
