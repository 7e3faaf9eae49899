//! The flow table: packets grouped by 5-tuple, with enough TCP state that `flow:` keywords
//! (`established`, `to_server`, ...) behave as in Suricata for per-packet matches. Bounded:
//! idle flows time out on packet time, and a full table evicts (and counts) to admit new
//! flows.

use std::hash::{Hash, Hasher};
use std::net::IpAddr;

use rustc_hash::{FxHashMap, FxHasher};

use super::decode::{Packet, Transport};
use super::rules::tcp_flag::{ACK, FIN, RST, SYN};

/// Microseconds since the Unix epoch, from packet timestamps.
pub type Micros = u64;

const SECOND: Micros = 1_000_000;

/// Flow-table settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowConfig {
    /// Most flows tracked at once; beyond it the oldest-looking flow is evicted.
    pub max_flows: usize,
    /// `--midstream`: TCP flows picked up without a handshake count as established.
    pub midstream: bool,
}

impl Default for FlowConfig {
    fn default() -> Self {
        FlowConfig {
            max_flows: 100_000,
            midstream: false,
        }
    }
}

/// Suricata's default idle timeouts, in seconds: (new, established).
fn timeouts(transport: Transport) -> (Micros, Micros) {
    match transport {
        Transport::Tcp => (60 * SECOND, 600 * SECOND),
        _ => (30 * SECOND, 300 * SECOND),
    }
}

/// A flow's key with the two endpoints in a canonical order, so both directions meet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct FlowKey {
    proto: u8,
    lo: (IpAddr, u16),
    hi: (IpAddr, u16),
}

/// TCP session states, as far as `flow:` needs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TcpState {
    /// Picked up without a SYN, midstream pickup off: never established.
    None,
    SynSent,
    SynRecv,
    Established,
    Closed,
}

/// One tracked flow.
#[derive(Debug, Clone)]
pub struct Flow {
    key: FlowKey,
    /// The endpoint that opened the flow: packets from it go "to server".
    client: (IpAddr, u16),
    /// eve.json's `flow_id`.
    pub id: u64,
    transport: Transport,
    last_seen: Micros,
    tcp: TcpState,
    /// Which endpoint sent the SYN/ACK, for the handshake's last step.
    synack_from_client: bool,
    /// Packets seen from the client and from the server.
    seen: [bool; 2],
    /// Interned flowbit numbers that are set.
    pub bits: Vec<u32>,
    /// Whether IP-only rules have run for the client and the server direction.
    pub ip_only_done: [bool; 2],
    /// TCP initial sequence number and next expected sequence, per direction
    /// (client, server), for `stream_size`.
    isn: [Option<u32>; 2],
    next_seq: [u32; 2],
}

impl Flow {
    /// Bytes sent by the client (`0`) or the server (`1`) as Suricata's `stream_size`
    /// counts them (next sequence number minus the initial one).
    pub fn stream_size(&self, side: usize) -> Option<u64> {
        let isn = self.isn[side]?;
        Some(u64::from(self.next_seq[side].wrapping_sub(isn)))
    }

    pub fn bit(&self, bit: u32) -> bool {
        self.bits.contains(&bit)
    }

    pub fn set_bit(&mut self, bit: u32) {
        if !self.bit(bit) {
            self.bits.push(bit);
        }
    }

    pub fn unset_bit(&mut self, bit: u32) {
        self.bits.retain(|b| *b != bit);
    }
}

/// What the flow table says about one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowCtx {
    pub index: usize,
    pub id: u64,
    pub to_server: bool,
    pub established: bool,
    /// TCP payload that is part of the stream (established, not a RST).
    pub in_stream: bool,
}

/// Counters the engine exports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlowStats {
    pub created: u64,
    pub timed_out: u64,
    /// Flows dropped to make room while the table was full.
    pub evicted: u64,
    pub active: usize,
}

