//! An in-memory network for the swarm core: virtual clock, latency, loss and partitions,
//! and a transport that authenticates senders the way QUIC with credentials would. The
//! integration tests and the `swarm_sim` example drive many [`Swarm`]s with it; it is
//! deterministic for a given seed.
//!
//! It lives in the library, not under `tests/`, because the example and the tests share
//! it and an example cannot reach test code.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::peer::{Peer, PeerId};
use super::protocol::{Event, Swarm, SwarmConfig};
use super::signal::SigningKey;

/// The network's behaviour.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// One-way delay, drawn uniformly from this range for each message.
    pub latency: (Duration, Duration),
    /// The probability that a message is lost.
    pub loss: f64,
    pub seed: u64,
    /// Where the virtual clock starts.
    pub start: SystemTime,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            latency: (Duration::from_millis(1), Duration::from_millis(10)),
            loss: 0.0,
            seed: 1,
            // 2026-01-01T00:00:00Z: any time after 1970 would do.
            start: UNIX_EPOCH + Duration::from_secs(1_767_225_600),
        }
    }
}

/// One simulated host.
#[derive(Debug)]
pub struct SimNode {
    /// `None` while the agent is stopped.
    pub swarm: Option<Swarm>,
    pub peer: PeerId,
    pub addr: SocketAddr,
    key_seed: [u8; 32],
    config: SwarmConfig,
    starts: u64,
    /// Bytes this host handed to the network (lost ones included).
    pub bytes_sent: u64,
    /// The partition group; messages cross groups only when the network is whole.
    group: u32,
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct InFlight {
    at: SystemTime,
    order: u64,
    from: usize,
    to: usize,
    /// The sender's key when it sent: a restarted sender is still the same peer.
    from_peer: PeerId,
    bytes: Vec<u8>,
}

impl SimNode {
    /// The host's signing key (what a compromised host's attacker would hold).
    pub fn signing_key(&self) -> SigningKey {
        SigningKey::from_seed(&self.key_seed).expect("a seed that worked before")
    }
}

/// The network and its hosts.
#[derive(Debug)]
pub struct SimNet {
    config: SimConfig,
    now: SystemTime,
    rng: StdRng,
    nodes: Vec<SimNode>,
    by_addr: HashMap<SocketAddr, usize>,
    in_flight: BinaryHeap<Reverse<InFlight>>,
    wakeups: BinaryHeap<Reverse<(SystemTime, usize)>>,
    next_wake: Vec<Option<SystemTime>>,
    order: u64,
    partitioned: bool,
    /// Messages the network lost (loss, partition, stopped or wrong host).
    pub lost: u64,
    pub delivered: u64,
}

impl SimNet {
    pub fn new(config: SimConfig) -> SimNet {
        SimNet {
            now: config.start,
            rng: StdRng::seed_from_u64(config.seed),
            config,
            nodes: Vec::new(),
            by_addr: HashMap::new(),
            in_flight: BinaryHeap::new(),
            wakeups: BinaryHeap::new(),
            next_wake: Vec::new(),
            order: 0,
            partitioned: false,
            lost: 0,
            delivered: 0,
        }
    }

    pub fn now(&self) -> SystemTime {
        self.now
    }

    /// Adds a running host (not yet admitted by anyone, not joined). Returns its index.
    pub fn add_node(&mut self, config: SwarmConfig) -> usize {
        let index = self.nodes.len();
        let key_seed: [u8; 32] = self.rng.random();
        let octets = (index as u32 + 1).to_be_bytes();
        let addr = SocketAddr::from(([10, octets[1], octets[2], octets[3]], 7300));
        let key = SigningKey::from_seed(&key_seed).expect("any 32 bytes are an Ed25519 seed");
        let peer = key.peer_id();
        self.nodes.push(SimNode {
            swarm: None,
            peer,
            addr,
            key_seed,
            config,
            starts: 0,
            bytes_sent: 0,
            group: 0,
        });
        self.next_wake.push(None);
        self.by_addr.insert(addr, index);
        self.start(index);
        index
    }

    /// Starts (or restarts) host `index` with a fresh core: same key and address, empty
    /// memory. It admits every host of the network, as credential checks would.
    pub fn start(&mut self, index: usize) {
        let peers: Vec<PeerId> = self.nodes.iter().map(|node| node.peer).collect();
        let node = &mut self.nodes[index];
        node.starts += 1;
        let mut config = node.config.clone();
        config.seed = config
            .seed
            .wrapping_add(index as u64)
            .wrapping_add(node.starts.wrapping_mul(1_000_003));
        let key = SigningKey::from_seed(&node.key_seed).expect("a seed that worked before");
        let mut swarm = Swarm::new(config, key, node.addr, self.now);
        for peer in peers {
            if peer != node.peer {
                swarm.admit(peer);
            }
        }
        node.swarm = Some(swarm);
        self.settle(index);
    }

    /// Every running host admits every host (after adding hosts one by one).
    pub fn admit_all(&mut self) {
        let peers: Vec<PeerId> = self.nodes.iter().map(|node| node.peer).collect();
        for node in &mut self.nodes {
            if let Some(swarm) = &mut node.swarm {
                for peer in &peers {
                    if *peer != node.peer {
                        swarm.admit(*peer);
                    }
                }
            }
        }
    }

    /// Stops host `index`: it sends and receives nothing until [`SimNet::start`].
    pub fn stop(&mut self, index: usize) {
        self.nodes[index].swarm = None;
        self.next_wake[index] = None;
    }

    pub fn node(&self, index: usize) -> &SimNode {
        &self.nodes[index]
    }

