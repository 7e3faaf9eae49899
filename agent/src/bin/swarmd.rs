//! `swarmd`: parses the command line, reads the configuration, binds the sockets, and hands
//! the shutdown signal to [`swarmguard_agent::daemon::run`]. Errors become exit codes here.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use swarmguard_agent::api::Metrics;
use swarmguard_agent::cli::{CheckConfigArgs, CleanupArgs, RunArgs, SwarmdCli, SwarmdCommand};
use swarmguard_agent::config::Config;
use swarmguard_agent::daemon::{self, Sockets};
use swarmguard_agent::enforce::{Backend, BackendKind, NftBackend, TABLE};
use swarmguard_identity::daemon::{self as edge, EXIT_USAGE, Source};

fn main() -> ExitCode {
    let cli = match SwarmdCli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return if err.use_stderr() {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match cli.command {
        SwarmdCommand::Run(args) => run(args),
        SwarmdCommand::CheckConfig(args) => check_config(&args),
        SwarmdCommand::Demo => demo(),
        SwarmdCommand::Replay => not_yet("replay"),
        SwarmdCommand::Cleanup(args) => cleanup(&args),
    }
}

fn not_yet(name: &str) -> ExitCode {
    eprintln!("swarmd {name}: not implemented in this version");
    ExitCode::FAILURE
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
    let text = match std::fs::read_to_string(&args.file) {
        Ok(text) => text,
        Err(err) => {
            eprintln!("{}: {err}", args.file.display());
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let source = Source::file(&args.file);
    let config = match Config::from_toml(&source, &text) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("{err}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let warnings = config.warnings(&source);
    for warning in &warnings {
        eprintln!("warning: {warning}");
    }
    if args.strict && !warnings.is_empty() {
        return ExitCode::from(EXIT_USAGE);
    }
    println!("{}: ok", source.label());
    ExitCode::SUCCESS
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
    if let Some(addr) = args.metrics_listen {
        config.metrics_listen = addr;
    }
    if let Some(addr) = args.gossip_listen {
        config.gossip_listen = addr;
    }
    if let Some(backend) = args.enforce.as_deref().and_then(BackendKind::from_name) {
        config.enforce.backend = backend;
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
    Ok(Sockets { metrics, gossip })
}

/// Until the swarm demo lands, the demo starts identityd and one agent on loopback with
/// temporary state, in the foreground, and says so.
fn demo() -> ExitCode {
    match demo_until_signal() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("swarmd demo: {err:#}");
            ExitCode::FAILURE
        }
    }
}

#[tokio::main]
async fn demo_until_signal() -> anyhow::Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("swarmguard-demo-")
        .tempdir()?;
    let identityd = std::env::current_exe()?.with_file_name("identityd");
    let identity_listen = "127.0.0.1:8480";
    let mut child = tokio::process::Command::new(&identityd)
        .args(["serve", "--listen", identity_listen, "--state-dir"])
        .arg(dir.path().join("identity"))
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {}", identityd.display()))?;
    let config = Config {
        state_dir: dir.path().join("agent"),
        metrics_listen: "127.0.0.1:9480".parse()?,
        gossip_listen: "127.0.0.1:7300".parse()?,
        rule_paths: vec![],
        scenario_paths: vec![],
        ..Config::default()
    };
    edge::init_logging(&config.log);
    eprintln!("The multi-agent swarm demo is not built yet; running identityd and one agent:");
    eprintln!("  identityd  http://{identity_listen}/healthz");
    eprintln!("  swarmd     http://{}/metrics", config.metrics_listen);
    eprintln!("  state in   {}  (removed on Ctrl-C)", dir.path().display());
    let sockets = bind(&config).await?;
    let result = daemon::run(config, sockets, edge::shutdown_signal()).await;
    child.kill().await.ok();
    result?;
    Ok(())
}
