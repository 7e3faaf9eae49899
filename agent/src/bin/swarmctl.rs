//! `swarmctl`: the admin tool. Talks to the local agent over its admin socket.

use std::process::ExitCode;

use clap::CommandFactory;
use swarmguard_agent::cli::{
    CredentialCommand, CredentialDidArgs, CredentialRequestArgs, RulesCommand, RulesTestArgs,
    ScenariosCommand, SwarmctlCli, SwarmctlCommand,
};
use swarmguard_agent::scenario_test;
use swarmguard_agent::swarm::credential;
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
        SwarmctlCommand::Credential(CredentialCommand::Did(args)) => return credential_did(&args),
        SwarmctlCommand::Credential(CredentialCommand::Request(args)) => {
            return credential_request(&args);
        }
    };
    eprintln!("swarmctl {name}: not implemented in this version");
    ExitCode::FAILURE
}

/// `swarmctl credential did`: prints the agent's DID, creating its key if needed.
fn credential_did(args: &CredentialDidArgs) -> ExitCode {
    match credential::load_or_create_key(&args.state_dir) {
        Ok(key) => {
            println!("{}", key.peer_id().to_did());
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("swarmctl credential did: {err}");
            ExitCode::FAILURE
        }
    }
}

/// `swarmctl credential request`: exit 0 when the credential was written, 64 for bad
/// arguments, 1 when identityd could not be reached or refused.
fn credential_request(args: &CredentialRequestArgs) -> ExitCode {
    match request_and_write(args) {
        Ok(Some(path)) => {
            eprintln!("wrote the membership credential to {}", path.display());
            ExitCode::SUCCESS
        }
        Ok(None) => ExitCode::SUCCESS,
        Err((code, err)) => {
            eprintln!("swarmctl credential request: {err:#}");
            ExitCode::from(code)
        }
    }
}

fn request_and_write(
    args: &CredentialRequestArgs,
) -> Result<Option<std::path::PathBuf>, (u8, anyhow::Error)> {
    use anyhow::Context;
    let usage = |err: anyhow::Error| (edge::EXIT_USAGE, err);
    let failed = |err: anyhow::Error| (1, err);
    let token = match (&args.token, &args.token_file) {
        (Some(token), _) => token.trim().to_owned(),
        (None, Some(file)) => std::fs::read_to_string(file)
            .with_context(|| format!("{}", file.display()))
            .map_err(usage)?
            .trim()
            .to_owned(),
        (None, None) => {
            return Err(usage(anyhow::anyhow!(
                "--token or --token-file is required"
            )));
        }
    };
    let did = match &args.did {
        Some(did) => did.clone(),
        None => credential::load_or_create_key(&args.state_dir)
            .map_err(|err| usage(err.into()))?
            .peer_id()
            .to_did(),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|err| failed(err.into()))?;
    let jwt = runtime
        .block_on(async {
            let http = swarmguard_agent::swarm::admission::http_client()?;
            anyhow::Ok(credential::request(&http, &args.identity, &token, &did, &args.role).await?)
        })
        .map_err(failed)?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| args.state_dir.join(credential::CREDENTIAL_FILE));
    if out.as_os_str() == "-" {
        println!("{jwt}");
        return Ok(None);
    }
    credential::write_credential(&out, &jwt).map_err(|err| failed(err.into()))?;
    Ok(Some(out))
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
