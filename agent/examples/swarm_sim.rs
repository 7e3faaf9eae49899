//! A thousand agents on a simulated network, running the same swarm core as `swarmd`.
//!
//! `cargo run --release -p swarmguard-agent --example swarm_sim -- --agents 1000 --loss 0.1
//! [--fanout 3] [--interval-ms 200] [--json]`
//!
//! It forms a swarm, publishes one signal and reports how long (in simulated time) until
//! 99% and 100% of the live agents hold it, the bytes each agent sends per second, and the
//! false failure suspicions raised meanwhile. Then it plays a poisoning attempt: `quorum - 1`
//! colluding members signal an innocent subject as fast as their rate limit allows (and
//! flood past it, and forge a third member's signature), while every honest agent applies
//! the decision stage's quorum rule; `poisoned_blocks` counts honest agents that would block
//! the innocent subject. A control run with `quorum` honest reporters shows the rule does
//! block a real attacker.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use clap::Parser;
use swarmguard_agent::decide::quorum::{Quorum, QuorumConfig, Tally};
use swarmguard_agent::detect::Severity;
use swarmguard_agent::subject::Subject;
use swarmguard_agent::swarm::sim::{SimConfig, SimNet};
use swarmguard_agent::swarm::{
    DropReason, Event, PeerId, Reason, Signal, SignalBody, SwarmConfig, signals_message,
};

