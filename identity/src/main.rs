//! `identityd`: parses the command line, reads the configuration, binds, and hands the
//! shutdown signal to [`swarmguard_identity::server::run`]. Errors become exit codes here.

mod commands;

use std::process::ExitCode;

use anyhow::Context;
use clap::CommandFactory;
use swarmguard_identity::cli::{CheckConfigArgs, Cli, Command, KeyCommand, ServeArgs};
use swarmguard_identity::cli_docs;
use swarmguard_identity::config::Config;
use swarmguard_identity::daemon::{self, EXIT_USAGE};
use swarmguard_identity::server;

fn main() -> ExitCode {
    let cli = match daemon::parse_cli::<Cli>() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::CheckConfig(args) => check_config(&args),
        Command::Key(KeyCommand::Export { file, state }) => {
            finish(commands::key_export(&state, &file))
        }
        Command::Key(KeyCommand::Import { file, force, state }) => {
            finish(commands::key_import(&state, &file, force))
        }
        Command::Verify {
            file,
            json,
            offline,
            state,
        } => match block_on(commands::verify(&state, &file, json, offline)) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::FAILURE,
            Err(err) => report(err),
        },
        Command::Issue {
            subject,
            credential_type,
            format,
            json,
            state,
        } => finish(block_on(commands::issue(
            &state,
            &subject,
            credential_type.as_deref(),
            &format,
            json,
        ))),
        Command::Revoke { id, json, state } => {
            finish(block_on(commands::revoke(&state, &id, json)))
        }
        Command::Enrol {
            did,
            role,
            out,
            state,
        } => finish(block_on(commands::enrol(
            &state,
            &did,
            &role,
            out.as_deref(),
        ))),
        Command::Generate(args) => cli_docs::run(Cli::command(), args.what),
    }
}

/// Runs a command's future on a small runtime (the commands are one-shot).
fn block_on<T>(future: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    server::install_crypto_provider();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(future)
}

fn finish(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => report(err),
    }
}

/// Prints an error; a configuration error exits 64, anything else 1.
fn report(err: anyhow::Error) -> ExitCode {
    eprintln!("identityd: {err:#}");
    if err.downcast_ref::<daemon::ConfigError>().is_some() {
        ExitCode::from(EXIT_USAGE)
    } else {
        ExitCode::FAILURE
    }
}

fn check_config(args: &CheckConfigArgs) -> ExitCode {
    daemon::check_config(&args.file, args.strict, |source, text| {
        Ok(Config::from_toml(source, text)?.warnings(source))
    })
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
    server::install_crypto_provider();
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    server::run(config, listener, daemon::shutdown_signal()).await?;
    Ok(())
}
