//! Two hosts joined by a veth pair, each in a network namespace of its own, made for one
//! test and torn down when it ends (also when it fails): the `Drop` of [`Lab`] deletes both
//! namespaces, which takes their interfaces with them.
//!
//! Host `a` (the agent) has 10.77.0.1/24 and fd77::1/64 on `sg0`; host `b` (the sender) has
//! 10.77.0.2, 10.77.0.3 and 10.77.0.20, and fd77::2 and fd77::3, so that one test can
//! block one of b's addresses and use another as the control.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

pub(crate) use swarmguard_tests::netns::Netns;
use swarmguard_tests::netns::sh;

/// Hosts `a` and `b` on one veth pair.
#[derive(Debug)]
pub(crate) struct Lab {
    pub(crate) a: Netns,
    pub(crate) b: Netns,
}

pub(crate) const A4: &str = "10.77.0.1";
pub(crate) const A6: &str = "fd77::1";

impl Lab {
    pub(crate) fn new() -> Lab {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let id = format!(
            "{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let lab = Lab {
            a: Netns::create(format!("sgcap-a-{id}")),
            b: Netns::create(format!("sgcap-b-{id}")),
        };
        lab.link("sg0");
        lab.a
            .exec(&["ip", "addr", "add", "10.77.0.1/24", "dev", "sg0"]);
        lab.a
            .exec(&["ip", "addr", "add", "fd77::1/64", "dev", "sg0", "nodad"]);
        for addr in ["10.77.0.2/24", "10.77.0.3/24", "10.77.0.20/24"] {
            lab.b.exec(&["ip", "addr", "add", addr, "dev", "sg0"]);
        }
        for addr in ["fd77::2/64", "fd77::3/64"] {
            lab.b
                .exec(&["ip", "addr", "add", addr, "dev", "sg0", "nodad"]);
        }
        lab.up("sg0");
        lab
    }

    /// A veth pair named `name` at both ends, one end in a and the other in b.
    pub(crate) fn link(&self, name: &str) {
        sh(&[
            "ip",
            "link",
            "add",
            name,
            "netns",
            &self.a.name,
            "type",
            "veth",
            "peer",
            "name",
            name,
            "netns",
            &self.b.name,
        ]);
    }

    /// Brings `name` up at both ends.
    pub(crate) fn up(&self, name: &str) {
        self.a.exec(&["ip", "link", "set", name, "up"]);
        self.b.exec(&["ip", "link", "set", name, "up"]);
    }

    /// A UDP socket of host a on `port`, for both families.
    pub(crate) fn listen(&self, addr: &str, port: u16) -> UdpSocket {
        let addr: SocketAddr = format!("{}:{port}", bracket(addr)).parse().unwrap();
        let socket = self
            .a
            .run(|| UdpSocket::bind(addr).expect("bind in namespace a"));
        // A safety net so that a broken test fails instead of hanging; no test relies on it.
        socket
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        socket
    }

    /// Sends `payload` from host b's address `from` to `to:port`.
    pub(crate) fn send(&self, from: &str, to: &str, port: u16, payload: &[u8]) {
        let from: SocketAddr = format!("{}:0", bracket(from)).parse().unwrap();
        let to: SocketAddr = format!("{}:{port}", bracket(to)).parse().unwrap();
        self.b.run(|| {
            let socket = UdpSocket::bind(from).expect("bind in namespace b");
            socket.send_to(payload, to).expect("send");
        });
    }
}

fn bracket(addr: &str) -> String {
    if addr.contains(':') {
        format!("[{addr}]")
    } else {
        addr.to_owned()
    }
}

/// Receives datagrams on `socket` until one starts with `marker`; returns the payloads of
/// every datagram that came before it (and the sender's address), so that a test can show
/// that a packet sent earlier was dropped: on one veth path, datagrams arrive in order.
pub(crate) fn receive_until(socket: &UdpSocket, marker: &[u8]) -> Vec<(SocketAddr, Vec<u8>)> {
    let mut before = Vec::new();
    let mut buf = [0u8; 2048];
    loop {
        let (len, from) = socket
            .recv_from(&mut buf)
            .expect("datagram within the safety timeout");
        if buf[..len].starts_with(marker) {
            return before;
        }
        before.push((from, buf[..len].to_vec()));
    }
}
