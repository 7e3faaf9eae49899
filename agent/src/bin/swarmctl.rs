//! `swarmctl`: the admin tool. Talks to the local agent over its admin socket.

use std::process::ExitCode;

use clap::CommandFactory;
use swarmguard_agent::cli::{
    RulesCommand, RulesTestArgs, ScenariosCommand, SwarmctlCli, SwarmctlCommand,
};
use swarmguard_agent::scenario_test;
use swarmguard_identity::cli_docs;
use swarmguard_identity::daemon as edge;

fn main() -> ExitCode {
    let cli = match edge::parse_cli::<SwarmctlCli>() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    let name = match cli.command {
        SwarmctlCommand::Generate(args) => return cli_docs::run(SwarmctlCli::command(), args.what),
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
        SwarmctlCommand::Rules(RulesCommand::Test(args)) => return rules_test(&args, cli.json),
        SwarmctlCommand::Rules(RulesCommand::Reload) => "rules reload",
        SwarmctlCommand::Metrics => "metrics",
        SwarmctlCommand::Credential => "credential",
    };
    eprintln!("swarmctl {name}: not implemented in this version");
    ExitCode::FAILURE
}

/// `swarmctl rules test`: lints rule files without an agent. Exit 0 when every rule loads,
/// 1 otherwise (or when a path cannot be read).
fn rules_test(args: &RulesTestArgs, json: bool) -> ExitCode {
    use swarmguard_agent::detect::rules::{Classification, Vars};
    use swarmguard_agent::replay;

    let mut vars = Vars::default();
    for (name, value) in &args.vars {
        vars.set(name, value);
    }
    let rules = match replay::load_rules(&args.paths, vars, Classification::builtin()) {
        Ok(rules) => rules,
        Err(err) => {
            eprintln!("swarmctl rules test: {err}");
            return ExitCode::FAILURE;
        }
    };
    if json {
        println!("{}", replay::rules_test_json(&rules));
    } else {
        print!("{}", replay::error_lines(&rules.errors));
        println!("{}", rules.summary);
    }
    if rules.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
