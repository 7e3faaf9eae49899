//! Decisions applied per second to nftables, in batches of 10,000, inside a network
//! namespace this benchmark creates (and deletes). Run as root:
//!
//! ```sh
//! cargo bench -p swarmguard-agent --bench enforce
//! ```
//!
//! Measured: the wall time of `NftBackend::apply` (model diff, JSON, one `nft -j -f -`
//! transaction through `ip netns exec`) for batches that add 10,000 new addresses to a set
//! that grows to 100,000, then batches that lift 10,000; and one reconcile of 100,000
//! decisions into an empty table, as at start.

use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use swarmguard_agent::api::Metrics;
use swarmguard_agent::decide::{Action, Decision, Origin};
use swarmguard_agent::enforce::{Backend, Change, NftBackend, NftCommand, NftConfig};
use swarmguard_agent::subject::Subject;

const BATCH: u32 = 10_000;
const BATCHES: u32 = 10;

/// A namespace for the run, deleted on drop.
struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn subject(i: u32) -> Subject {
    // 10.0.0.0/8 and beyond, one address each.
    Subject::Ip(std::net::Ipv4Addr::from(0x0a00_0000 + i).into())
}

fn backend(netns: &Netns) -> NftBackend {
    let argv = ["ip", "netns", "exec", &netns.0, "nft"]
        .map(str::to_owned)
        .to_vec();
    let config = NftConfig {
        command: NftCommand::new(argv).expect("non-empty"),
        forward: false,
    };
    NftBackend::new(config, &Metrics::new())
}

fn rate(n: u32, elapsed: Duration) -> f64 {
    f64::from(n) / elapsed.as_secs_f64()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let netns = Netns(format!("sgbench-{}", std::process::id()));
    let status = Command::new("ip").args(["netns", "add", &netns.0]).status();
    assert!(
        status.is_ok_and(|s| s.success()),
        "ip netns add failed (root needed)"
    );

    let mut nft = backend(&netns);
    nft.reconcile(&[], SystemTime::now()).expect("table loads");
    let until = SystemTime::now() + Duration::from_secs(3600);

    let mut add_rates = Vec::new();
    for batch in 0..BATCHES {
        let changes: Vec<Change> = (batch * BATCH..(batch + 1) * BATCH)
            .map(|i| Change::Block {
                subject: subject(i),
                until,
            })
            .collect();
        let start = Instant::now();
        let applied = nft
            .apply(&changes, SystemTime::now())
            .expect("batch applies");
        let elapsed = start.elapsed();
        assert_eq!(applied.added, BATCH as usize);
        add_rates.push(rate(BATCH, elapsed));
        println!(
            "add    batch {:>2}: {BATCH} decisions in {:>7.1} ms = {:>8.0}/s (set holds {})",
            batch + 1,
            elapsed.as_secs_f64() * 1e3,
            rate(BATCH, elapsed),
            (batch + 1) * BATCH
        );
    }

    let mut remove_rates = Vec::new();
    for batch in 0..BATCHES {
        let changes: Vec<Change> = (batch * BATCH..(batch + 1) * BATCH)
            .map(|i| Change::Unblock {
                subject: subject(i),
            })
            .collect();
        let start = Instant::now();
        nft.apply(&changes, SystemTime::now())
            .expect("batch applies");
        let elapsed = start.elapsed();
        remove_rates.push(rate(BATCH, elapsed));
        println!(
            "remove batch {:>2}: {BATCH} decisions in {:>7.1} ms = {:>8.0}/s",
            batch + 1,
            elapsed.as_secs_f64() * 1e3,
            rate(BATCH, elapsed)
        );
    }

    // A restart: 100,000 active decisions into an empty table, one transaction.
    nft.cleanup().expect("cleanup");
    let now = SystemTime::now();
    let active: Vec<Decision> = (0..BATCH * BATCHES)
        .map(|i| Decision {
            subject: subject(i),
            action: Action::Block,
            until,
            origin: Origin::Quorum { origins: 3 },
            reason: String::new(),
            created: now,
        })
        .collect();
    let mut fresh = backend(&netns);
    let start = Instant::now();
    fresh
        .reconcile(&active, SystemTime::now())
        .expect("reconcile");
    let reconcile = start.elapsed();
    let start = Instant::now();
    let again = fresh
        .reconcile(&active, SystemTime::now())
        .expect("reconcile");
    let idempotent = start.elapsed();
    assert!(again.is_noop(), "second reconcile changed {again:?}");

    println!();
    println!(
        "batches of {BATCH}: add median {:.0} decisions/s, remove median {:.0} decisions/s",
        median(add_rates),
        median(remove_rates)
    );
    println!(
        "reconcile of {} decisions into an empty table: {:.2} s = {:.0}/s; second reconcile (no change): {:.2} s",
        BATCH * BATCHES,
        reconcile.as_secs_f64(),
        rate(BATCH * BATCHES, reconcile),
        idempotent.as_secs_f64()
    );
    fresh.cleanup().expect("cleanup");
}
