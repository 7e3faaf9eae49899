//! `swarmctl`: the admin tool. Talks to the local agent over its admin socket
//! (`swarmguard_agent::api::admin`); `rules test` and `scenarios test` work without one.
//! Tables for people, `--json` for scripts. Exit 0 on success, 1 when the agent refused
//! or could not be reached, 64 for bad usage.

use std::path::Path;
use std::process::ExitCode;

use clap::CommandFactory;
use serde_json::Value;
use swarmguard_agent::api::admin::{AddDecision, MetricFamily, PeerRecord, ReloadReport, Status};
use swarmguard_agent::api::alerts::AlertRecord;
use swarmguard_agent::api::client::{self, ClientError};
use swarmguard_agent::cli::{
    CredentialCommand, CredentialDidArgs, CredentialRequestArgs, DecisionsCommand, RulesCommand,
    RulesTestArgs, ScenariosCommand, SwarmctlCli, SwarmctlCommand,
};
use swarmguard_agent::decide::Decision;
use swarmguard_agent::scenario_test;
use swarmguard_agent::swarm::credential;
use swarmguard_identity::cli_docs;
use swarmguard_identity::daemon::{self as edge, EXIT_USAGE};

fn main() -> ExitCode {
    let cli = match edge::parse_cli::<SwarmctlCli>() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    let socket = cli.socket.as_path();
    let json = cli.json;
    let result = match cli.command {
        SwarmctlCommand::Generate(args) => return cli_docs::run(SwarmctlCli::command(), args.what),
        SwarmctlCommand::Scenarios(ScenariosCommand::Test(args)) => {
            let stdout = std::io::stdout();
            let stderr = std::io::stderr();
            let code = scenario_test::run(&args, json, &mut stdout.lock(), &mut stderr.lock());
            return ExitCode::from(code);
        }
        SwarmctlCommand::Rules(RulesCommand::Test(args)) => return rules_test(&args, json),
        SwarmctlCommand::Credential(CredentialCommand::Did(args)) => return credential_did(&args),
        SwarmctlCommand::Credential(CredentialCommand::Request(args)) => {
            return credential_request(&args);
        }
        SwarmctlCommand::Status => status(socket, json),
        SwarmctlCommand::Peers => peers(socket, json),
        SwarmctlCommand::Alerts(args) => alerts(socket, args.follow, json),
        SwarmctlCommand::Decisions(command) => decisions(socket, command, json),
        SwarmctlCommand::Rules(RulesCommand::Reload) => rules_reload(socket, json),
        SwarmctlCommand::Metrics => metrics(socket, json),
    };
    match result {
        Ok(code) => code,
        Err(Failure::Usage(message)) => {
            eprintln!("swarmctl: {message}");
            ExitCode::from(EXIT_USAGE)
        }
        Err(Failure::Agent(err)) => {
            eprintln!("swarmctl: {err}");
            ExitCode::FAILURE
        }
    }
}

enum Failure {
    Usage(String),
    Agent(ClientError),
}

impl From<ClientError> for Failure {
    fn from(err: ClientError) -> Failure {
        Failure::Agent(err)
    }
}

type Outcome = Result<ExitCode, Failure>;

fn get<T: serde::de::DeserializeOwned>(socket: &Path, path: &str) -> Result<(T, String), Failure> {
    let answer = client::request(socket, "GET", path, None)?;
    let value = parse(&answer.body)?;
    Ok((value, answer.body))
}

fn parse<T: serde::de::DeserializeOwned>(body: &str) -> Result<T, Failure> {
    serde_json::from_str(body)
        .map_err(|err| Failure::Agent(ClientError::Protocol(format!("unexpected answer: {err}"))))
}

fn print_json(body: &str) {
    match serde_json::from_str::<Value>(body) {
        Ok(value) => println!(
            "{}",
            serde_json::to_string_pretty(&value).unwrap_or_else(|_| body.to_owned())
        ),
        Err(_) => println!("{}", body.trim_end()),
    }
}

/// Prints rows as columns padded to their widest cell.
fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut out = String::new();
        for (i, (cell, width)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<width$}  "));
            }
        }
        println!("{}", out.trim_end());
    };
    line(header.iter().map(|h| (*h).to_owned()).collect());
    for row in rows {
        line(row.clone());
    }
}

