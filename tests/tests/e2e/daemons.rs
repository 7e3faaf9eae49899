//! Both daemons start with no configuration file, serve on loopback, and stop cleanly on
//! SIGTERM.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use swarmguard_tests::command;

/// A loopback port that was free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET path` over HTTP/1.0, retried until the daemon answers or 20 s pass.
fn http_get(port: u16, path: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(mut stream) => {
                write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
                let mut response = String::new();
                stream.read_to_string(&mut response).unwrap();
                return response;
            }
            Err(err) if Instant::now() > deadline => panic!("nothing listens on {port}: {err}"),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// Sends SIGTERM and returns the exit code.
fn terminate(mut child: Child) -> Option<i32> {
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    child.wait().unwrap().code()
}

#[test]
fn swarmd_runs_without_a_config_file_and_serves_metrics() {
    let state = tempfile::tempdir().unwrap();
    let metrics = free_port();
    let child = command("swarmd")
        .args(["run", "--state-dir"])
        .arg(state.path())
        .args(["--metrics-listen", &format!("127.0.0.1:{metrics}")])
        .args(["--gossip-listen", "127.0.0.1:0"])
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
