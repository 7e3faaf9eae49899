//! `identityd`: parses the command line, reads the configuration, binds, and hands the
//! shutdown signal to [`swarmguard_identity::server::run`]. Errors become exit codes here.

use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, Parser};
use swarmguard_identity::cli::{CheckConfigArgs, Cli, Command, ServeArgs};
use swarmguard_identity::cli_docs;
use swarmguard_identity::config::Config;
use swarmguard_identity::daemon::{self, EXIT_USAGE, Source};
use swarmguard_identity::server;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
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
        Command::Serve(args) => serve(args),
        Command::CheckConfig(args) => check_config(&args),
        Command::Key(_) => not_yet("key"),
        Command::Verify { .. } => not_yet("verify"),
        Command::Issue { .. } => not_yet("issue"),
        Command::Revoke { .. } => not_yet("revoke"),
        Command::Generate(args) => cli_docs::run(Cli::command(), args.what),
    }
}

fn not_yet(name: &str) -> ExitCode {
    eprintln!("identityd {name}: not implemented in this version");
    ExitCode::FAILURE
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

fn serve(args: ServeArgs) -> ExitCode {
    let mut config = match Config::load(args.config.as_deref()) {
        Ok((config, _)) => config,
        Err(err) => {
            eprintln!("{err}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(dir) = args.state_dir {
        config.state_dir = dir;
    }
    if let Some(url) = args.public_url {
        config.public_url = Some(url);
    }
    daemon::init_logging(&config.log);
    match serve_until_signal(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{err:#}");
            ExitCode::FAILURE
        }
    }
}

#[tokio::main]
async fn serve_until_signal(config: Config) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    server::run(config, listener, daemon::shutdown_signal()).await?;
    Ok(())
}
