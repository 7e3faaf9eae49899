//! The swarm protocol core on a simulated network (virtual clock, latency, loss,
//! partitions): dissemination, failure detection, rejoin, healing, and every way a message
//! or a signal is refused.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use swarmguard_agent::detect::Severity;
use swarmguard_agent::swarm::sim::{SimConfig, SimNet};
use swarmguard_agent::swarm::{
    DropReason, Event, Peer, RateLimit, Reason, Signal, SignalBody, SignalId, SigningKey, Swarm,
    SwarmConfig, signals_message,
};

type Log = Vec<(usize, Event)>;

fn body(now: SystemTime, subject: &str) -> SignalBody {
    SignalBody {
        subject: subject.parse().unwrap(),
        reason: Reason {
            rule: "1:2002383".to_owned(),
            class: "attempted-recon".to_owned(),
        },
        severity: Severity::High,
        observed_at: now,
        expires_at: now + Duration::from_secs(3600),
    }
}

/// `count` hosts that all joined through host 0, with every host knowing every other.
fn swarm_of(count: usize, loss: f64, seed: u64) -> (SimNet, Log) {
    let mut net = SimNet::new(SimConfig {
        loss,
        seed,
        ..SimConfig::default()
    });
    for _ in 0..count {
        net.add_node(SwarmConfig {
            expected_members: count as u32,
            ..SwarmConfig::default()
        });
    }
    net.admit_all();
    let seed_addr = net.node(0).addr;
    let mut log = Log::new();
    for index in 1..count {
        net.with(
            index,
            |swarm, now| swarm.join(now, &[seed_addr]),
            |i, _, e| log.push((i, e)),
        );
    }
    let joined = run_until(&mut net, &mut log, Duration::from_secs(600), |net, _| {
        (0..count).all(|i| members(net, i) == count - 1)
    });
    assert!(joined, "the swarm did not form: {:?}", member_counts(&net));
    (net, log)
}

fn members(net: &SimNet, index: usize) -> usize {
    net.node(index)
        .swarm
        .as_ref()
        .map_or(0, |swarm| swarm.members().len())
}

fn member_counts(net: &SimNet) -> Vec<usize> {
    (0..net.len()).map(|i| members(net, i)).collect()
}

/// Runs in steps of 100 ms of virtual time until `done` holds or `cap` has passed;
/// returns whether it held. The cap only stops a broken run from looping forever.
fn run_until(
    net: &mut SimNet,
    log: &mut Log,
    cap: Duration,
    mut done: impl FnMut(&SimNet, &Log) -> bool,
) -> bool {
    let deadline = net.now() + cap;
    while net.now() < deadline {
        if done(net, log) {
            return true;
        }
        net.run_for(Duration::from_millis(100), |i, _, e| log.push((i, e)));
    }
    done(net, log)
}

fn publish(net: &mut SimNet, log: &mut Log, index: usize, subject: &str) -> Signal {
    net.with(
        index,
        |swarm, now| swarm.publish(now, body(now, subject)),
        |i, _, e| log.push((i, e)),
    )
    .expect("the host runs")
    .expect("the signal is accepted")
}

/// How many times each host reported each signal.
fn receipts(log: &Log) -> HashMap<(usize, SignalId), usize> {
    let mut out = HashMap::new();
    for (index, event) in log {
        if let Event::SignalReceived(signal) = event {
            *out.entry((*index, signal.id())).or_default() += 1;
        }
    }
    out
}

fn holds(net: &SimNet, index: usize, id: SignalId) -> bool {
    net.node(index)
        .swarm
        .as_ref()
        .is_some_and(|swarm| swarm.live_signals().any(|s| s.id() == id))
}

#[test]
fn a_published_signal_reaches_every_member_exactly_once() {
    let (mut net, mut log) = swarm_of(20, 0.05, 7);
    let signal = publish(&mut net, &mut log, 3, "203.0.113.7");
    let everywhere = run_until(&mut net, &mut log, Duration::from_secs(120), |net, _| {
        (0..20).all(|i| holds(net, i, signal.id()))
    });
    assert!(everywhere, "not every member holds the signal");
    // Let gossip and anti-entropy run on: nobody reports it a second time.
    net.run_for(Duration::from_secs(30), |i, _, e| log.push((i, e)));
    let receipts = receipts(&log);
    for index in (0..20).filter(|i| *i != 3) {
        assert_eq!(
            receipts.get(&(index, signal.id())),
            Some(&1),
            "host {index}"
        );
    }
    assert_eq!(
        receipts.get(&(3, signal.id())),
        None,
        "the origin reports its own"
    );
    let duplicates: u64 = net
        .nodes()
        .iter()
        .filter_map(|node| node.swarm.as_ref())
        .map(|swarm| swarm.stats().dropped(DropReason::Duplicate))
        .sum();
    assert!(
        duplicates > 0,
        "push with fanout 3 brings copies; they are counted"
    );
}

