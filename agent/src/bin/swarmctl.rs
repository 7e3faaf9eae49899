//! `swarmctl`: the admin tool. Talks to the local agent over its admin socket.

use std::process::ExitCode;

use clap::Parser;
use swarmguard_agent::cli::{ScenariosCommand, SwarmctlCli, SwarmctlCommand};
use swarmguard_agent::scenario_test;
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
        SwarmctlCommand::Scenarios(ScenariosCommand::Test(args)) => {
            let stdout = std::io::stdout();
            let stderr = std::io::stderr();
            let code = scenario_test::run(&args, cli.json, &mut stdout.lock(), &mut stderr.lock());
            return ExitCode::from(code);
        }
        SwarmctlCommand::Status => "status",
        SwarmctlCommand::Peers => "peers",
        SwarmctlCommand::Alerts => "alerts",
        SwarmctlCommand::Decisions => "decisions",
        SwarmctlCommand::Rules => "rules",
        SwarmctlCommand::Metrics => "metrics",
        SwarmctlCommand::Credential => "credential",
    };
    eprintln!("swarmctl {name}: not implemented in this version");
    ExitCode::FAILURE
}
