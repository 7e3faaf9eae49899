//! Both daemons start with no configuration file, serve on loopback, and stop cleanly on
//! SIGTERM.

use std::process::Stdio;
use std::time::Duration;

use swarmguard_tests::{command, free_port, http_get, terminate};

#[test]
fn swarmd_runs_without_a_config_file_and_serves_metrics() {
    let state = tempfile::tempdir().unwrap();
    let metrics = free_port();
    let child = command("swarmd")
        .args(["run", "--state-dir"])
        .arg(state.path())
        .args(["--metrics-listen", &format!("127.0.0.1:{metrics}")])
        .args(["--gossip-listen", "127.0.0.1:0"])
        .arg("--socket")
        .arg(state.path().join("agent.sock"))
        .env("SWARMGUARD_TEST", "1")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let response = http_get(metrics, "/metrics");
    assert!(
        response.starts_with("HTTP/1.0 200") || response.starts_with("HTTP/1.1 200"),
        "{response}"
    );
    assert!(response.contains("swarmguard_build_info"), "{response}");
    assert_eq!(terminate(child), Some(0));
}

#[test]
fn identityd_serves_health_and_stops_on_sigterm() {
    let state = tempfile::tempdir().unwrap();
    let port = free_port();
    let child = command("identityd")
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
    let response = http_get(port, "/healthz");
    assert!(response.contains(" 200 "), "{response}");
    assert!(response.ends_with("ok\n"), "{response}");
    assert_eq!(terminate(child), Some(0));
}

#[test]
fn both_daemons_tell_systemd_they_are_ready_and_feed_the_watchdog() {
    use std::os::unix::net::UnixDatagram;

    for bin in ["swarmd", "identityd"] {
        let dir = tempfile::tempdir().unwrap();
        let notify_path = dir.path().join("notify.sock");
        let notify = UnixDatagram::bind(&notify_path).unwrap();
        notify
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let port = free_port();
        let mut cmd = command(bin);
        if bin == "swarmd" {
            cmd.args(["run", "--metrics-listen", &format!("127.0.0.1:{port}")])
                .args(["--gossip-listen", "127.0.0.1:0"])
                .arg("--socket")
                .arg(dir.path().join("agent.sock"));
        } else {
            cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}")]);
        }
        let child = cmd
            .arg("--state-dir")
            .arg(dir.path())
            .env("NOTIFY_SOCKET", &notify_path)
            // systemd sets WATCHDOG_USEC for a unit with WatchdogSec; 200 ms makes the
            // daemon feed it every 100 ms.
            .env("WATCHDOG_USEC", "200000")
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut seen = Vec::new();
        let mut buf = [0u8; 512];
        while !(seen.iter().any(|m: &String| m.contains("READY=1"))
            && seen.iter().filter(|m| m.contains("WATCHDOG=1")).count() >= 2)
        {
            let n = notify
                .recv(&mut buf)
                .unwrap_or_else(|err| panic!("{bin}: {err}; got {seen:?}"));
            seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        assert_eq!(terminate(child), Some(0), "{bin}");
        // Watchdog pings may still be queued; STOPPING=1 must follow them.
        loop {
            let n = notify
                .recv(&mut buf)
                .unwrap_or_else(|err| panic!("{bin}: no STOPPING=1: {err}"));
            if String::from_utf8_lossy(&buf[..n]).contains("STOPPING=1") {
                break;
            }
        }
    }
}
