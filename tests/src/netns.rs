//! Network namespaces for tests and benchmarks that need several hosts on one machine (run
//! as root; see `../shared/NETLAB.md`): [`Netns`] is one host, deleted on drop, and
//! [`Bridge`] a switch whose ports connect hosts made for one run.

use std::fs::File;
use std::process::Command;

use nix::sched::{CloneFlags, setns};

/// A network namespace under /run/netns, deleted (with its interfaces) on drop.
#[derive(Debug)]
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// `ip netns add NAME`, with its loopback up.
    pub fn create(name: String) -> Netns {
        sh(&["ip", "netns", "add", &name]);
        let netns = Netns { name };
        netns.exec(&["ip", "link", "set", "lo", "up"]);
        netns
    }

    /// Runs a command inside the namespace and returns its stdout; panics with its stderr
    /// if it fails.
    pub fn exec(&self, argv: &[&str]) -> String {
        let mut args = vec!["ip", "netns", "exec", &self.name];
        args.extend_from_slice(argv);
        sh(&args)
    }

    /// Runs `f` on a thread that has entered this namespace; sockets it creates stay in it.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    enter(&self.name);
                    f()
                })
                .join()
                .expect("namespace thread panicked")
        })
    }

    /// `ip netns exec NAME nft`: the command prefix for a backend acting on this namespace.
    pub fn nft_command(&self) -> Vec<String> {
        ["ip", "netns", "exec", &self.name, "nft"]
            .map(str::to_owned)
            .to_vec()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Moves the calling thread into the namespace `name` for good (for a thread that serves
/// from inside it).
pub fn enter(name: &str) {
    let file = File::open(format!("/run/netns/{name}")).expect("namespace file");
    setns(&file, CloneFlags::CLONE_NEWNET).expect("setns");
}

/// A switch: a namespace holding the bridge `sgbr`, whose ports connect hosts.
#[derive(Debug)]
pub struct Bridge {
    switch: Netns,
    ports: usize,
}

impl Bridge {
    pub fn new(name: String) -> Bridge {
        let switch = Netns::create(name);
        switch.exec(&["ip", "link", "add", "sgbr", "type", "bridge"]);
        switch.exec(&["ip", "link", "set", "sgbr", "up"]);
        Bridge { switch, ports: 0 }
    }

    /// A new host `name` on the next port, with `eth0` up at `cidr` (e.g. `10.88.0.1/24`).
    pub fn host(&mut self, name: String, cidr: &str) -> Netns {
        let host = Netns::create(name);
        let port = format!("p{}", self.ports);
        self.ports += 1;
        sh(&[
            "ip",
            "link",
            "add",
            "eth0",
            "netns",
            &host.name,
            "type",
            "veth",
            "peer",
            "name",
            &port,
            "netns",
            &self.switch.name,
        ]);
        self.switch
            .exec(&["ip", "link", "set", &port, "master", "sgbr"]);
        self.switch.exec(&["ip", "link", "set", &port, "up"]);
        host.exec(&["ip", "addr", "add", cidr, "dev", "eth0"]);
        host.exec(&["ip", "link", "set", "eth0", "up"]);
        host
    }
}

/// Runs `argv` and returns its stdout; panics with its stderr if it fails.
pub fn sh(argv: &[&str]) -> String {
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .unwrap_or_else(|err| panic!("{}: {err}", argv[0]));
    assert!(
        out.status.success(),
        "{}: {}",
        argv.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