fn status(socket: &Path, json: bool) -> Outcome {
    let (status, body): (Status, String) = get(socket, "/v1/status")?;
    if json {
        print_json(&body);
        return Ok(ExitCode::SUCCESS);
    }
    let decisions: Vec<String> = status
        .decisions
        .iter()
        .map(|(origin, n)| format!("{origin} {n}"))
        .collect();
    let store: Vec<String> = status
        .store
        .iter()
        .map(|(tree, n)| format!("{tree} {n}"))
        .collect();
    println!("swarmd {} — {}", status.version, status.mode);
    if let Some(did) = &status.did {
        match &status.role {
            Some(role) => println!("identity    {did} ({role})"),
            None => println!("identity    {did}"),
        }
    }
    println!(
        "uptime      {}",
        humantime::format_duration(std::time::Duration::from_secs(status.uptime_secs))
    );
    println!(
        "members     {} ({} alive)",
        status.members, status.members_alive
    );
    println!(
        "enforcement {} ({})",
        status.backend,
        if status.backend_loaded {
            "loaded"
        } else {
            "NOT LOADED: nothing is blocked"
        }
    );
    println!(
        "decisions   {} in force: {}",
        status.decisions.values().sum::<u64>(),
        decisions.join(", ")
    );
    println!("alerts      {} since start", status.alerts);
    println!(
        "rules       {} packet rules, {} scenarios (loaded {})",
        status.rules.packet_rules, status.rules.scenarios, status.rules.loaded_at
    );
    if let Some(reload) = &status.rules.last_reload {
        println!("last reload {}", reload.message);
    }
    println!("store       {}", store.join(", "));
    Ok(ExitCode::SUCCESS)
}

