//! The store survives a crash: a child process writes decisions, says which ones were
//! acknowledged, and is killed with SIGKILL mid-stream; every acknowledged one is there
//! when the database is reopened.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use swarmguard_agent::api::Metrics;
use swarmguard_agent::decide::{Action, Decision, Origin};
use swarmguard_agent::store::{Durability, Store, StoreConfig};

/// Set in the child: the state directory to write into.
const CHILD_ENV: &str = "SWARMGUARD_STORE_CRASH_CHILD";

fn decision(i: u32) -> Decision {
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_900_000_000);
    Decision {
        subject: format!("10.{}.{}.{}", i >> 16 & 255, i >> 8 & 255, i & 255)
            .parse()
            .unwrap(),
        action: Action::Block,
        until: at + Duration::from_secs(u64::from(i)),
        origin: Origin::Operator {
            did: "did:key:z6MkoperatorXYZ".to_owned(),
        },
        reason: format!("acknowledged #{i}"),
        created: at,
    }
}

fn config() -> StoreConfig {
    StoreConfig {
        // No background flushes: only the acknowledged write's own flush can save it.
        flush_every: None,
        ..StoreConfig::default()
    }
}

/// The child's part: write decisions one by one, durably, printing `ack N` after each,
/// until killed.
fn child(dir: &Path) -> ! {
    let store = Store::open(dir, config(), &Metrics::new()).unwrap();
    let mut stdout = std::io::stdout();
    for i in 0.. {
        store
            .put_decision(&decision(i), Durability::Flushed)
            .unwrap();
        writeln!(stdout, "ack {i}").unwrap();
        stdout.flush().unwrap();
    }
    unreachable!()
}

#[test]
fn acknowledged_decisions_survive_sigkill() {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        child(Path::new(&dir));
    }
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "store::acknowledged_decisions_survive_sigkill",
            "--exact",
            "--nocapture",
        ])
        .env(CHILD_ENV, dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut acknowledged = None;
    for line in lines {
        if let Some(n) = line.unwrap().strip_prefix("ack ") {
            let n: u32 = n.parse().unwrap();
            acknowledged = Some(n);
            if n == 200 {
                break;
            }
        }
    }
    // SIGKILL while the child is still writing: no chance to flush or close anything.
    child.kill().unwrap();
    child.wait().unwrap();
    let acknowledged = acknowledged.expect("the child acknowledged writes");

    let store = Store::open(dir.path(), config(), &Metrics::new()).unwrap();
    let stored = store.decisions().unwrap();
    for i in 0..=acknowledged {
        assert_eq!(
            store.decision(&decision(i).subject).unwrap(),
            Some(decision(i)),
            "acknowledged decision #{i} is missing"
        );
    }
    assert!(stored.len() as u32 > acknowledged);
}
