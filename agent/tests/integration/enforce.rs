//! The nftables backend on the real kernel, inside a test network namespace: packets from
//! blocked sources are dropped, others pass.
//!
//! "Dropped" is shown without waiting for a timeout: the blocked source sends first, then
//! an unblocked control address on the same host; datagrams on one veth path arrive in
//! order, so when the control arrives and the blocked one has not, it was dropped.

use std::time::{Duration, SystemTime};

use serde_json::Value;
use swarmguard_agent::api::Metrics;
use swarmguard_agent::decide::{Action, Decision, Origin};
use swarmguard_agent::enforce::{Applied, Backend, Change, NftBackend, NftCommand, NftConfig};

use crate::netlab::{A4, A6, Lab, receive_until};

fn backend(lab: &Lab, forward: bool, metrics: &Metrics) -> NftBackend {
    let config = NftConfig {
        command: NftCommand::new(lab.a.nft_command()).unwrap(),
        forward,
    };
    NftBackend::new(config, metrics)
}

fn block(subject: &str, for_secs: u64) -> Change {
    Change::Block {
        subject: subject.parse().unwrap(),
        until: SystemTime::now() + Duration::from_secs(for_secs),
    }
}

fn decision(subject: &str, for_secs: u64) -> Decision {
    let now = SystemTime::now();
    Decision {
        subject: subject.parse().unwrap(),
        action: Action::Block,
        until: now + Duration::from_secs(for_secs),
        origin: Origin::Local {
            rule: "1:2010935".to_owned(),
        },
        reason: "test".to_owned(),
        created: now,
    }
}

/// Sends from each of `blocked`, then from `control`; returns which of `blocked` arrived.
fn arrived(lab: &Lab, to: &str, blocked: &[&str], control: &str) -> Vec<String> {
    let socket = lab.listen(to, 9000);
    for from in blocked {
        lab.send(from, to, 9000, format!("from {from}").as_bytes());
    }
    lab.send(control, to, 9000, b"control");
    receive_until(&socket, b"control")
        .into_iter()
        .map(|(from, _)| from.ip().to_string())
        .collect()
}

fn listing(lab: &Lab) -> Value {
    let text = lab
        .a
        .exec(&["nft", "-j", "list", "table", "inet", "swarmguard"]);
    serde_json::from_str(&text).unwrap()
}

/// The listing without the seconds each element has left, which count down by themselves.
fn without_expiry(mut value: Value) -> Value {
    match &mut value {
        Value::Object(map) => {
            map.remove("expires");
            for item in map.values_mut() {
                *item = without_expiry(item.take());
            }
        }
        Value::Array(items) => {
            for item in items.iter_mut() {
                *item = without_expiry(item.take());
            }
        }
        _ => {}
    }
    value
}

fn elements(lab: &Lab, set: &str) -> Vec<String> {
    let text = lab
        .a
        .exec(&["nft", "list", "set", "inet", "swarmguard", set]);
    let Some(start) = text.find("elements = {") else {
        return Vec::new();
    };
    let body = &text[start + 12..];
    let body = &body[..body.find('}').unwrap()];
    body.split(',')
        .map(|item| item.split_whitespace().next().unwrap().to_owned())
        .collect()
}