#[test]
fn signals_reach_all_five_members_without_loss() {
    let (mut net, mut log) = swarm_of(5, 0.0, 11);
    let signals: Vec<Signal> = (0..5)
        .map(|i| publish(&mut net, &mut log, i, &format!("198.51.100.{}", i + 1)))
        .collect();
    let converged = run_until(&mut net, &mut log, Duration::from_secs(60), |net, _| {
        signals
            .iter()
            .all(|signal| (0..5).all(|i| holds(net, i, signal.id())))
    });
    assert!(converged);
    let receipts = receipts(&log);
    assert_eq!(receipts.len(), 5 * 4);
    assert!(receipts.values().all(|count| *count == 1));
}

#[test]
fn a_stopped_member_is_declared_down_and_a_restarted_one_rejoins() {
    let (mut net, mut log) = swarm_of(5, 0.0, 3);
    let gone = net.node(4).peer;
    net.stop(4);
    let declared = run_until(&mut net, &mut log, Duration::from_secs(120), |_, log| {
        let saw_down: HashSet<usize> = log
            .iter()
            .filter(|(_, e)| matches!(e, Event::MemberDown(m) if m.peer == gone))
            .map(|(i, _)| *i)
            .collect();
        (0..4).all(|i| saw_down.contains(&i))
    });
    assert!(declared, "not every member declared the stopped one down");
    assert!((0..4).all(|i| members(&net, i) == 3));

    // While it is away, a signal is published; the restarted member must catch up.
    let missed = publish(&mut net, &mut log, 1, "192.0.2.99");
    net.run_for(Duration::from_secs(5), |i, _, e| log.push((i, e)));
    net.start(4);
    let seed_addr = net.node(0).addr;
    net.with(
        4,
        |swarm, now| swarm.join(now, &[seed_addr]),
        |i, _, e| log.push((i, e)),
    );
    let rejoined = run_until(&mut net, &mut log, Duration::from_secs(120), |net, _| {
        (0..5).all(|i| members(net, i) == 4) && holds(net, 4, missed.id())
    });
    assert!(rejoined, "members: {:?}", member_counts(&net));
    let new_identity = net.node(4).swarm.as_ref().unwrap().identity();
    assert!(
        log.iter()
            .any(|(i, e)| *i == 0 && matches!(e, Event::MemberUp(m) if *m == new_identity)),
        "host 0 saw the new incarnation come up"
    );
}

#[test]
fn a_partition_heals_and_all_signals_converge() {
    let count = 10;
    let (mut net, mut log) = swarm_of(count, 0.01, 5);
    let groups: Vec<u32> = (0..count as u32).map(|i| u32::from(i >= 5)).collect();
    net.partition(&groups);
    let left = publish(&mut net, &mut log, 1, "192.0.2.1");
    let right = publish(&mut net, &mut log, 7, "192.0.2.2");
    net.run_for(Duration::from_secs(60), |i, _, e| log.push((i, e)));
    // Each side holds its own signal and not the other's.
    for index in 0..count {
        let own_side = if index < 5 { &left } else { &right };
        let other_side = if index < 5 { &right } else { &left };
        assert!(holds(&net, index, own_side.id()), "host {index}");
        assert!(!holds(&net, index, other_side.id()), "host {index}");
    }
    // Published on one side during the partition, then healed.
    let late = publish(&mut net, &mut log, 8, "192.0.2.3");
    net.heal();
    let converged = run_until(&mut net, &mut log, Duration::from_secs(600), |net, _| {
        [&left, &right, &late]
            .iter()
            .all(|signal| (0..count).all(|i| holds(net, i, signal.id())))
    });
    assert!(
        converged,
        "members after healing: {:?}",
        member_counts(&net)
    );
    let receipts = receipts(&log);
    assert!(receipts.values().all(|times| *times == 1), "{receipts:?}");
}

