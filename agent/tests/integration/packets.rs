//! `swarmd run` with live capture: real packets on a veth in a test network namespace go
//! through the rule engine and come out as alerts.

use std::time::Duration;

use swarmguard_agent::config::Config;
use swarmguard_agent::daemon::{self, Sockets};
use swarmguard_agent::detect::ChecksumMode;
use swarmguard_agent::sensor::capture::CaptureConfig;
use tokio::net::{TcpListener, UdpSocket};

use crate::netlab::{A4, Lab};
use crate::running::{Running, metrics_text};

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn run_matches_captured_packets_against_the_rules() {
    let lab = Lab::new();
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("lab.rules");
    std::fs::write(
        &rules,
        "alert udp any any -> any 9999 (msg:\"lab marker\"; content:\"swarmguard-attack\"; sid:9100001; rev:1;)\n",
    )
    .unwrap();
    let config = Config {
        state_dir: dir.path().to_owned(),
        rule_paths: vec![rules],
        scenario_paths: vec![],
        capture: CaptureConfig {
            interfaces: vec!["sg0".to_owned()],
            bpf: Some("udp port 9999".to_owned()),
            // veth hands packets on with the checksum left to offload: every one would
            // fail validation until auto mode had sampled 1,000 of them.
            checksum: ChecksumMode::No,
            ..CaptureConfig::default()
        },
        ..Config::default()
    };

    // The daemon runs on a thread inside namespace a: its capture threads inherit it.
    let alerts = lab.a.run(|| {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let metrics = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = metrics.local_addr().unwrap();
            let gossip = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
            let agent = tokio::spawn(daemon::run(
                config,
                Sockets {
                    metrics,
                    gossip,
                    admin: None,
                },
                async {
                    let _ = stop_rx.await;
                },
            ));
            let mut alerts = 0;
            let mut text = String::new();
            // Bounded: ~30 s. Packets sent before the capture is up are simply not seen.
            for _ in 0..300 {
                text = metrics_text(addr).await;
                alerts = metric(&text, "swarmguard_packet_alerts_total");
                if alerts > 0 {
                    break;
                }
                if text.contains("swarmguard_capture_up{interface=\"sg0\"} 1") {
                    // One that matches and one that does not.
                    lab.send("10.77.0.2", A4, 9999, b"GET swarmguard-attack");
                    lab.send("10.77.0.2", A4, 9999, b"GET harmless");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            stop_tx.send(()).unwrap();
            agent.await.unwrap().unwrap();
            (alerts, text)
        })
    });
    let (alerts, text) = alerts;
    assert!(alerts > 0, "no packet alert was raised; metrics:\n{text}");
}

/// `capture.files`: a capture read once at start, as if its packets arrived then, goes
/// through the same engine as live capture (the demo's bundled port scan: the SYN-rate
/// and Xmas scan rules fire on it).
#[tokio::test]
async fn run_reads_configured_capture_files_through_the_rules() {
    let dir = tempfile::tempdir().unwrap();
    let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut config = Config {
        state_dir: dir.path().to_owned(),
        rule_paths: vec![workspace.join("rules/suricata")],
        scenario_paths: vec![],
        capture: CaptureConfig {
            files: vec![workspace.join("agent/demo/portscan.pcap")],
            ..CaptureConfig::default()
        },
        ..Config::default()
    };
    config.rule_vars.set_address("HOME_NET", "[192.0.2.0/24]");
    let agent = Running::start(config, None).await;
    let mut text = String::new();
    // Bounded: ~30 s; the capture spans 2.4 s.
    for _ in 0..300 {
        text = agent.metrics_text().await;
        if metric(&text, "swarmguard_alerts_total{rule=\"1:9000003\"}") == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        metric(&text, "swarmguard_alerts_total{rule=\"1:9000005\"}"),
        1,
        "{text}"
    );
    assert_eq!(
        metric(&text, "swarmguard_alerts_total{rule=\"1:9000003\"}"),
        1,
        "{text}"
    );
    agent.stop().await;
}