#[test]
fn a_blocked_source_is_dropped_and_other_sources_pass() {
    let lab = Lab::new();
    let metrics = Metrics::new();
    let mut nft = backend(&lab, false, &metrics);
    nft.reconcile(&[], SystemTime::now()).unwrap();
    assert_eq!(
        arrived(&lab, A4, &["10.77.0.2"], "10.77.0.3"),
        ["10.77.0.2"]
    );

    let applied = nft
        .apply(&[block("10.77.0.2", 600)], SystemTime::now())
        .unwrap();
    assert_eq!(applied.added, 1);
    assert!(arrived(&lab, A4, &["10.77.0.2"], "10.77.0.3").is_empty());

    let unblock = Change::Unblock {
        subject: "10.77.0.2".parse().unwrap(),
    };
    assert_eq!(nft.apply(&[unblock], SystemTime::now()).unwrap().removed, 1);
    assert_eq!(
        arrived(&lab, A4, &["10.77.0.2"], "10.77.0.3"),
        ["10.77.0.2"]
    );

    let text = metrics.render();
    assert!(
        text.contains("swarmguard_enforce_table_loaded{backend=\"nftables\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("swarmguard_nft_operations_total{op=\"apply\"} 2"),
        "{text}"
    );
}

#[test]
fn an_element_expires_by_itself() {
    let lab = Lab::new();
    let mut nft = backend(&lab, false, &Metrics::new());
    nft.apply(&[block("10.77.0.2", 2)], SystemTime::now())
        .unwrap();
    assert_eq!(elements(&lab, "v4_addrs"), ["10.77.0.2"]);
    assert!(arrived(&lab, A4, &["10.77.0.2"], "10.77.0.3").is_empty());
    // Wait for the kernel, not for a clock: the element is gone when the set says so.
    for _ in 0..300 {
        if elements(&lab, "v4_addrs").is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        elements(&lab, "v4_addrs").is_empty(),
        "the element did not expire"
    );
    assert_eq!(
        arrived(&lab, A4, &["10.77.0.2"], "10.77.0.3"),
        ["10.77.0.2"]
    );
    // The backend's model agrees: re-adding works and nothing is left to remove.
    let applied = nft
        .apply(&[block("10.77.0.2", 600)], SystemTime::now())
        .unwrap();
    assert_eq!(
        applied,
        Applied {
            added: 1,
            ..Applied::default()
        }
    );
}

#[test]
fn a_cidr_blocks_every_address_inside_it() {
    let lab = Lab::new();
    let mut nft = backend(&lab, false, &Metrics::new());
    nft.apply(&[block("10.77.0.0/30", 600)], SystemTime::now())
        .unwrap();
    assert_eq!(elements(&lab, "v4_nets"), ["10.77.0.0/30"]);
    assert!(arrived(&lab, A4, &["10.77.0.2", "10.77.0.3"], "10.77.0.20").is_empty());
}

#[test]
fn ipv6_sources_are_blocked() {
    let lab = Lab::new();
    let mut nft = backend(&lab, false, &Metrics::new());
    nft.apply(&[block("fd77::2", 600)], SystemTime::now())
        .unwrap();
    assert_eq!(elements(&lab, "v6_addrs"), ["fd77::2"]);
    assert!(arrived(&lab, A6, &["fd77::2"], "fd77::3").is_empty());
    assert_eq!(
        arrived(&lab, A4, &["10.77.0.2"], "10.77.0.3"),
        ["10.77.0.2"]
    );
}

#[test]
fn an_address_blocked_inside_a_network_outlives_it() {
    let lab = Lab::new();
    let mut nft = backend(&lab, false, &Metrics::new());
    // One batch, one transaction: the /30 and, inside it, .2 for longer.
    nft.apply(
        &[block("10.77.0.0/30", 600), block("10.77.0.2", 3600)],
        SystemTime::now(),
    )
    .unwrap();
    assert_eq!(elements(&lab, "v4_nets"), ["10.77.0.0/30"]);
    assert_eq!(elements(&lab, "v4_addrs"), ["10.77.0.2"]);
    assert!(arrived(&lab, A4, &["10.77.0.2", "10.77.0.3"], "10.77.0.20").is_empty());
    // Lifting the network keeps the address blocked.
    let lift = Change::Unblock {
        subject: "10.77.0.0/30".parse().unwrap(),
    };
    nft.apply(&[lift], SystemTime::now()).unwrap();
    assert!(elements(&lab, "v4_nets").is_empty());
    assert_eq!(
        arrived(&lab, A4, &["10.77.0.2", "10.77.0.3"], "10.77.0.20"),
        ["10.77.0.3"]
    );
}

#[test]
fn a_longer_network_block_arriving_later_cuts_the_outer_one_in_one_transaction() {
    let lab = Lab::new();
    let metrics = Metrics::new();
    let mut nft = backend(&lab, false, &metrics);
    nft.apply(&[block("10.77.0.0/29", 600)], SystemTime::now())
        .unwrap();
    // The /29 is replaced by its pieces around the longer /31 in one batch: no moment
    // without a block, and no overlap refused by the kernel.
    let applied = nft
        .apply(&[block("10.77.0.2/31", 3600)], SystemTime::now())
        .unwrap();
    assert_eq!((applied.added, applied.removed), (3, 1));
    assert_eq!(
        elements(&lab, "v4_nets"),
        ["10.77.0.0/31", "10.77.0.2/31", "10.77.0.4/30"]
    );
    assert!(arrived(&lab, A4, &["10.77.0.2", "10.77.0.3"], "10.77.0.20").is_empty());
    // The transaction succeeded the first time: no error, no fallback.
    let text = metrics.render();
    assert!(
        !text.contains("swarmguard_nft_errors_total{op=\"apply\"}"),
        "{text}"
    );
    // The first batch loaded the table (a reconcile); the second was one `apply`.
    assert!(
        text.contains("swarmguard_nft_operations_total{op=\"reconcile\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("swarmguard_nft_operations_total{op=\"apply\"} 1"),
        "{text}"
    );

    // Lifting the outer network leaves the inner one.
    let lift = Change::Unblock {
        subject: "10.77.0.0/29".parse().unwrap(),
    };
    nft.apply(&[lift], SystemTime::now()).unwrap();
    assert_eq!(elements(&lab, "v4_nets"), ["10.77.0.2/31"]);
}

#[test]
fn reconcile_is_idempotent() {
    let lab = Lab::new();
    let active = [
        decision("10.77.0.2", 3600),
        decision("198.51.100.0/24", 7200),
        decision("198.51.100.7", 9000),
        // Nested and longer-lived: the /24 is cut into pieces around it.
        decision("198.51.100.16/28", 9000),
        decision("2001:db8::/48", 3600),
        decision("fd77::2", 600),
        decision("evil.example", 600),
    ];
    let metrics = Metrics::new();
    let mut first = backend(&lab, true, &metrics);
    let applied = first.reconcile(&active, SystemTime::now()).unwrap();
    assert_eq!(applied.skipped, 1, "the domain is not nftables' business");
    let before = listing(&lab);

    // Again on the same backend, and on a fresh one as after a restart.
    assert!(
        first
            .reconcile(&active, SystemTime::now())
            .unwrap()
            .is_noop()
    );
    let mut restarted = backend(&lab, true, &Metrics::new());
    assert!(
        restarted
            .reconcile(&active, SystemTime::now())
            .unwrap()
            .is_noop()
    );
    let after = listing(&lab);
    assert_eq!(without_expiry(before), without_expiry(after));
    assert!(arrived(&lab, A4, &["10.77.0.2"], "10.77.0.3").is_empty());
}

#[test]
fn reconcile_removes_what_no_decision_holds_and_repairs_the_table() {
    let lab = Lab::new();
    let mut nft = backend(&lab, false, &Metrics::new());
    nft.reconcile(
        &[decision("10.77.0.2", 600), decision("10.77.0.3", 600)],
        SystemTime::now(),
    )
    .unwrap();
    // Someone deletes the chain by hand; the agent restarts with one decision lifted.
    lab.a
        .exec(&["nft", "delete", "chain", "inet", "swarmguard", "input"]);
    let mut restarted = backend(&lab, false, &Metrics::new());
    restarted
        .reconcile(&[decision("10.77.0.2", 600)], SystemTime::now())
        .unwrap();
    assert_eq!(elements(&lab, "v4_addrs"), ["10.77.0.2"]);
    assert_eq!(
        arrived(&lab, A4, &["10.77.0.2", "10.77.0.3"], "10.77.0.20"),
        ["10.77.0.3"]
    );
}

#[test]
fn cleanup_removes_the_table() {
    let lab = Lab::new();
    let mut nft = backend(&lab, true, &Metrics::new());
    nft.apply(&[block("10.77.0.2", 600)], SystemTime::now())
        .unwrap();
    assert!(nft.list_table().unwrap().is_some());
    nft.cleanup().unwrap();
    assert_eq!(nft.list_table().unwrap(), None);
    assert_eq!(
        arrived(&lab, A4, &["10.77.0.2"], "10.77.0.3"),
        ["10.77.0.2"]
    );
    // Cleaning up twice is fine.
    nft.cleanup().unwrap();
}

#[test]
fn swarmd_cleanup_removes_the_table() {
    let lab = Lab::new();
    let mut nft = backend(&lab, false, &Metrics::new());
    nft.apply(&[block("10.77.0.2", 600)], SystemTime::now())
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.toml");
    let argv: Vec<String> = lab
        .a
        .nft_command()
        .iter()
        .map(|a| format!("{a:?}"))
        .collect();
    std::fs::write(&config, format!("[enforce]\nnft = [{}]\n", argv.join(", "))).unwrap();
    let run = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_swarmd"))
            .args(["cleanup", "--config"])
            .arg(&config)
            .output()
            .unwrap()
    };
    let output = run();
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "removed nftables table inet swarmguard\n"
    );
    assert_eq!(nft.list_table().unwrap(), None);
    let again = run();
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stdout).contains("nothing to remove"));
}