/// The flow table.
#[derive(Debug)]
pub struct FlowTable {
    config: FlowConfig,
    index: FxHashMap<FlowKey, usize>,
    flows: Vec<Flow>,
    /// Slots of `flows` free for reuse.
    free: Vec<usize>,
    /// Where the next eviction looks (a clock hand over `flows`).
    hand: usize,
    next_sweep: Micros,
    stats: FlowStats,
    /// Salt for flow ids, advanced per flow.
    counter: u64,
}

impl FlowTable {
    pub fn new(config: FlowConfig) -> FlowTable {
        FlowTable {
            config,
            index: FxHashMap::default(),
            flows: Vec::new(),
            free: Vec::new(),
            hand: 0,
            next_sweep: 0,
            stats: FlowStats::default(),
            counter: 0,
        }
    }

    pub fn stats(&self) -> FlowStats {
        FlowStats {
            active: self.index.len(),
            ..self.stats
        }
    }

    pub fn flow(&self, index: usize) -> &Flow {
        &self.flows[index]
    }

    pub fn flow_mut(&mut self, index: usize) -> &mut Flow {
        &mut self.flows[index]
    }

    /// Finds or creates the packet's flow and updates its state.
    pub fn track(&mut self, packet: &Packet<'_>, now: Micros) -> FlowCtx {
        if now >= self.next_sweep {
            self.sweep(now);
            self.next_sweep = now + 5 * SECOND;
        }
        let a = (packet.src, packet.src_port);
        let b = (packet.dst, packet.dst_port);
        let key = FlowKey {
            proto: packet.ip_proto,
            lo: a.min(b),
            hi: a.max(b),
        };
        let index = match self.index.get(&key).copied() {
            Some(index) if !self.expired(&self.flows[index], now) => index,
            Some(index) => {
                self.stats.timed_out += 1;
                self.remove(index);
                self.create(key, packet, now)
            }
            None => self.create(key, packet, now),
        };
        let midstream = self.config.midstream;
        let flow = &mut self.flows[index];
        flow.last_seen = now;
        let to_server = (packet.src, packet.src_port) == flow.client
            && ((packet.dst, packet.dst_port) != flow.client || packet.src != packet.dst);
        let dir = usize::from(!to_server);
        flow.seen[dir] = true;
        let mut in_stream = false;
        let established = if packet.transport == Transport::Tcp {
            // As in Suricata, a packet is "established" when the session already was before
            // it: the ACK that completes the handshake is not (midstream pickup is).
            let before = matches!(flow.tcp, TcpState::Established | TcpState::Closed);
            update_tcp(flow, packet, to_server, midstream);
            let picked_up = midstream && !before && flow.tcp == TcpState::Established;
            in_stream = matches!(flow.tcp, TcpState::Established)
                && packet.tcp.flags & RST == 0
                && !packet.payload.is_empty();
            before || picked_up
        } else {
            flow.seen[0] && flow.seen[1]
        };
        FlowCtx {
            index,
            id: flow.id,
            to_server,
            established,
            in_stream,
        }
    }

    fn expired(&self, flow: &Flow, now: Micros) -> bool {
        let (new, established) = timeouts(flow.transport);
        let limit = if flow.seen[0] && flow.seen[1] {
            established
        } else {
            new
        };
        now.saturating_sub(flow.last_seen) > limit
    }