fn peers(socket: &Path, json: bool) -> Outcome {
    let (peers, body): (Vec<PeerRecord>, String) = get(socket, "/v1/peers")?;
    if json {
        print_json(&body);
        return Ok(ExitCode::SUCCESS);
    }
    if peers.is_empty() {
        println!("no peers (the agent runs standalone, or knows no member yet)");
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = peers
        .into_iter()
        .map(|p| {
            vec![
                p.did,
                p.addr,
                p.state,
                p.role,
                p.last_seen.unwrap_or_else(|| "-".to_owned()),
            ]
        })
        .collect();
    table(&["DID", "ADDRESS", "STATE", "ROLE", "LAST SEEN"], &rows);
    Ok(ExitCode::SUCCESS)
}

fn alert_row(alert: &AlertRecord) -> Vec<String> {
    vec![
        alert.time.clone(),
        alert.rule.clone(),
        alert.severity.clone(),
        alert.src.clone().unwrap_or_else(|| "-".to_owned()),
        alert.outcome.clone(),
        alert.message.clone(),
    ]
}

const ALERT_HEADER: [&str; 6] = ["TIME", "RULE", "SEVERITY", "SOURCE", "OUTCOME", "MESSAGE"];

fn alerts(socket: &Path, follow: bool, json: bool) -> Outcome {
    if !follow {
        let (alerts, body): (Vec<AlertRecord>, String) = get(socket, "/v1/alerts")?;
        if json {
            print_json(&body);
        } else {
            let rows: Vec<Vec<String>> = alerts.iter().map(alert_row).collect();
            table(&ALERT_HEADER, &rows);
        }
        return Ok(ExitCode::SUCCESS);
    }
    use std::io::Write;
    if !json {
        println!("{}", ALERT_HEADER.join("  "));
    }
    client::stream_lines(socket, "/v1/alerts?follow=true", |line| {
        let mut out = std::io::stdout().lock();
        let written = if json {
            writeln!(out, "{line}")
        } else {
            match serde_json::from_str::<AlertRecord>(line) {
                Ok(alert) => writeln!(out, "{}", alert_row(&alert).join("  ")),
                Err(_) => writeln!(out, "{line}"),
            }
        };
        // Stop when the reader has gone (`swarmctl alerts -f | head`).
        written.and_then(|()| out.flush()).is_ok()
    })?;
    Ok(ExitCode::SUCCESS)
}

fn decision_rows(decisions: &[Decision]) -> Vec<Vec<String>> {
    decisions
        .iter()
        .map(|d| {
            vec![
                d.subject.to_string(),
                d.action.to_string(),
                humantime::format_rfc3339_seconds(d.until).to_string(),
                d.origin.to_string(),
                d.reason.clone(),
            ]
        })
        .collect()
}

const DECISION_HEADER: [&str; 5] = ["SUBJECT", "ACTION", "UNTIL", "ORIGIN", "REASON"];

fn decisions(socket: &Path, command: DecisionsCommand, json: bool) -> Outcome {
    match command {
        DecisionsCommand::List => {
            let (decisions, body): (Vec<Decision>, String) = get(socket, "/v1/decisions")?;
            if json {
                print_json(&body);
            } else if decisions.is_empty() {
                println!("no decisions in force");
            } else {
                table(&DECISION_HEADER, &decision_rows(&decisions));
            }
        }
        DecisionsCommand::Add(args) => {
            if let Err(err) = args.subject.parse::<swarmguard_agent::subject::Subject>() {
                return Err(Failure::Usage(err.to_string()));
            }
            if let Err(err) = humantime::parse_duration(&args.duration) {
                return Err(Failure::Usage(format!(
                    "invalid --duration \"{}\": {err}",
                    args.duration
                )));
            }
            let request = AddDecision {
                subject: args.subject,
                duration: args.duration,
                reason: args.reason,
                swarm: args.swarm,
            };
            let body = serde_json::to_string(&request).unwrap_or_default();
            let answer = client::request(socket, "POST", "/v1/decisions", Some(&body))?;
            let decision: Decision = parse(&answer.body)?;
            if json {
                print_json(&answer.body);
            } else {
                table(&DECISION_HEADER, &decision_rows(&[decision]));
                if args.swarm {
                    println!("signed and sent to the swarm: every member enforces it");
                }
            }
        }
        DecisionsCommand::Delete(args) => {
            let parsed = args
                .subject
                .parse::<swarmguard_agent::subject::Subject>()
                .map_err(|err| Failure::Usage(err.to_string()))?;
            let path = format!(
                "/v1/decisions?subject={}{}",
                query_escape(&parsed.to_string()),
                if args.swarm { "&swarm=true" } else { "" }
            );
            let answer = client::request(socket, "DELETE", &path, None)?;
            if json {
                print_json(&answer.body);
            } else if args.swarm && answer.status == 202 {
                println!("no decision on {parsed} here; lift signed and sent to the swarm");
            } else if args.swarm {
                println!("deleted the decision on {parsed}; lift signed and sent to the swarm");
            } else {
                println!("deleted the decision on {parsed}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Percent-escapes what a subject may hold that a query string may not (`/`, `:`).
fn query_escape(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b'_' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

fn rules_reload(socket: &Path, json: bool) -> Outcome {
    let answer = client::request(socket, "POST", "/v1/rules/reload", None)?;
    let report: ReloadReport = parse(&answer.body)?;
    if json {
        print_json(&answer.body);
    } else {
        for error in report.rule_errors.iter().chain(&report.scenario_errors) {
            eprintln!("{error}");
        }
        println!(
            "{} ({} packet rules, {} scenarios in use)",
            report.message, report.packet_rules, report.scenarios
        );
    }
    Ok(if report.rules_applied && report.scenarios_applied {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn metrics(socket: &Path, json: bool) -> Outcome {
    let (families, body): (Vec<MetricFamily>, String) = get(socket, "/v1/metrics")?;
    if json {
        print_json(&body);
        return Ok(ExitCode::SUCCESS);
    }
    for family in families {
        let name = family.name.trim_start_matches("swarmguard_");
        if family.samples.is_empty() {
            println!("{name:<40} {}", number(family.total));
            continue;
        }
        let nonzero: Vec<String> = family
            .samples
            .iter()
            .filter(|(_, v)| **v != 0.0)
            .map(|(labels, v)| format!("{labels}: {}", number(*v)))
            .collect();
        if nonzero.is_empty() {
            println!("{name:<40} 0");
        } else {
            println!(
                "{name:<40} {}  ({})",
                number(family.total),
                nonzero.join("; ")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value:.3}")
    }
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