#[test]
fn a_late_joiner_catches_up_through_anti_entropy() {
    let (mut net, mut log) = swarm_of(8, 0.02, 9);
    let signals: Vec<Signal> = (0..40)
        .map(|n| publish(&mut net, &mut log, n % 8, &format!("192.0.2.{}", n + 10)))
        .collect();
    net.run_for(Duration::from_secs(10), |i, _, e| log.push((i, e)));
    let newcomer = net.add_node(SwarmConfig::default());
    net.admit_all();
    let seed_addr = net.node(0).addr;
    net.with(
        newcomer,
        |swarm, now| swarm.join(now, &[seed_addr]),
        |i, _, e| log.push((i, e)),
    );
    let caught_up = run_until(&mut net, &mut log, Duration::from_secs(120), |net, _| {
        signals
            .iter()
            .all(|signal| holds(net, newcomer, signal.id()))
    });
    assert!(caught_up);
}

// Refusals: one member, fed crafted messages directly.

const NOW_SECS: u64 = 1_767_225_600;

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(NOW_SECS)
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

struct Target {
    swarm: Swarm,
    member: SigningKey,
    member_peer: Peer,
    other_member: SigningKey,
}

fn target(config: SwarmConfig) -> Target {
    let key = SigningKey::from_seed(&[1; 32]).unwrap();
    let member = SigningKey::from_seed(&[2; 32]).unwrap();
    let other_member = SigningKey::from_seed(&[3; 32]).unwrap();
    let mut swarm = Swarm::new(config, key, addr(7300), now());
    assert!(swarm.admit(member.peer_id()));
    assert!(swarm.admit(other_member.peer_id()));
    Target {
        swarm,
        member_peer: Peer {
            id: member.peer_id(),
            addr: addr(7301),
        },
        member,
        other_member,
    }
}

fn received(swarm: &mut Swarm) -> Vec<SignalId> {
    let mut out = Vec::new();
    while let Some(event) = swarm.poll_event() {
        if let Event::SignalReceived(signal) = event {
            out.push(signal.id());
        }
    }
    out
}

fn signed(key: &SigningKey, seq: u64, at: SystemTime) -> Signal {
    Signal::sign(key, seq, body(at, "203.0.113.50")).unwrap()
}

#[test]
fn forged_signatures_are_dropped_as_bad_signature() {
    let mut t = target(SwarmConfig::default());
    let genuine = signed(&t.member, 1, now());
    // A flipped bit in the signature.
    let mut flipped = genuine.as_bytes().to_vec();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x80;
    // The member's signature, with another member named as origin (offset 1..33).
    let mut impersonation = genuine.as_bytes().to_vec();
    impersonation[1..33].copy_from_slice(t.other_member.peer_id().public_key());
    let message = signals_message([&flipped[..], &impersonation[..]]);
    t.swarm.handle_message(now(), t.member_peer, &message);
    assert_eq!(t.swarm.stats().dropped(DropReason::BadSignature), 2);
    assert!(received(&mut t.swarm).is_empty());
    // Forgeries spent none of the impersonated member's tokens.
    let real = signed(&t.other_member, 2, now());
    t.swarm
        .handle_message(now(), t.member_peer, &signals_message([real.as_bytes()]));
    assert_eq!(received(&mut t.swarm), vec![real.id()]);
}

#[test]
fn replayed_signals_are_dropped_and_reported_once() {
    let mut t = target(SwarmConfig {
        max_signals_per_origin: 2,
        ..SwarmConfig::default()
    });
    let first = signed(&t.member, 1, now());
    let message = signals_message([first.as_bytes()]);
    t.swarm.handle_message(now(), t.member_peer, &message);
    t.swarm.handle_message(now(), t.member_peer, &message);
    assert_eq!(received(&mut t.swarm), vec![first.id()]);
    assert_eq!(t.swarm.stats().dropped(DropReason::Duplicate), 1);
    // Two newer signals push the first out for room; replaying it then must not make it
    // count again.
    for seq in [2, 3] {
        let newer = signed(&t.member, seq, now());
        t.swarm
            .handle_message(now(), t.member_peer, &signals_message([newer.as_bytes()]));
    }
    assert_eq!(received(&mut t.swarm).len(), 2);
    t.swarm.handle_message(now(), t.member_peer, &message);
    assert_eq!(t.swarm.stats().dropped(DropReason::Replayed), 1);
    assert!(received(&mut t.swarm).is_empty());
}

