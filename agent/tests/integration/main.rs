//! The agent's integration tests: the daemon driven in-process through
//! [`swarmguard_agent::daemon::run`] on sockets bound to `127.0.0.1:0` (here), and one
//! module per area:
//!
//! - `swarm_core`: the swarm protocol core on a simulated network.

use swarmguard_agent::config::Config;
use swarmguard_agent::daemon::{self, Sockets};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

#[tokio::test]
async fn run_serves_metrics_until_shutdown() {
    let state = tempfile::tempdir().unwrap();
    let config = Config {
        state_dir: state.path().to_owned(),
        ..Config::default()
    };
    let metrics = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics_addr = metrics.local_addr().unwrap();
    let gossip = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let agent = tokio::spawn(daemon::run(config, Sockets { metrics, gossip }, async {
        let _ = stop_rx.await;
    }));

    let mut stream = TcpStream::connect(metrics_addr).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.contains("swarmguard_build_info"), "{response}");

    stop_tx.send(()).unwrap();
    agent.await.unwrap().unwrap();
    // Stopped means the port is released.
    assert!(TcpStream::connect(metrics_addr).await.is_err());
}

mod swarm_core;
