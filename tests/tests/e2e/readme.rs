//! The README cannot rot: its quick start has exactly two commands, and CI runs the second.

use std::fs;

use swarmguard_tests::workspace_root;

/// The shell blocks of the README's "Quick start" section, one string per block.
fn quick_start_commands() -> Vec<String> {
    let readme = fs::read_to_string(workspace_root().join("README.md")).unwrap();
    let section = readme
        .split("## Quick start")
        .nth(1)
        .expect("README has a Quick start section");
    let section = section.split("\n## ").next().unwrap();
    section
        .split("```sh\n")
        .skip(1)
        .map(|block| block.split("```").next().unwrap().trim().to_owned())
        .collect()
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
