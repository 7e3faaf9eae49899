//! `swarmctl`: the admin tool. Talks to the local agent over its admin socket.

use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use swarmguard_agent::cli::{SwarmctlCli, SwarmctlCommand};
use swarmguard_identity::cli_docs;
use swarmguard_identity::daemon::EXIT_USAGE;

fn main() -> ExitCode {
    let cli = match SwarmctlCli::try_parse() {
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
    let name = match cli.command {
        SwarmctlCommand::Generate(args) => return cli_docs::run(SwarmctlCli::command(), args.what),
        SwarmctlCommand::Status => "status",
        SwarmctlCommand::Peers => "peers",
        SwarmctlCommand::Alerts => "alerts",
        SwarmctlCommand::Decisions => "decisions",
        SwarmctlCommand::Rules => "rules",
        SwarmctlCommand::Scenarios => "scenarios",
        SwarmctlCommand::Metrics => "metrics",
        SwarmctlCommand::Credential => "credential",
    };
    eprintln!("swarmctl {name}: not implemented in this version");
    ExitCode::FAILURE
}