#[derive(Debug, Parser)]
#[command(about = "Simulate the swarm protocol with many agents on an in-memory network")]
struct Args {
    /// How many agents.
    #[arg(long, default_value_t = 1000)]
    agents: usize,
    /// Probability that a message is lost (0 to 1).
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// Members a new signal is pushed to, and SWIM gossips to per round.
    #[arg(long, default_value_t = 3)]
    fanout: usize,
    /// The gossip and anti-entropy round, in milliseconds.
    #[arg(long, default_value_t = 200)]
    interval_ms: u64,
    /// Members asked to probe indirectly before suspecting (SWIM's k; memberlist uses 3,
    /// the core's default is 5).
    #[arg(long, default_value_t = SwarmConfig::default().indirect_probes)]
    indirect_probes: usize,
    /// One-way network latency range in milliseconds, `MIN-MAX`.
    #[arg(long, default_value = "1-10")]
    latency_ms: String,
    /// Simulated seconds to let membership gossip quiet down after the swarm formed, so
    /// that bytes per second are measured in steady state.
    #[arg(long, default_value_t = 60)]
    settle_s: u64,
    /// Simulated seconds the colluders keep signalling the innocent subject.
    #[arg(long, default_value_t = 120)]
    poison_s: u64,
    /// Seed of the whole run (network and agents); equal seeds give equal runs.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// The figure from Serf's convergence model that the issue compares against: 99.99% of
/// 1,000 nodes in about 2.2 s with a 200 ms gossip interval and fanout 3.
const SERF_MODEL_MS: u64 = 2200;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.agents >= 4, "--agents must be at least 4");
    anyhow::ensure!((0.0..1.0).contains(&args.loss), "--loss must be in [0, 1)");
    let (low, high) = args
        .latency_ms
        .split_once('-')
        .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?)))
        .filter(|(a, b)| a <= b)
        .ok_or_else(|| anyhow::anyhow!("--latency-ms must be MIN-MAX, e.g. 1-10"))?;
    let interval = Duration::from_millis(args.interval_ms.max(1));
    let n = args.agents;
    let wall = std::time::Instant::now();

    let mut net = SimNet::new(SimConfig {
        latency: (Duration::from_millis(low), Duration::from_millis(high)),
        loss: args.loss,
        seed: args.seed,
        ..SimConfig::default()
    });
    for _ in 0..n {
        net.add_node(SwarmConfig {
            fanout: args.fanout,
            interval,
            expected_members: n as u32,
            indirect_probes: args.indirect_probes,
            seed: args.seed,
            ..SwarmConfig::default()
        });
    }
    net.admit_all();

    // Form the swarm: everyone joins through three seeds, then membership settles.
    let seeds: Vec<_> = (0..3).map(|i| net.node(i).addr).collect();
    for index in 0..n {
        net.with(index, |swarm, now| swarm.join(now, &seeds), |_, _, _| {});
    }
    let formed_at = net.now();
    let mut settle = Duration::ZERO;
    while settle < Duration::from_secs(300) {
        net.run_for(Duration::from_secs(1), |_, _, _| {});
        settle += Duration::from_secs(1);
        let known: usize = (0..n).map(|i| members(&net, i)).sum();
        if known >= n * (n - 1) * 99 / 100 && settle >= Duration::from_secs(10) {
            break;
        }
    }
    let membership = (0..n).map(|i| members(&net, i)).sum::<usize>() as f64 / (n * (n - 1)) as f64;
    let formed_in = net.now().duration_since(formed_at).unwrap_or_default();
    eprintln!(
        "swarm formed: {:.2}% of pairs known after {:.0} simulated s ({:.1} s of wall time)",
        membership * 100.0,
        formed_in.as_secs_f64(),
        wall.elapsed().as_secs_f64()
    );
    let formation_bytes: u64 = net.nodes().iter().map(|node| node.bytes_sent).sum();
    let formation_bytes_per_agent_per_s =
        formation_bytes as f64 / n as f64 / formed_in.as_secs_f64().max(1.0);
    net.run_for(Duration::from_secs(args.settle_s), |_, _, _| {});

    // Publish one signal and watch it spread.
    let origin = n / 2;
    let publish_at = net.now();
    let bytes_before: u64 = net.nodes().iter().map(|node| node.bytes_sent).sum();
    let signal = net
        .with(
            origin,
            |swarm, now| swarm.publish(now, body(now, "203.0.113.7", 600)),
            |_, _, _| {},
        )
        .ok_or_else(|| anyhow::anyhow!("the origin is not running"))??;
    let id = signal.id();
    let mut holders: HashSet<usize> = HashSet::from([origin]);
    let mut time_to_99 = None;
    let mut time_to_100 = None;
    let mut suspicions = 0u64;
    let mut down_events = 0u64;
    let mut downed: HashSet<PeerId> = HashSet::new();
    let target_99 = (n * 99).div_ceil(100);
    let window = Duration::from_secs(30);
    net.run_for(window, |index, now, event| match event {
        Event::SignalReceived(s) if s.id() == id => {
            holders.insert(index);
            let elapsed = now.duration_since(publish_at).unwrap_or_default();
            if holders.len() >= target_99 && time_to_99.is_none() {
                time_to_99 = Some(elapsed);
            }
            if holders.len() == n && time_to_100.is_none() {
                time_to_100 = Some(elapsed);
            }
        }
        Event::MemberSuspect(_) => suspicions += 1,
        Event::MemberDown(member) => {
            down_events += 1;
            downed.insert(member.peer);
        }
        _ => {}
    });
    let bytes_after: u64 = net.nodes().iter().map(|node| node.bytes_sent).sum();
    let bytes_per_agent_per_s =
        (bytes_after - bytes_before) as f64 / n as f64 / window.as_secs_f64();

    eprintln!(
        "dissemination measured ({:.1} s of wall time)",
        wall.elapsed().as_secs_f64()
    );
    let poisoning = poison(&mut net, args.interval_ms, args.poison_s)?;
    eprintln!(
        "poisoning played ({:.1} s of wall time)",
        wall.elapsed().as_secs_f64()
    );

    let ms = |d: Option<Duration>| d.map(|d| d.as_millis() as u64);
    let rounds = |d: Option<Duration>| d.map(|d| d.as_secs_f64() / interval.as_secs_f64());
    if args.json {
        let out = serde_json::json!({
            "agents": n,
            "loss": args.loss,
            "fanout": args.fanout,
            "interval_ms": args.interval_ms,
            "latency_ms": [low, high],
            "seed": args.seed,
            "membership_known": membership,
            "membership_settle_ms": formed_in.as_millis() as u64,
            "formation_bytes_per_agent_per_s": formation_bytes_per_agent_per_s.round(),
            "time_to_99_ms": ms(time_to_99),
            "time_to_100_ms": ms(time_to_100),
            "rounds_to_99": rounds(time_to_99),
            "rounds_to_100": rounds(time_to_100),
            "holders": holders.len(),
            "bytes_per_agent_per_s": bytes_per_agent_per_s.round(),
            "false_suspicions": suspicions,
            "false_downs": downed.len(),
            "false_down_events": down_events,
            "indirect_probes": args.indirect_probes,
            "poisoned_blocks": poisoning.poisoned_blocks,
            "poison_s": args.poison_s,
            "colluders": poisoning.colluders,
            "colluder_signals_accepted": poisoning.accepted,
            "rate_limited_drops": poisoning.rate_limited,
            "bad_signature_drops": poisoning.bad_signature,
            "control_blocks": poisoning.control_blocks,
            "serf_model_99_99_ms": SERF_MODEL_MS,
            "serf_over_ours": time_to_100
                .map(|d| SERF_MODEL_MS as f64 / d.as_millis().max(1) as f64),
        });
        println!("{out}");
    } else {
        println!(
            "{n} agents, loss {:.0}%, fanout {}, round {} ms, latency {low}-{high} ms, seed {}",
            args.loss * 100.0,
            args.fanout,
            args.interval_ms,
            args.seed
        );
        println!(
            "membership: {:.2}% of member pairs known after {:.1} s",
            membership * 100.0,
            formed_in.as_secs_f64()
        );
        let show = |d: Option<Duration>| match d {
            Some(d) => format!(
                "{} ms ({:.1} rounds)",
                d.as_millis(),
                d.as_secs_f64() / interval.as_secs_f64()
            ),
            None => format!("not reached in {} s", window.as_secs()),
        };
        println!("signal at 99% of agents:  {}", show(time_to_99));
        println!("signal at 100% of agents: {}", show(time_to_100));
        let ratio = time_to_100
            .map(|d| format!("{:.1}x", SERF_MODEL_MS as f64 / d.as_millis().max(1) as f64))
            .unwrap_or_else(|| "n/a".to_owned());
        println!(
            "Serf's model: 99.99% of 1,000 nodes in ~{SERF_MODEL_MS} ms (200 ms, fanout 3); \
             ours, 100%: {}; Serf / ours: {ratio}",
            show(time_to_100)
        );
        println!(
            "bytes sent per agent per second: {bytes_per_agent_per_s:.0} \
             (while the swarm formed: {formation_bytes_per_agent_per_s:.0})"
        );
        println!(
            "false failure suspicions in {} s: {suspicions}; live members declared down: {} \
             ({down_events} observations)",
            window.as_secs(),
            downed.len()
        );
        println!(
            "poisoning: {} colluders; {} of their signals accepted, {} dropped as rate_limited, \
             {} forged ones as bad_signature; honest agents blocking the innocent subject: {}",
            poisoning.colluders,
            poisoning.accepted,
            poisoning.rate_limited,
            poisoning.bad_signature,
            poisoning.poisoned_blocks
        );
        println!(
            "control: {} honest reporters of a real attacker; honest agents blocking it: {} of {}",
            poisoning.quorum,
            poisoning.control_blocks,
            n - poisoning.quorum
        );
    }
    Ok(())
}

