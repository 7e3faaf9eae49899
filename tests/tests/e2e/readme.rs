//! The README cannot rot: its quick start has exactly two commands and CI runs the second;
//! the rule and credential examples are run here as they are written, with only the
//! binaries' folder, identityd's address and its token file swapped for the test's.

use std::fs;
use std::process::{Command, Stdio};

use swarmguard_tests::{bin, command, free_port, http_get, terminate, workspace_root};

/// The shell blocks of one README section, one string per block.
fn section_blocks(title: &str) -> Vec<String> {
    let readme = fs::read_to_string(workspace_root().join("README.md")).unwrap();
    let section = readme
        .split(&format!("## {title}\n"))
        .nth(1)
        .unwrap_or_else(|| panic!("README has a {title} section"));
    let section = section.split("\n## ").next().unwrap();
    section
        .split("```sh\n")
        .skip(1)
        .map(|block| block.split("```").next().unwrap().trim().to_owned())
        .collect()
}

fn quick_start_commands() -> Vec<String> {
    section_blocks("Quick start")
}

/// Runs a README block with bash (`-e -o pipefail`: any failing command fails it) in
/// `dir`, the README's `target/release/` replaced by the folder of the binaries under test.
fn run_block(block: &str, dir: &std::path::Path) -> String {
    let binaries = bin("swarmd").parent().unwrap().display().to_string();
    let script = block.replace("target/release/", &format!("{binaries}/"));
    let out = Command::new("bash")
        .args(["-e", "-o", "pipefail", "-c", &script])
        .current_dir(dir)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{script}\nstdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn the_rule_examples_run_and_find_the_bundled_attacks() {
    let blocks = section_blocks("Write and test a rule");
    assert_eq!(blocks.len(), 1, "{blocks:?}");
    let out = run_block(&blocks[0], workspace_root());
    // The SYN-rate and Xmas scan rules fire on the capture, sshd-bf on the log.
    for expected in [
        "\"signature_id\":9000005",
        "\"signature_id\":9000003",
        "7 loaded",
        "sshd-bf",
    ] {
        assert!(out.contains(expected), "no {expected} in:\n{out}");
    }
}

#[test]
fn the_credential_examples_issue_verify_and_revoke_against_identityd() {
    let blocks = section_blocks("Verify a credential");
    assert_eq!(blocks.len(), 1, "{blocks:?}");
    let state = tempfile::tempdir().unwrap();
    let port = free_port();
    let identityd = command("identityd")
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--state-dir",
        ])
        .arg(state.path())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(http_get(port, "/healthz").contains(" 200 "));
    let token = state.path().join("admin.token");
    let script = blocks[0]
        .replace(
            "sudo cat /var/lib/swarmguard/identity/admin.token",
            &format!("cat {}", token.display()),
        )
        .replace("127.0.0.1:8480", &format!("127.0.0.1:{port}"));
    // The block writes issued.json where it runs and reads docs/examples/ from there.
    let work = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(workspace_root().join("docs"), work.path().join("docs")).unwrap();
    let out = run_block(&script, work.path());
    assert_eq!(terminate(identityd), Some(0));
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["true", r#"[false,["revoked"]]"#],
        "{out}"
    );
}

#[test]
fn quick_start_has_exactly_two_commands() {
    let commands = quick_start_commands();
    assert_eq!(commands.len(), 2, "{commands:?}");
    assert!(
        commands.iter().all(|c| !c.contains('\n')),
        "one line each: {commands:?}"
    );
    assert!(commands[0].contains("swarmd demo"), "{}", commands[0]);
}

#[test]
fn ci_runs_the_readme_test_command() {
    let test_command = &quick_start_commands()[1];
    let ci = fs::read_to_string(workspace_root().join(".ci/run")).unwrap();
    assert!(
        ci.lines().any(|line| line.trim() == test_command),
        ".ci/run does not run `{test_command}`"
    );
}
