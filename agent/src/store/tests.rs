//! The store on a real sled database in a temporary folder.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::*;
use crate::decide::{Action, Origin};

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn decision(subject: &str, until: u64) -> Decision {
    Decision {
        subject: subject.parse().unwrap(),
        action: Action::Block,
        until: at(until),
        origin: Origin::Local {
            rule: "1:2002383".to_owned(),
        },
        reason: "scan".to_owned(),
        created: at(1000),
    }
}

fn open(dir: &Path) -> (Store, Metrics) {
    let metrics = Metrics::new();
    let store = Store::open(dir, StoreConfig::default(), &metrics).unwrap();
    (store, metrics)
}

#[test]
fn decisions_are_kept_per_subject_and_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (store, _) = open(dir.path());
        assert_eq!(
            store
                .put_decision(&decision("192.0.2.7", 5000), Durability::Lazy)
                .unwrap(),
            None
        );
        store
            .put_decision(&decision("2001:db8::/32", 6000), Durability::Lazy)
            .unwrap();
        let replaced = store
            .put_decision(&decision("192.0.2.7", 7000), Durability::Flushed)
            .unwrap();
        assert_eq!(replaced, Some(decision("192.0.2.7", 5000)));
    }
    let (store, _) = open(dir.path());
    assert_eq!(
        store.decisions().unwrap(),
        [decision("192.0.2.7", 7000), decision("2001:db8::/32", 6000)]
    );
    assert_eq!(
        store.decision(&"192.0.2.7".parse().unwrap()).unwrap(),
        Some(decision("192.0.2.7", 7000))
    );
    let removed = store
        .remove_decision(&"192.0.2.7".parse().unwrap(), Durability::Flushed)
        .unwrap();
    assert_eq!(removed, Some(decision("192.0.2.7", 7000)));
    assert_eq!(store.decision(&"192.0.2.7".parse().unwrap()).unwrap(), None);
}

#[test]
fn active_decisions_leave_out_lapsed_ones_and_sweep_removes_them() {
    let dir = tempfile::tempdir().unwrap();
    let (store, metrics) = open(dir.path());
    store
        .put_decision(&decision("192.0.2.1", 100), Durability::Lazy)
        .unwrap();
    store
        .put_decision(&decision("192.0.2.2", 300), Durability::Lazy)
        .unwrap();
    assert_eq!(
        store.active_decisions(at(200)).unwrap(),
        [decision("192.0.2.2", 300)]
    );
    assert_eq!(
        store.decisions().unwrap().len(),
        2,
        "listing keeps lapsed until a sweep"
    );

    let swept = store.sweep(at(200)).unwrap();
    assert_eq!(swept.decisions, 1);
    assert_eq!(store.decisions().unwrap(), [decision("192.0.2.2", 300)]);
    let text = metrics.render();
    assert!(
        text.contains("swarmguard_store_entries{tree=\"decisions\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("swarmguard_store_swept_total{tree=\"decisions\"} 1"),
        "{text}"
    );
    assert!(text.contains("swarmguard_store_bytes "), "{text}");
}

#[test]
fn ban_history_counts_up_and_is_forgotten_after_the_retention() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    let subject: Subject = "198.51.100.9".parse().unwrap();
    assert_eq!(store.offense(&subject).unwrap(), None);
    assert_eq!(store.record_ban(&subject, at(1000)).unwrap().bans, 1);
    let second = store.record_ban(&subject, at(2000)).unwrap();
    assert_eq!(
        second,
        Offense {
            bans: 2,
            last_ban: at(2000)
        }
    );
    assert_eq!(store.offense(&subject).unwrap(), Some(second));

    let retention = store.config().history_retention.as_secs();
    assert_eq!(store.sweep(at(2000 + retention - 1)).unwrap().offenders, 0);
    assert_eq!(store.sweep(at(2000 + retention)).unwrap().offenders, 1);
    assert_eq!(store.offense(&subject).unwrap(), None);
}

#[test]
fn a_signal_is_stored_once_per_origin_and_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    let signal = |origin: &str, seq, expires| StoredSignal {
        origin: origin.to_owned(),
        seq,
        expires_at: at(expires),
        body: vec![seq as u8; 3],
    };
    assert!(store.put_signal(&signal("did:key:a", 1, 500)).unwrap());
    assert!(
        !store.put_signal(&signal("did:key:a", 1, 900)).unwrap(),
        "replay accepted"
    );
    assert!(store.put_signal(&signal("did:key:a", 2, 900)).unwrap());
    assert!(store.put_signal(&signal("did:key:b", 1, 900)).unwrap());
    assert_eq!(
        store.signals().unwrap(),
        [
            signal("did:key:a", 1, 500),
            signal("did:key:a", 2, 900),
            signal("did:key:b", 1, 900)
        ]
    );
    assert_eq!(store.sweep(at(600)).unwrap().signals, 1);
    assert_eq!(store.signals().unwrap().len(), 2);
}