fn members(net: &SimNet, index: usize) -> usize {
    net.node(index)
        .swarm
        .as_ref()
        .map_or(0, |swarm| swarm.members().len())
}

fn body(now: SystemTime, subject: &str, ttl_secs: u64) -> SignalBody {
    SignalBody {
        subject: subject.parse().expect("a valid subject"),
        reason: Reason {
            rule: "1:2002383".to_owned(),
            class: "attempted-recon".to_owned(),
        },
        severity: Severity::Critical,
        observed_at: now,
        expires_at: now + Duration::from_secs(ttl_secs),
    }
}

struct Poisoning {
    quorum: usize,
    colluders: usize,
    accepted: u64,
    rate_limited: u64,
    bad_signature: u64,
    poisoned_blocks: usize,
    control_blocks: usize,
}

/// `quorum - 1` colluders against the quorum rule, then a control with `quorum` honest
/// reporters.
fn poison(net: &mut SimNet, interval_ms: u64, seconds: u64) -> anyhow::Result<Poisoning> {
    let config = QuorumConfig::default();
    let quorum_size = config.quorum;
    let n = net.len();
    let colluders: Vec<usize> = (1..quorum_size).collect();
    let innocent: Subject = "192.0.2.200".parse().expect("valid");
    let attacker: Subject = "198.51.100.66".parse().expect("valid");
    let mut quorums: Vec<Quorum<PeerId>> = (0..n).map(|_| Quorum::new(config.clone())).collect();
    let mut blocked: Vec<HashSet<Subject>> = vec![HashSet::new(); n];
    let honest = |index: usize| !colluders.contains(&index);
    let before: Vec<(u64, u64)> = (0..n)
        .map(|i| {
            net.node(i).swarm.as_ref().map_or((0, 0), |s| {
                (
                    s.stats().dropped(DropReason::RateLimited),
                    s.stats().dropped(DropReason::BadSignature),
                )
            })
        })
        .collect();
    let mut accepted = 0u64;
    let mut on_event = |index: usize, now: SystemTime, event: Event| {
        if let Event::SignalReceived(signal) = event {
            if honest(index) && signal.subject() == &innocent {
                accepted += 1;
            }
            if let Tally::Reached { .. } = quorums[index].vote(
                now,
                signal.subject(),
                signal.origin(),
                signal.observed_at(),
                signal.severity(),
            ) {
                blocked[index].insert(signal.subject().clone());
            }
        }
    };
    // `seconds` of colluders publishing each round (their own cores refuse what their
    // rate limit does not allow), flooding ten extra signals per second straight at
    // random honest agents, and signing as a third member they do not hold the key of.
    let victim_of_forgery = net.node(quorum_size).signing_key();
    let step = Duration::from_millis(interval_ms.max(1));
    let mut elapsed = Duration::ZERO;
    let mut extra_seq = 1u64 << 62;
    while elapsed < Duration::from_secs(seconds) {
        for &colluder in &colluders {
            let key = net.node(colluder).signing_key();
            net.with(
                colluder,
                |swarm, now| swarm.publish(now, body(now, "192.0.2.200", 600)),
                &mut on_event,
            );
            let now = net.now();
            let flood: Vec<Signal> = (0..2)
                .map(|_| {
                    extra_seq += 1;
                    Signal::sign(&key, extra_seq, body(now, "192.0.2.200", 600))
                })
                .collect::<Result<_, _>>()?;
            let mut forged = Signal::sign(&key, extra_seq, body(now, "192.0.2.200", 600))?
                .as_bytes()
                .to_vec();
            forged[1..33].copy_from_slice(victim_of_forgery.peer_id().public_key());
            let target = (colluder * 7919 + extra_seq as usize) % n;
            if honest(target) {
                let mut batch: Vec<&[u8]> = flood.iter().map(Signal::as_bytes).collect();
                batch.push(&forged);
                net.inject(colluder, target, signals_message(batch));
            }
        }
        net.run_for(step, &mut on_event);
        elapsed += step;
    }
    // The control: `quorum` honest agents report a real attacker.
    let reporters: Vec<usize> = (n - quorum_size..n).collect();
    for &reporter in &reporters {
        net.with(
            reporter,
            |swarm, now| swarm.publish(now, body(now, "198.51.100.66", 600)),
            &mut on_event,
        );
    }
    net.run_for(Duration::from_secs(30), &mut on_event);

    let mut rate_limited = 0;
    let mut bad_signature = 0;
    for (index, (limited, bad)) in before.iter().enumerate() {
        if let Some(swarm) = net.node(index).swarm.as_ref() {
            rate_limited += swarm.stats().dropped(DropReason::RateLimited) - limited;
            bad_signature += swarm.stats().dropped(DropReason::BadSignature) - bad;
        }
    }
    let honest_indices = (0..n).filter(|i| honest(*i));
    let poisoned_blocks = honest_indices
        .clone()
        .filter(|i| blocked[*i].contains(&innocent))
        .count();
    let control_blocks = (0..n)
        .filter(|i| !reporters.contains(i) && blocked[*i].contains(&attacker))
        .count();
    Ok(Poisoning {
        quorum: quorum_size,
        colluders: colluders.len(),
        accepted,
        rate_limited,
        bad_signature,
        poisoned_blocks,
        control_blocks,
    })
}
