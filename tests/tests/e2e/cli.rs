//! The command-line surface: help, version, exit codes, `check-config`.

use std::fs;

use swarmguard_tests::{run, workspace_root};

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn swarmd_version_names_the_binary_and_version() {
    let out = run("swarmd", &["--version"]);
    assert!(out.status.success());
    assert_eq!(
        stdout(&out).trim(),
        format!("swarmd {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn every_binary_explains_itself() {
    for (bin, expected) in [
        (
            "swarmd",
            ["run", "check-config", "replay", "demo"].as_slice(),
        ),
        (
            "swarmctl",
            ["status", "decisions", "rules", "--socket"].as_slice(),
        ),
        (
            "identityd",
            ["serve", "check-config", "verify", "key"].as_slice(),
        ),
    ] {
        let out = run(bin, &["--help"]);
        assert!(out.status.success(), "{bin} --help failed");
        let help = stdout(&out);
        for word in expected {
            assert!(help.contains(word), "{bin} --help lacks {word}:\n{help}");
        }
    }
}

#[test]
fn bad_usage_exits_64() {
    for bin in ["swarmd", "swarmctl", "identityd"] {
        let out = run(bin, &["--no-such-flag"]);
        assert_eq!(out.status.code(), Some(64), "{bin}");
    }
}

#[test]
fn swarmctl_without_an_agent_says_so_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("absent.sock");
    let out = run("swarmctl", &["--socket", socket.to_str().unwrap(), "peers"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("cannot reach the agent"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn shipped_configs_pass_check_config() {
    for (bin, file) in [
        ("swarmd", "packaging/agent.toml"),
        ("identityd", "packaging/identity.toml"),
    ] {
        let path = workspace_root().join(file);
        let out = run(bin, &["check-config", path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(0), "{bin}: {}", stderr(&out));
        assert!(stdout(&out).contains(": ok"));
    }
}

#[test]
fn check_config_names_file_and_key_and_exits_64() {
    let dir = tempfile::tempdir().unwrap();
    let agent = dir.path().join("agent.toml");
    fs::write(&agent, "[gossip]\nlisten = \"1.2.3\"\n").unwrap();
    let out = run("swarmd", &["check-config", agent.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(64));
    assert_eq!(
        stderr(&out).trim(),
        format!(
            "{}: gossip.listen: invalid socket address \"1.2.3\"",
            agent.display()
        )
    );

    let identity = dir.path().join("identity.toml");
    fs::write(
        &identity,
        "[server]\nlisten = \"127.0.0.1:8480\"\ncolour = true\n",
    )
    .unwrap();
    let out = run("identityd", &["check-config", identity.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(64));
    assert!(
        stderr(&out).starts_with(&format!(
            "{}: server.colour: unknown field",
            identity.display()
        )),
        "{}",
        stderr(&out)
    );
}

#[test]
fn missing_rule_folder_warns_and_fails_only_when_strict() {
    let dir = tempfile::tempdir().unwrap();
    let agent = dir.path().join("agent.toml");
    let missing = dir.path().join("rules.d");
    fs::write(
        &agent,
        format!("[rules]\npaths = [{missing:?}]\nscenarios = []\n"),
    )
    .unwrap();
    let out = run("swarmd", &["check-config", agent.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    assert!(stderr(&out).contains("warning:"), "{}", stderr(&out));
    assert!(stderr(&out).contains("rules.paths"));

    let out = run(
        "swarmd",
        &["check-config", "--strict", agent.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(64));

    fs::create_dir(&missing).unwrap();
    let out = run(
        "swarmd",
        &["check-config", "--strict", agent.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}
