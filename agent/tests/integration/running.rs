//! An agent running in this process (`daemon::run`) on loopback sockets, for the tests
//! that drive the whole daemon: start it, read its metrics, stop it.

use std::net::SocketAddr;
use std::path::Path;

use swarmguard_agent::config::Config;
use swarmguard_agent::daemon::{self, Sockets};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket, UnixListener};

pub(crate) struct Running {
    pub metrics: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// Starts the agent; with `admin`, its admin socket listens there.
    pub(crate) async fn start(config: Config, admin: Option<&Path>) -> Running {
        let metrics = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = metrics.local_addr().unwrap();
        let sockets = Sockets {
            metrics,
            gossip: UdpSocket::bind("127.0.0.1:0").await.unwrap(),
            admin: admin.map(|path| UnixListener::bind(path).unwrap()),
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(daemon::run(config, sockets, async {
            let _ = stopped.await;
        }));
        Running {
            metrics: addr,
            stop,
            task,
        }
    }

    /// The Prometheus text, once the agent serves it (the listener was bound before
    /// `run`, so this waits for the agent to be up).
    pub(crate) async fn metrics_text(&self) -> String {
        metrics_text(self.metrics).await
    }

    /// Stops the agent and waits until it has.
    pub(crate) async fn stop(self) {
        self.stop.send(()).unwrap();
        self.task.await.unwrap().unwrap();
    }
}

pub(crate) async fn metrics_text(addr: SocketAddr) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}
