//! `swarmd demo --json`: the whole swarm on loopback, as a newcomer runs it. Every agent
//! must end up blocking the scanner (seen by two agents, the demo's quorum), only the
//! brute-forced agent blocks the brute forcer, the impostor is refused, no agent blocks a
//! member, and nothing is left behind.

use serde_json::Value;
use swarmguard_tests::command;

#[test]
fn the_demo_blocks_the_scanner_everywhere_and_refuses_the_impostor() {
    let out = command("swarmd")
        .args(["demo", "--json", "--agents", "5"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_str(stdout.trim()).expect("one JSON object");
    assert_eq!(summary["settled"], true, "{summary}");
    assert_eq!(summary["impostor_refused"], true, "{summary}");
    assert_eq!(summary["attackers"], serde_json::json!(["203.0.113.66"]));
    assert_eq!(
        summary["single_reports"],
        serde_json::json!(["198.51.100.23"])
    );
    let agents = summary["agents"].as_array().unwrap();
    assert_eq!(agents.len(), 5);
    for agent in agents {
        let blocked: Vec<&str> = agent["blocked"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap())
            .collect();
        assert!(blocked.contains(&"203.0.113.66"), "{agent}");
        // Members all live on loopback: none may be blocked.
        assert!(blocked.iter().all(|s| !s.starts_with("127.")), "{agent}");
        assert_eq!(
            blocked.contains(&"198.51.100.23"),
            agent["name"] == "agent-3",
            "the brute force is blocked where it was seen, not swarm-wide: {agent}"
        );
        assert!(agent["did"].as_str().unwrap().starts_with("did:key:z"));
        assert!(agent["time_to_block_ms"].is_u64(), "{agent}");
        // The temporary folder (sockets, keys, logs) is gone after the demo.
        let socket = std::path::Path::new(agent["socket"].as_str().unwrap());
        assert!(!socket.parent().unwrap().exists(), "{agent}");
    }
}

/// `--keep-running --json`: the summary comes once the swarm has settled, the agents stay
/// up for `swarmctl --socket`, and Ctrl-C (SIGINT) stops every process and removes the
/// temporary folder.
#[test]
fn keep_running_serves_swarmctl_until_ctrl_c_then_cleans_up() {
    use std::io::BufRead;
    let mut demo = command("swarmd")
        .args(["demo", "--json", "--keep-running", "--agents", "3"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(demo.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let summary: Value = serde_json::from_str(line.trim()).expect("the summary line");
    assert_eq!(summary["settled"], true, "{summary}");
    let socket = summary["agents"][2]["socket"].as_str().unwrap().to_owned();
    let folder = std::path::Path::new(&socket)
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .to_owned();

    let out = command("swarmctl")
        .args(["--socket", &socket, "--json", "decisions", "list"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let decisions: Value = serde_json::from_slice(&out.stdout).unwrap();
    let subjects: Vec<&str> = decisions
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["subject"].as_str().unwrap())
        .collect();
    assert!(subjects.contains(&"203.0.113.66"), "{decisions}");

    let status = std::process::Command::new("kill")
        .args(["-INT", &demo.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(demo.wait().unwrap().success());
    assert!(!folder.exists(), "{} is left behind", folder.display());
    // Nobody answers on the agent's socket any more.
    let out = command("swarmctl")
        .args(["--socket", &socket, "status"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}