#[test]
fn oversized_messages_and_signals_are_dropped_as_too_large() {
    let mut t = target(SwarmConfig {
        max_message_size: 4096,
        ..SwarmConfig::default()
    });
    let huge = vec![0u8; 4097];
    t.swarm.handle_message(now(), t.member_peer, &huge);
    let big_signal = vec![1u8; 2000];
    t.swarm
        .handle_message(now(), t.member_peer, &signals_message([&big_signal[..]]));
    assert_eq!(t.swarm.stats().dropped(DropReason::TooLarge), 2);
    t.swarm
        .handle_message(now(), t.member_peer, &[1, 2, 0, 1, 0, 3, 1, 2, 3]);
    t.swarm.handle_message(now(), t.member_peer, &[9, 9, 9]);
    assert_eq!(t.swarm.stats().dropped(DropReason::Malformed), 2);
}

#[test]
fn non_members_and_their_signals_are_dropped_as_unknown_member() {
    let mut t = target(SwarmConfig::default());
    let outsider = SigningKey::from_seed(&[9; 32]).unwrap();
    let theirs = signed(&outsider, 1, now());
    // Sent by the outsider itself.
    let outsider_peer = Peer {
        id: outsider.peer_id(),
        addr: addr(7309),
    };
    t.swarm
        .handle_message(now(), outsider_peer, &signals_message([theirs.as_bytes()]));
    // Relayed by a member.
    t.swarm
        .handle_message(now(), t.member_peer, &signals_message([theirs.as_bytes()]));
    assert_eq!(t.swarm.stats().dropped(DropReason::UnknownMember), 2);
    let mut asked = Vec::new();
    while let Some(event) = t.swarm.poll_event() {
        match event {
            Event::UnknownOrigin(peer) => asked.push(peer),
            Event::SignalReceived(signal) => panic!("accepted {signal:?}"),
            _ => {}
        }
    }
    assert_eq!(asked, vec![outsider.peer_id()]);
}

#[test]
fn expelled_members_lose_their_signals_and_their_voice() {
    let mut t = target(SwarmConfig::default());
    let before = signed(&t.member, 1, now());
    t.swarm
        .handle_message(now(), t.member_peer, &signals_message([before.as_bytes()]));
    assert_eq!(received(&mut t.swarm), vec![before.id()]);
    t.swarm.expel(now(), t.member.peer_id());
    let mut withdrawn = None;
    while let Some(event) = t.swarm.poll_event() {
        if let Event::SignalsWithdrawn { origin, count } = event {
            withdrawn = Some((origin, count));
        }
    }
    assert_eq!(withdrawn, Some((t.member.peer_id(), 1)));
    assert_eq!(t.swarm.live_signal_count(), 0);
    let after = signed(&t.member, 2, now());
    // From the expelled member, and relayed by another.
    t.swarm
        .handle_message(now(), t.member_peer, &signals_message([after.as_bytes()]));
    let relay = Peer {
        id: t.other_member.peer_id(),
        addr: addr(7302),
    };
    t.swarm
        .handle_message(now(), relay, &signals_message([after.as_bytes()]));
    assert_eq!(t.swarm.stats().dropped(DropReason::RevokedMember), 2);
    assert!(received(&mut t.swarm).is_empty());
}

#[test]
fn expired_signals_are_dropped_as_expired() {
    let mut t = target(SwarmConfig::default());
    let old = signed(&t.member, 1, now() - Duration::from_secs(7200));
    t.swarm
        .handle_message(now(), t.member_peer, &signals_message([old.as_bytes()]));
    assert_eq!(t.swarm.stats().dropped(DropReason::Expired), 1);
    // A live one that then expires is forgotten at the next round.
    let short = Signal::sign(
        &t.member,
        2,
        SignalBody {
            expires_at: now() + Duration::from_secs(1),
            ..body(now(), "203.0.113.51")
        },
    )
    .unwrap();
    t.swarm
        .handle_message(now(), t.member_peer, &signals_message([short.as_bytes()]));
    assert_eq!(t.swarm.live_signal_count(), 1);
    t.swarm.handle_timeout(now() + Duration::from_secs(2));
    assert_eq!(t.swarm.live_signal_count(), 0);
    assert_eq!(t.swarm.stats().signals_expired, 1);
}