#[test]
fn a_backend_that_cannot_load_says_so_and_does_not_panic() {
    let metrics = Metrics::new();
    let config = NftConfig {
        command: NftCommand::new(vec!["/nonexistent/nft".to_owned()]).unwrap(),
        forward: false,
    };
    let mut nft = NftBackend::new(config, &metrics);
    let err = nft
        .reconcile(&[decision("10.77.0.2", 600)], SystemTime::now())
        .unwrap_err();
    assert!(err.to_string().contains("/nonexistent/nft"), "{err}");
    // A later batch tries again, and fails the same way, without panicking.
    assert!(
        nft.apply(&[block("10.77.0.3", 600)], SystemTime::now())
            .is_err()
    );
    let text = metrics.render();
    assert!(
        text.contains("swarmguard_enforce_table_loaded{backend=\"nftables\"} 0"),
        "{text}"
    );
    assert!(
        text.contains("swarmguard_nft_errors_total{op=\"list\"} 2"),
        "{text}"
    );
}

#[test]
fn a_batch_refused_by_nft_is_repaired_by_reading_the_table() {
    let lab = Lab::new();
    let metrics = Metrics::new();
    let mut nft = backend(&lab, false, &metrics);
    nft.reconcile(&[], SystemTime::now()).unwrap();
    // A foreign element the backend cannot know about makes the set refuse the batch.
    lab.a.exec(&[
        "nft",
        "add",
        "element",
        "inet",
        "swarmguard",
        "v4_nets",
        "{ 10.77.0.0/24 }",
    ]);
    // The batch fails ("interval overlaps"), the backend re-reads the table, removes the
    // element no decision holds, and applies the decision.
    nft.apply(&[block("10.77.0.0/30", 600)], SystemTime::now())
        .unwrap();
    assert_eq!(elements(&lab, "v4_nets"), ["10.77.0.0/30"]);
    let text = metrics.render();
    assert!(
        text.contains("swarmguard_nft_errors_total{op=\"apply\"} 1"),
        "{text}"
    );
    assert!(arrived(&lab, A4, &["10.77.0.2"], "10.77.0.20").is_empty());
}