    fn create(&mut self, key: FlowKey, packet: &Packet<'_>, now: Micros) -> usize {
        if self.index.len() >= self.config.max_flows.max(1) {
            self.evict_one();
        }
        self.stats.created += 1;
        self.counter = self.counter.wrapping_add(1);
        let mut hasher = FxHasher::default();
        key.hash(&mut hasher);
        now.hash(&mut hasher);
        self.counter.hash(&mut hasher);
        // eve.json readers expect a positive 52-bit-safe integer, as Suricata's are.
        let id = hasher.finish() & ((1 << 51) - 1);
        let mut client = (packet.src, packet.src_port);
        if packet.transport == Transport::Tcp && packet.tcp.flags & (SYN | ACK) == SYN | ACK {
            // A SYN/ACK opening the flow comes from the server.
            client = (packet.dst, packet.dst_port);
        }
        let flow = Flow {
            key,
            client,
            id,
            transport: packet.transport,
            last_seen: now,
            tcp: TcpState::None,
            synack_from_client: false,
            seen: [false; 2],
            bits: Vec::new(),
            ip_only_done: [false; 2],
            isn: [None; 2],
            next_seq: [0; 2],
        };
        let index = match self.free.pop() {
            Some(slot) => {
                self.flows[slot] = flow;
                slot
            }
            None => {
                self.flows.push(flow);
                self.flows.len() - 1
            }
        };
        self.index.insert(key, index);
        index
    }

    fn remove(&mut self, index: usize) {
        let key = self.flows[index].key;
        if self.index.get(&key) == Some(&index) {
            self.index.remove(&key);
            self.flows[index].bits = Vec::new();
            self.free.push(index);
        }
    }

    /// Drops one live flow, chosen by a clock hand so that eviction is O(1).
    fn evict_one(&mut self) {
        for _ in 0..self.flows.len() {
            self.hand = (self.hand + 1) % self.flows.len();
            let key = self.flows[self.hand].key;
            if self.index.get(&key) == Some(&self.hand) {
                self.stats.evicted += 1;
                self.remove(self.hand);
                return;
            }
        }
    }

    /// Removes every idle flow.
    fn sweep(&mut self, now: Micros) {
        for index in 0..self.flows.len() {
            let key = self.flows[index].key;
            if self.index.get(&key) == Some(&index) && self.expired(&self.flows[index], now) {
                self.stats.timed_out += 1;
                self.remove(index);
            }
        }
    }
}