    pub fn nodes(&self) -> &[SimNode] {
        &self.nodes
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Runs `action` on host `index`'s core at the current time, then sends what it
    /// queued. Events it raised are handed to `on_event`. Does nothing for a stopped host.
    pub fn with<T>(
        &mut self,
        index: usize,
        action: impl FnOnce(&mut Swarm, SystemTime) -> T,
        mut on_event: impl FnMut(usize, SystemTime, Event),
    ) -> Option<T> {
        let now = self.now;
        let swarm = self.nodes[index].swarm.as_mut()?;
        let out = action(swarm, now);
        self.drain(index, &mut on_event);
        Some(out)
    }

    /// Splits the network: messages flow only between hosts of the same group
    /// (`groups[i]` for host i; hosts past the end are in group 0).
    pub fn partition(&mut self, groups: &[u32]) {
        for (index, node) in self.nodes.iter_mut().enumerate() {
            node.group = groups.get(index).copied().unwrap_or(0);
        }
        self.partitioned = true;
    }

    pub fn heal(&mut self) {
        self.partitioned = false;
    }

    /// Runs the network until `until` (virtual time), handing every event to `on_event`.
    pub fn run_until(
        &mut self,
        until: SystemTime,
        mut on_event: impl FnMut(usize, SystemTime, Event),
    ) {
        loop {
            let next_message = self.in_flight.peek().map(|Reverse(m)| m.at);
            let next_wake = self.wakeups.peek().map(|Reverse((at, _))| *at);
            let next = match (next_message, next_wake) {
                (Some(a), Some(b)) => a.min(b),
                (Some(a), None) | (None, Some(a)) => a,
                (None, None) => break,
            };
            if next > until {
                break;
            }
            self.now = self.now.max(next);
            if next_message == Some(next) {
                let Some(Reverse(message)) = self.in_flight.pop() else {
                    break;
                };
                self.deliver(message, &mut on_event);
            } else if let Some(Reverse((at, index))) = self.wakeups.pop() {
                if self.next_wake[index] != Some(at) {
                    continue;
                }
                self.next_wake[index] = None;
                let now = self.now;
                if let Some(swarm) = self.nodes[index].swarm.as_mut() {
                    swarm.handle_timeout(now);
                    self.drain(index, &mut on_event);
                }
            }
        }
        self.now = self.now.max(until);
    }

    pub fn run_for(&mut self, duration: Duration, on_event: impl FnMut(usize, SystemTime, Event)) {
        let until = self.now + duration;
        self.run_until(until, on_event);
    }

    fn deliver(&mut self, message: InFlight, on_event: &mut impl FnMut(usize, SystemTime, Event)) {
        let now = self.now;
        let from = Peer {
            id: message.from_peer,
            addr: self.nodes[message.from].addr,
        };
        let Some(swarm) = self.nodes[message.to].swarm.as_mut() else {
            self.lost += 1;
            return;
        };
        self.delivered += 1;
        swarm.handle_message(now, from, &message.bytes);
        self.drain(message.to, on_event);
    }

    /// Takes what host `index` wants sent onto the network, and its events.
    fn drain(&mut self, index: usize, on_event: &mut impl FnMut(usize, SystemTime, Event)) {
        let now = self.now;
        let Some(swarm) = self.nodes[index].swarm.as_mut() else {
            return;
        };
        let mut outgoing = Vec::new();
        while let Some(transmit) = swarm.poll_transmit() {
            outgoing.push(transmit);
        }
        let mut events = Vec::new();
        while let Some(event) = swarm.poll_event() {
            events.push(event);
        }
        for transmit in outgoing {
            self.route(index, transmit.to, transmit.peer, transmit.bytes);
        }
        for event in events {
            on_event(index, now, event);
        }
        self.settle(index);
    }

    /// Hands `bytes` from host `from` to the network, addressed to `to` (and to `peer`,
    /// if given: the transport refuses to deliver to anyone else).
    fn route(&mut self, from: usize, to: SocketAddr, peer: Option<PeerId>, bytes: Vec<u8>) {
        self.nodes[from].bytes_sent += bytes.len() as u64;
        let Some(&target) = self.by_addr.get(&to) else {
            self.lost += 1;
            return;
        };
        let wrong_host = peer.is_some_and(|peer| peer != self.nodes[target].peer);
        let cut = self.partitioned && self.nodes[target].group != self.nodes[from].group;
        let lost = self.config.loss > 0.0 && self.rng.random_bool(self.config.loss.min(1.0));
        if wrong_host || cut || lost {
            self.lost += 1;
            return;
        }
        let (low, high) = self.config.latency;
        let delay = if high > low {
            self.rng.random_range(low..=high)
        } else {
            low
        };
        self.order += 1;
        self.in_flight.push(Reverse(InFlight {
            at: self.now + delay,
            order: self.order,
            from,
            to: target,
            from_peer: self.nodes[from].peer,
            bytes,
        }));
    }

    /// Sends raw `bytes` from host `from` to host `to` through the network, as a
    /// misbehaving agent would (bypassing its own core's limits).
    pub fn inject(&mut self, from: usize, to: usize, bytes: Vec<u8>) {
        let addr = self.nodes[to].addr;
        self.route(from, addr, None, bytes);
    }

    /// Records when host `index` next wants waking.
    fn settle(&mut self, index: usize) {
        let wake = self.nodes[index]
            .swarm
            .as_ref()
            .and_then(Swarm::poll_timeout)
            .map(|at| at.max(self.now));
        if wake != self.next_wake[index] {
            self.next_wake[index] = wake;
            if let Some(at) = wake {
                self.wakeups.push(Reverse((at, index)));
            }
        }
    }
}