#[test]
fn an_origin_beyond_its_rate_is_dropped_as_rate_limited() {
    let mut t = target(SwarmConfig {
        rate_limit: RateLimit {
            per_second: 1.0,
            burst: 5,
        },
        ..SwarmConfig::default()
    });
    let flood: Vec<Signal> = (1..=10).map(|seq| signed(&t.member, seq, now())).collect();
    let message = signals_message(flood.iter().map(Signal::as_bytes));
    t.swarm.handle_message(now(), t.member_peer, &message);
    assert_eq!(received(&mut t.swarm).len(), 5);
    assert_eq!(t.swarm.stats().dropped(DropReason::RateLimited), 5);
    // Another origin is not held back by the first one's flood.
    let other = signed(&t.other_member, 1, now());
    t.swarm
        .handle_message(now(), t.member_peer, &signals_message([other.as_bytes()]));
    assert_eq!(received(&mut t.swarm), vec![other.id()]);
    // Two seconds later, two more tokens.
    let later = now() + Duration::from_secs(2);
    let more: Vec<Signal> = (11..=14).map(|seq| signed(&t.member, seq, later)).collect();
    t.swarm.handle_message(
        later,
        t.member_peer,
        &signals_message(more.iter().map(Signal::as_bytes)),
    );
    assert_eq!(received(&mut t.swarm).len(), 2);
}

#[test]
fn a_swim_packet_naming_another_sender_is_dropped_as_spoofed() {
    let mut t = target(SwarmConfig::default());
    // A real SWIM announce from the member, captured off its outbox.
    let mut member = Swarm::new(
        SwarmConfig::default(),
        SigningKey::from_seed(&[2; 32]).unwrap(),
        addr(7301),
        now(),
    );
    member.join(now(), &[addr(7300)]);
    let announce = member.poll_transmit().expect("an announce to the seed");
    // Delivered as if the other member had sent it.
    let impostor = Peer {
        id: t.other_member.peer_id(),
        addr: addr(7302),
    };
    t.swarm.handle_message(now(), impostor, &announce.bytes);
    assert_eq!(t.swarm.stats().dropped(DropReason::Spoofed), 1);
    // From its real sender it is accepted, and answered.
    t.swarm
        .handle_message(now(), t.member_peer, &announce.bytes);
    let reply = t.swarm.poll_transmit().expect("a feed in reply");
    assert_eq!(reply.to, addr(7301));
    assert_eq!(reply.peer, Some(t.member.peer_id()));
}

#[test]
fn restored_signals_survive_a_restart_without_being_reported_again() {
    let (mut net, mut log) = swarm_of(6, 0.0, 13);
    let signals: Vec<Signal> = (0..3)
        .map(|i| publish(&mut net, &mut log, i, &format!("192.0.2.{}", 50 + i)))
        .collect();
    let spread = run_until(&mut net, &mut log, Duration::from_secs(60), |net, _| {
        signals
            .iter()
            .all(|signal| (0..6).all(|i| holds(net, i, signal.id())))
    });
    assert!(spread);
    // What the store would have persisted, as bytes, read back.
    let saved: Vec<Vec<u8>> = net
        .node(5)
        .swarm
        .as_ref()
        .unwrap()
        .live_signals()
        .map(|signal| signal.as_bytes().to_vec())
        .collect();
    assert_eq!(saved.len(), 3);
    net.stop(5);
    net.start(5);
    let restored = net
        .with(
            5,
            |swarm, now| {
                let decoded = saved.iter().map(|bytes| Signal::decode(bytes).unwrap());
                swarm.restore(now, decoded)
            },
            |i, _, e| log.push((i, e)),
        )
        .unwrap();
    assert_eq!(restored, 3);
    let seed_addr = net.node(0).addr;
    let before = log.len();
    net.with(
        5,
        |swarm, now| swarm.join(now, &[seed_addr]),
        |i, _, e| log.push((i, e)),
    );
    let rejoined = run_until(&mut net, &mut log, Duration::from_secs(120), |net, _| {
        members(net, 5) == 5
    });
    assert!(rejoined);
    net.run_for(Duration::from_secs(20), |i, _, e| log.push((i, e)));
    assert!(
        !log[before..]
            .iter()
            .any(|(i, e)| *i == 5 && matches!(e, Event::SignalReceived(_))),
        "a restored signal was reported again"
    );
    assert!(signals.iter().all(|signal| holds(&net, 5, signal.id())));
}