fn update_tcp(flow: &mut Flow, packet: &Packet<'_>, to_server: bool, midstream: bool) {
    let flags = packet.tcp.flags;
    let dir = usize::from(!to_server);
    let syn = flags & SYN != 0;
    let ack = flags & ACK != 0;
    // Sequence accounting for stream_size.
    if syn {
        flow.isn[dir] = Some(packet.tcp.seq);
    } else if flow.isn[dir].is_none() && flow.tcp != TcpState::SynSent {
        flow.isn[dir] = Some(packet.tcp.seq.wrapping_sub(1));
    }
    let len = u32::try_from(packet.payload.len()).unwrap_or(u32::MAX);
    let end = packet
        .tcp
        .seq
        .wrapping_add(len)
        .wrapping_add(u32::from(syn) + u32::from(flags & FIN != 0));
    if let Some(isn) = flow.isn[dir]
        && (end.wrapping_sub(isn) > flow.next_seq[dir].wrapping_sub(isn) || flow.next_seq[dir] == 0)
    {
        flow.next_seq[dir] = end;
    }
    flow.tcp = match flow.tcp {
        TcpState::None if syn && !ack && to_server => TcpState::SynSent,
        TcpState::None if syn && ack && !to_server && !midstream => TcpState::None,
        TcpState::None if midstream && flags & RST == 0 => TcpState::Established,
        TcpState::SynSent if syn && ack => {
            flow.synack_from_client = to_server;
            TcpState::SynRecv
        }
        TcpState::SynRecv
            if ack && !syn && flags & RST == 0 && to_server != flow.synack_from_client =>
        {
            TcpState::Established
        }
        state @ (TcpState::SynSent | TcpState::SynRecv) if flags & RST != 0 => {
            let _ = state;
            TcpState::None
        }
        TcpState::Established if flags & RST != 0 => TcpState::Closed,
        state => state,
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::decode::{self, linktype};

    fn frame(from_client: bool, flags: u8, payload: &[u8]) -> Vec<u8> {
        let (src, dst, sp, dp) = if from_client {
            ([10, 0, 0, 1], [10, 0, 0, 2], 40000, 80)
        } else {
            ([10, 0, 0, 2], [10, 0, 0, 1], 80, 40000)
        };
        let mut builder = etherparse::PacketBuilder::ipv4(src, dst, 64).tcp(sp, dp, 100, 1000);
        if flags & SYN != 0 {
            builder = builder.syn();
        }
        if flags & ACK != 0 {
            builder = builder.ack(1);
        }
        if flags & RST != 0 {
            builder = builder.rst();
        }
        let mut out = Vec::new();
        builder.write(&mut out, payload).unwrap();
        out
    }

    fn run(table: &mut FlowTable, steps: &[(bool, u8, &[u8])]) -> Vec<FlowCtx> {
        steps
            .iter()
            .enumerate()
            .map(|(i, (client, flags, payload))| {
                let bytes = frame(*client, *flags, payload);
                let packet = decode::decode(linktype::RAW, &bytes, false).unwrap();
                table.track(&packet, i as u64 * SECOND)
            })
            .collect()
    }

    #[test]
    fn handshake_establishes_and_directions_follow_the_client() {
        let mut table = FlowTable::new(FlowConfig::default());
        let ctx = run(
            &mut table,
            &[
                (true, SYN, b""),
                (false, SYN | ACK, b""),
                (true, ACK, b""),
                (true, ACK, b"GET /"),
                (false, ACK, b"200 OK"),
            ],
        );
        assert_eq!(
            ctx.iter().map(|c| c.established).collect::<Vec<_>>(),
            [false, false, false, true, true]
        );
        assert_eq!(
            ctx.iter().map(|c| c.to_server).collect::<Vec<_>>(),
            [true, false, true, true, false]
        );
        assert!(ctx.iter().all(|c| c.id == ctx[0].id));
        // Every test segment starts at sequence 100: the client's SYN (100) counts one, and
        // its data (100..105) ends the client's stream at 105.
        let flow = table.flow(ctx[0].index);
        assert_eq!(flow.stream_size(0), Some(5));
    }

    #[test]
    fn no_handshake_is_established_only_with_midstream() {
        let steps: &[(bool, u8, &[u8])] = &[(true, ACK, b"data"), (false, ACK, b"more")];
        let mut table = FlowTable::new(FlowConfig::default());
        assert!(run(&mut table, steps).iter().all(|c| !c.established));
        let mut table = FlowTable::new(FlowConfig {
            midstream: true,
            ..FlowConfig::default()
        });
        assert!(run(&mut table, steps).iter().all(|c| c.established));
    }

    #[test]
    fn a_full_table_evicts_and_counts() {
        let mut table = FlowTable::new(FlowConfig {
            max_flows: 2,
            midstream: false,
        });
        for port in 0..5u16 {
            let mut out = Vec::new();
            etherparse::PacketBuilder::ipv4([1, 1, 1, 1], [2, 2, 2, 2], 64)
                .udp(1000 + port, 53)
                .write(&mut out, b"q")
                .unwrap();
            let packet = decode::decode(linktype::RAW, &out, false).unwrap();
            table.track(&packet, 0);
        }
        let stats = table.stats();
        assert_eq!(stats.created, 5);
        assert_eq!(stats.evicted, 3);
        assert_eq!(stats.active, 2);
    }

    #[test]
    fn idle_flows_time_out_on_packet_time() {
        let mut table = FlowTable::new(FlowConfig::default());
        let first = run(&mut table, &[(true, ACK, b"x")])[0];
        let bytes = frame(true, ACK, b"y");
        let packet = decode::decode(linktype::RAW, &bytes, false).unwrap();
        let later = table.track(&packet, 3600 * SECOND);
        assert_ne!(first.id, later.id);
        assert_eq!(table.stats().timed_out, 1);
    }
}
