//! The agent's integration tests: the daemon driven in-process through
//! [`swarmguard_agent::daemon::run`] on sockets bound to `127.0.0.1:0`, and one module per
//! area: rule and log conformance on external test material, the commands, the swarm
//! protocol core on a simulated network, and the sensor, store and enforcement stages on a
//! real sled database and real libpcap and nftables in network namespaces the tests create.

mod admin;
mod capture;
mod conformance;
mod default_rules;
mod dns;
mod enforce;
mod fixtures;
mod logs_conformance;
mod netlab;
mod packets;
mod replay_cli;
mod running;
mod scenarios_cli;
mod store;

use swarmguard_agent::config::Config;
use tokio::net::TcpStream;

use crate::running::Running;

#[tokio::test]
async fn run_serves_metrics_until_shutdown() {
    let state = tempfile::tempdir().unwrap();
    let config = Config {
        state_dir: state.path().to_owned(),
        ..Config::default()
    };
    let agent = Running::start(config, None).await;
    let metrics_addr = agent.metrics;
    let response = agent.metrics_text().await;
    assert!(response.contains("swarmguard_build_info"), "{response}");

    agent.stop().await;
    // Stopped means the port is released.
    assert!(TcpStream::connect(metrics_addr).await.is_err());
}

#[tokio::test]
async fn run_detects_log_scenarios_and_eve_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("auth.log");
    let eve = dir.path().join("eve.json");
    std::fs::write(&log, "").unwrap();
    std::fs::write(&eve, "").unwrap();
    let scenarios = dir.path().join("scenarios.d");
    std::fs::create_dir(&scenarios).unwrap();
    std::fs::write(
        scenarios.join("demo.toml"),
        format!(
            "name = \"demo-bf\"\nseverity = \"high\"\nsources = [{:?}]\n[bucket]\ncapacity = 2\nleak = \"1m\"\n[[pattern]]\nregex = 'Failed password for \\S+ from <IP>'\n",
            log.to_string_lossy()
        ),
    )
    .unwrap();
    let mut config = Config {
        state_dir: dir.path().to_owned(),
        scenario_paths: vec![scenarios],
        ..Config::default()
    };
    config.logs.poll_interval = std::time::Duration::from_millis(20);
    config.logs.eve = vec![eve.clone()];
    let agent = Running::start(config, None).await;
    // Wait until the agent follows the files: its metrics endpoint answers after start.
    let _ = agent.metrics_text().await;

    let mut file = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    for user in ["root", "admin", "guest"] {
        use std::io::Write;
        writeln!(
            file,
            "2026-01-01T00:00:00Z h sshd[1]: Failed password for {user} from 192.0.2.44 port 1 ssh2"
        )
        .unwrap();
    }
    std::fs::write(
        &eve,
        concat!(
            r#"{"timestamp":"2024-03-05T10:15:43.000001+0000","flow_id":99,"event_type":"alert","src_ip":"203.0.113.5","src_port":4444,"dest_ip":"192.0.2.1","dest_port":80,"proto":"TCP","alert":{"action":"blocked","gid":1,"signature_id":9000001,"rev":1,"signature":"LOCAL exploit","category":"Attempted Administrator Privilege Gain","severity":1}}"#,
            "\n"
        ),
    )
    .unwrap();
    let expected = "swarmguard_scenario_overflows_total{scenario=\"demo-bf\"} 1";
    let expected_eve = "swarmguard_eve_records_total{kind=\"alert\"} 1";
    let mut text = String::new();
    for _ in 0..600 {
        text = agent.metrics_text().await;
        if text.contains(expected) && text.contains(expected_eve) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(text.contains(expected), "{text}");
    assert!(
        text.contains("swarmguard_scenario_matches_total 3"),
        "{text}"
    );
    assert!(text.contains(expected_eve), "{text}");

    agent.stop().await;
}
mod swarm_core;
mod swarm_quic;