#[test]
fn peers_are_refreshed_and_forgotten_when_long_gone() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    let peer = |did: &str, seen| StoredPeer {
        did: did.to_owned(),
        last_seen: at(seen),
        body: b"10.0.0.2:7300".to_vec(),
    };
    store.put_peer(&peer("did:key:a", 100)).unwrap();
    store.put_peer(&peer("did:key:b", 100)).unwrap();
    store.put_peer(&peer("did:key:a", 900_000)).unwrap();
    assert_eq!(
        store.peers().unwrap(),
        [peer("did:key:a", 900_000), peer("did:key:b", 100)]
    );
    let retention = store.config().peer_retention.as_secs();
    assert_eq!(store.sweep(at(100 + retention)).unwrap().peers, 1);
    assert_eq!(store.peers().unwrap(), [peer("did:key:a", 900_000)]);
    assert!(store.remove_peer("did:key:a").unwrap());
    assert!(store.peers().unwrap().is_empty());
}

#[test]
fn a_full_tree_refuses_new_records_but_accepts_updates() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Metrics::new();
    let config = StoreConfig {
        max_entries: 2,
        ..StoreConfig::default()
    };
    let store = Store::open(dir.path(), config, &metrics).unwrap();
    store
        .put_decision(&decision("192.0.2.1", 100), Durability::Lazy)
        .unwrap();
    store
        .put_decision(&decision("192.0.2.2", 100), Durability::Lazy)
        .unwrap();
    let err = store
        .put_decision(&decision("192.0.2.3", 100), Durability::Lazy)
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Full {
                tree: "decisions",
                limit: 2
            }
        ),
        "{err}"
    );
    store
        .put_decision(&decision("192.0.2.2", 900), Durability::Lazy)
        .unwrap();
    assert_eq!(store.decisions().unwrap().len(), 2);
    assert!(
        metrics
            .render()
            .contains("swarmguard_store_refused_total{tree=\"decisions\"} 1")
    );
}

#[test]
fn entry_counts_are_exact_after_reopening() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (store, _) = open(dir.path());
        for i in 0..10 {
            store
                .put_decision(&decision(&format!("192.0.2.{i}"), 100), Durability::Lazy)
                .unwrap();
        }
        store
            .remove_decision(&"192.0.2.3".parse().unwrap(), Durability::Flushed)
            .unwrap();
    }
    let (store, _) = open(dir.path());
    assert_eq!(store.entries()[0], ("decisions", 9));
}

#[test]
fn a_corrupt_record_is_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let (store, metrics) = open(dir.path());
    store
        .put_decision(&decision("192.0.2.1", 100), Durability::Lazy)
        .unwrap();
    store
        .decisions
        .tree
        .insert("192.0.2.9", &[1u8, 0xff, 0xff][..])
        .unwrap();
    assert_eq!(store.decisions().unwrap(), [decision("192.0.2.1", 100)]);
    assert!(
        metrics
            .render()
            .contains("swarmguard_store_corrupt_total{tree=\"decisions\"} 1")
    );
}

#[test]
fn a_second_open_of_the_same_database_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, _) = open(dir.path());
    let err = Store::open(dir.path(), StoreConfig::default(), &Metrics::new()).unwrap_err();
    assert!(matches!(err, StoreError::Open { .. }), "{err}");
}

#[tokio::test]
async fn the_sweeper_task_removes_lapsed_records_until_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    let store = std::sync::Arc::new(store);
    // Lapsed long ago, and one that holds for an hour.
    store
        .put_decision(&decision("192.0.2.1", 100), Durability::Lazy)
        .unwrap();
    let hour = SystemTime::now() + Duration::from_secs(3600);
    let holds = Decision {
        until: hour,
        ..decision("192.0.2.2", 0)
    };
    store.put_decision(&holds, Durability::Lazy).unwrap();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(sweep_every(
        std::sync::Arc::clone(&store),
        Duration::from_millis(10),
        stop_rx,
    ));
    for _ in 0..3000 {
        if store.entries()[0].1 == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(store.decisions().unwrap(), [holds]);
    stop_tx.send(true).unwrap();
    task.await.unwrap();
}
