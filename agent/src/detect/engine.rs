//! The packet engine: decodes a frame, tracks its flow, finds the candidate rules with a
//! multi-pattern prefilter, and runs them in Suricata's order. Emits [`Detection`]s (an
//! [`Alert`] plus what eve.json needs).
//!
//! Per packet the work grows with the rules whose fast pattern occurs in the payload (one
//! Aho-Corasick pass per transport group), plus the few rules without content; IP-only
//! rules run once per flow and direction, as in Suricata. Nothing is allocated per packet
//! unless a rule alerts.

use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};
use rustc_hash::FxHashMap;

use super::alert::{Action, Alert, Evidence, RuleRef};
use super::decode::{self, DecodeError, Packet, Transport};
use super::flow::{FlowConfig, FlowCtx, FlowStats, FlowTable, Micros};
use super::inspect;
use super::rules::{Check, FlowbitCmd, IpOpt, PayloadOp, Proto, Rule, StreamSide};
use super::threshold::{Hit, ThresholdTable};

/// Checksum validation, as Suricata's `-k` / `checksum-checks`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChecksumMode {
    /// Validate the first 1,000 packets; if more than one in ten is bad (offloading on the
    /// capturing host), stop validating.
    #[default]
    Auto,
    Yes,
    No,
}

impl std::str::FromStr for ChecksumMode {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "auto" => Ok(ChecksumMode::Auto),
            "yes" => Ok(ChecksumMode::Yes),
            "no" | "none" => Ok(ChecksumMode::No),
            other => Err(format!("expected auto, yes or no, found \"{other}\"")),
        }
    }
}

/// Suricata's auto mode samples this many packets...
const CHECKSUM_SAMPLE: u64 = 1_000;
/// ...and gives up validating when more than one in this many is bad.
const CHECKSUM_INVALID_RATIO: u64 = 10;

/// Engine settings.
#[derive(Debug, Clone, Copy, Default)]
pub struct EngineConfig {
    pub checksum: ChecksumMode,
    pub flow: FlowConfig,
    /// Most threshold/detection_filter counters kept at once (0 = 100,000).
    pub max_threshold_entries: usize,
}

/// Counters, for the summary and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineStats {
    pub packets: u64,
    pub bytes: u64,
    /// Frames that were not IP (ARP, ...): nothing to match.
    pub not_ip: u64,
    /// Truncated or inconsistent frames, dropped.
    pub malformed: u64,
    /// Frames of a link type we do not decode.
    pub unknown_linktype: u64,
    /// Packets whose checksum was wrong while validation was on; they match no rule.
    pub bad_checksum: u64,
    pub alerts: u64,
    pub flows: FlowStats,
    pub threshold_overflows: u64,
}

/// One alert and the packet facts eve.json reports with it.
#[derive(Debug, Clone, PartialEq)]
pub struct Detection {
    pub alert: Alert,
    pub flow_id: Option<u64>,
    /// The IP protocol number.
    pub ip_proto: u8,
    /// ICMP type and code, for ICMP packets.
    pub icmp: Option<(u8, u8)>,
    /// The rule's category (classtype description), for eve.json.
    pub category: String,
    /// The Suricata priority eve.json reports as `severity`.
    pub priority: u32,
}

/// Rules of one transport, with their prefilter.
#[derive(Debug, Default)]
struct Group {
    /// Over the distinct fast patterns of the group's rules (ASCII case-insensitive; the
    /// full match checks case).
    prefilter: Option<AhoCorasick>,
    /// For each pattern of `prefilter`, the rules (by number) whose fast pattern it is.
    pattern_rules: Vec<Vec<u32>>,
    /// Rules without a fast pattern and for any destination port (or both directions),
    /// checked on every packet of the group.
    always: Vec<u32>,
    /// Rules without a fast pattern for a few destination ports, by port: most header-only
    /// rules name one service, and a packet only needs those of its own port.
    always_by_port: FxHashMap<u16, Vec<u32>>,
}

/// Rules naming fewer destination ports than this are indexed by port.
const PORT_INDEX_LIMIT: usize = 64;

/// The engine, built once from rules; `process` is called per frame.
#[derive(Debug)]
pub struct Engine {
    /// In Suricata's evaluation order: pass, drop, reject, alert; flowbit setters before
    /// readers; then priority.
    rules: Vec<Rule>,
    /// Flowbit names interned per rule: `flowbit_ids[rule][op][name]`.
    flowbit_ids: Vec<Vec<Vec<u32>>>,
    /// Every flowbit name seen, by number; kept across reloads.
    flowbit_names: FxHashMap<String, u32>,
    groups: [Group; 4],
    /// IP-only rules, run on the first packet of each flow direction.
    ip_only: Vec<u32>,
    flows: FlowTable,
    thresholds: ThresholdTable,
    config: EngineConfig,
    checksum_active: bool,
    checksum_sampled: u64,
    checksum_invalid: u64,
    stats: EngineStats,
    /// Per-packet scratch: candidate rules, and a generation mark per rule to dedup them.
    candidates: Vec<u32>,
    marks: Vec<u32>,
    generation: u32,
    vars: Vec<i64>,
}

fn group_of(transport: Transport) -> usize {
    match transport {
        Transport::Tcp => 0,
        Transport::Udp => 1,
        Transport::Icmp | Transport::Icmpv6 => 2,
        Transport::Other => 3,
    }
}

fn proto_groups(proto: Proto) -> &'static [usize] {
    match proto {
        Proto::Ip => &[0, 1, 2, 3],
        Proto::Tcp | Proto::TcpPkt | Proto::TcpStream => &[0],
        Proto::Udp => &[1],
        Proto::Icmp | Proto::Icmpv6 => &[2],
    }
}

fn action_rank(action: Action) -> u8 {
    match action {
        Action::Pass => 0,
        Action::Drop => 1,
        Action::Reject => 2,
        Action::Alert => 3,
    }
}

/// Suricata orders rules that only set flowbits first, then those that set and read, then
/// readers, then the rest, so that a packet sets a bit before another rule reads it.
fn flowbit_rank(rule: &Rule) -> u8 {
    let sets = rule.flowbits.iter().any(|op| !op.cmd.reads());
    let reads = rule.flowbits.iter().any(|op| op.cmd.reads());
    match (sets, reads) {
        (true, false) => 0,
        (true, true) => 1,
        (false, true) => 2,
        (false, false) => 3,
    }
}

/// Rules in evaluation order with their prefilters: what a reload replaces.
#[derive(Debug)]
struct Compiled {
    rules: Vec<Rule>,
    flowbit_ids: Vec<Vec<Vec<u32>>>,
    groups: [Group; 4],
    ip_only: Vec<u32>,
}

/// Orders and indexes `rules`; flowbit names are interned in `names`, which outlives a
/// reload so that bits already set on flows keep their meaning.
fn compile(mut rules: Vec<Rule>, names: &mut FxHashMap<String, u32>) -> Compiled {
    rules.sort_by_key(|rule| (action_rank(rule.action), flowbit_rank(rule), rule.priority));
    let flowbit_ids = rules
        .iter()
        .map(|rule| {
            rule.flowbits
                .iter()
                .map(|op| {
                    op.names
                        .iter()
                        .map(|name| {
                            let next = names.len() as u32;
                            *names.entry(name.clone()).or_insert(next)
                        })
                        .collect()
                })
                .collect()
        })
        .collect();
    let mut groups: [Group; 4] = Default::default();
    let mut patterns: [Vec<Vec<u8>>; 4] = Default::default();
    let mut pattern_index: [FxHashMap<Vec<u8>, usize>; 4] = Default::default();
    let mut ip_only = Vec::new();
    for (number, rule) in rules.iter().enumerate() {
        let number = number as u32;
        if rule.is_ip_only() {
            ip_only.push(number);
            continue;
        }
        let fast = rule.fast_pattern.and_then(|i| match &rule.payload[i] {
            PayloadOp::Content(c) => Some(c.fast_bytes().to_ascii_lowercase()),
            _ => None,
        });
        for &g in proto_groups(rule.proto) {
            match &fast {
                Some(bytes) if !bytes.is_empty() => {
                    let index = *pattern_index[g].entry(bytes.clone()).or_insert_with(|| {
                        patterns[g].push(bytes.clone());
                        groups[g].pattern_rules.push(Vec::new());
                        patterns[g].len() - 1
                    });
                    groups[g].pattern_rules[index].push(number);
                }
                _ => {
                    let ports = (!rule.bidirectional && matches!(g, 0 | 1))
                        .then(|| rule.dst_ports.ports_if_fewer_than(PORT_INDEX_LIMIT))
                        .flatten();
                    match ports {
                        Some(ports) => {
                            for port in ports {
                                groups[g]
                                    .always_by_port
                                    .entry(port)
                                    .or_default()
                                    .push(number);
                            }
                        }
                        None => groups[g].always.push(number),
                    }
                }
            }
        }
    }
    for (group, patterns) in groups.iter_mut().zip(patterns) {
        if patterns.is_empty() {
            continue;
        }
        // A DFA is the fastest search; should a huge rule set exceed its size limit, the
        // default (an NFA) still works.
        let build = |kind: Option<AhoCorasickKind>| {
            AhoCorasickBuilder::new()
                .ascii_case_insensitive(true)
                .match_kind(MatchKind::Standard)
                .kind(kind)
                .build(&patterns)
                .ok()
        };
        group.prefilter = build(Some(AhoCorasickKind::DFA)).or_else(|| build(None));
        if group.prefilter.is_none() {
            // Cannot happen with byte patterns under the default size limits; should it,
            // every rule of the group is checked on every packet rather than lost.
            let all = std::mem::take(&mut group.pattern_rules);
            group.always.extend(all.into_iter().flatten());
            group.always.sort_unstable();
            group.always.dedup();
        }
    }
    Compiled {
        rules,
        flowbit_ids,
        groups,
        ip_only,
    }
}

impl Engine {
    /// Builds the engine; the rules are reordered into evaluation order.
    pub fn new(rules: Vec<Rule>, config: EngineConfig) -> Engine {
        let mut flowbit_names = FxHashMap::default();
        let Compiled {
            rules,
            flowbit_ids,
            groups,
            ip_only,
        } = compile(rules, &mut flowbit_names);
        let max_vars = rules.iter().map(|r| r.variables).max().unwrap_or(0);
        let rule_count = rules.len();
        let max_thresholds = if config.max_threshold_entries == 0 {
            100_000
        } else {
            config.max_threshold_entries
        };
        Engine {
            rules,
            flowbit_ids,
            flowbit_names,
            groups,
            ip_only,
            flows: FlowTable::new(config.flow),
            thresholds: ThresholdTable::new(max_thresholds),
            checksum_active: config.checksum != ChecksumMode::No,
            checksum_sampled: 0,
            checksum_invalid: 0,
            config,
            stats: EngineStats::default(),
            candidates: Vec::new(),
            marks: vec![0; rule_count],
            generation: 0,
            vars: vec![0; max_vars],
        }
    }

    /// Swaps in a new rule set (a reload) and keeps the state: flows, their flowbits, and
    /// threshold counters of rules that keep their `gid:sid`.
    pub fn replace_rules(&mut self, rules: Vec<Rule>) {
        let compiled = compile(rules, &mut self.flowbit_names);
        self.marks = vec![0; compiled.rules.len()];
        self.generation = 0;
        self.vars = vec![
            0;
            compiled
                .rules
                .iter()
                .map(|r| r.variables)
                .max()
                .unwrap_or(0)
        ];
        self.rules = compiled.rules;
        self.flowbit_ids = compiled.flowbit_ids;
        self.groups = compiled.groups;
        self.ip_only = compiled.ip_only;
    }

    /// The rules in evaluation order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    pub fn stats(&self) -> EngineStats {
        EngineStats {
            flows: self.flows.stats(),
            threshold_overflows: self.thresholds.overflows,
            ..self.stats
        }
    }

    /// Matches one captured frame (`linktype` is its pcap DLT) at capture time `ts`, and
    /// returns what alerted (usually nothing, without allocating).
    pub fn process(&mut self, ts: SystemTime, linktype: u32, frame: &[u8]) -> Vec<Detection> {
        let mut out = Vec::new();
        self.process_into(ts, linktype, frame, &mut out);
        out
    }

    /// Like [`Engine::process`], appending to `out` so a caller can reuse one buffer.
    pub fn process_into(
        &mut self,
        ts: SystemTime,
        linktype: u32,
        frame: &[u8],
        out: &mut Vec<Detection>,
    ) {
        self.stats.packets += 1;
        self.stats.bytes += frame.len() as u64;
        let now = ts
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_micros() as Micros;
        let packet = match decode::decode(linktype, frame, self.checksum_active) {
            Ok(packet) => packet,
            Err(DecodeError::NotIp) => {
                self.stats.not_ip += 1;
                return;
            }
            Err(DecodeError::Malformed) => {
                self.stats.malformed += 1;
                return;
            }
            Err(DecodeError::LinkType(_)) => {
                self.stats.unknown_linktype += 1;
                return;
            }
        };
        if self.checksum_active && self.config.checksum == ChecksumMode::Auto {
            self.checksum_sampled += 1;
            self.checksum_invalid += u64::from(!packet.checksum_ok);
            if self.checksum_sampled == CHECKSUM_SAMPLE
                && self.checksum_invalid > CHECKSUM_SAMPLE / CHECKSUM_INVALID_RATIO
            {
                self.checksum_active = false;
            }
        }
        let flow = self.flows.track(&packet, now);
        if !packet.checksum_ok {
            self.stats.bad_checksum += 1;
            return;
        }
        self.match_packet(&packet, &flow, ts, now, out);
    }

    fn collect_candidates(&mut self, packet: &Packet<'_>, flow: &FlowCtx) {
        self.candidates.clear();
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            self.marks.iter_mut().for_each(|m| *m = 0);
            self.generation = 1;
        }
        let generation = self.generation;
        let dir = usize::from(!flow.to_server);
        if !self.flows.flow(flow.index).ip_only_done[dir] {
            self.candidates.extend_from_slice(&self.ip_only);
            self.flows.flow_mut(flow.index).ip_only_done[dir] = true;
        }
        let group = &self.groups[group_of(packet.transport)];
        self.candidates.extend_from_slice(&group.always);
        if let Some(rules) = group.always_by_port.get(&packet.dst_port) {
            self.candidates.extend_from_slice(rules);
        }
        if let Some(prefilter) = &group.prefilter
            && !packet.payload.is_empty()
        {
            for m in prefilter.find_overlapping_iter(packet.payload) {
                for &rule in &group.pattern_rules[m.pattern().as_usize()] {
                    let mark = &mut self.marks[rule as usize];
                    if *mark != generation {
                        *mark = generation;
                        self.candidates.push(rule);
                    }
                }
            }
        }
        self.candidates.sort_unstable();
    }

    fn match_packet(
        &mut self,
        packet: &Packet<'_>,
        flow: &FlowCtx,
        ts: SystemTime,
        now: Micros,
        out: &mut Vec<Detection>,
    ) {
        self.collect_candidates(packet, flow);
        let candidates = std::mem::take(&mut self.candidates);
        for &number in &candidates {
            let rule = &self.rules[number as usize];
            if !header_matches(rule, packet)
                || !flow_matches(rule, packet, flow)
                || !checks_match(rule, packet, self.flows.flow(flow.index))
            {
                continue;
            }
            let ids = &self.flowbit_ids[number as usize];
            let flow_state = self.flows.flow(flow.index);
            let reads_ok = rule.flowbits.iter().zip(ids).all(|(op, ids)| match op.cmd {
                FlowbitCmd::IsSet => ids.iter().any(|id| flow_state.bit(*id)),
                FlowbitCmd::IsNotSet => ids.iter().any(|id| !flow_state.bit(*id)),
                _ => true,
            });
            if !reads_ok {
                continue;
            }
            if !rule.payload.is_empty() {
                let vars = &mut self.vars[..rule.variables];
                vars.iter_mut().for_each(|v| *v = 0);
                if !inspect::inspect(&rule.payload, packet.payload, vars) {
                    continue;
                }
            }
            let flow_state = self.flows.flow_mut(flow.index);
            for (op, ids) in rule.flowbits.iter().zip(ids) {
                for &id in ids {
                    match op.cmd {
                        FlowbitCmd::Set => flow_state.set_bit(id),
                        FlowbitCmd::Unset => flow_state.unset_bit(id),
                        FlowbitCmd::Toggle => {
                            if flow_state.bit(id) {
                                flow_state.unset_bit(id)
                            } else {
                                flow_state.set_bit(id)
                            }
                        }
                        FlowbitCmd::IsSet | FlowbitCmd::IsNotSet => {}
                    }
                }
            }
            if rule.action == Action::Pass {
                // A pass rule ends inspection of this packet and raises nothing.
                break;
            }
            if rule.noalert {
                continue;
            }
            let hit = Hit {
                src: packet.src,
                dst: packet.dst,
                src_port: packet.src_port,
                dst_port: packet.dst_port,
                flow_id: Some(flow.id),
            };
            if !rule
                .thresholds
                .iter()
                .all(|t| self.thresholds.check((rule.gid, rule.sid), t, &hit, now))
            {
                continue;
            }
            self.stats.alerts += 1;
            out.push(detection(rule, packet, flow, ts));
        }
        self.candidates = candidates;
    }
}

fn detection(rule: &Rule, packet: &Packet<'_>, flow: &FlowCtx, ts: SystemTime) -> Detection {
    let has_ports = matches!(packet.transport, Transport::Tcp | Transport::Udp);
    let icmp = matches!(packet.transport, Transport::Icmp | Transport::Icmpv6)
        .then_some((packet.icmp_type, packet.icmp_code));
    Detection {
        alert: Alert {
            rule: RuleRef::Packet {
                gid: rule.gid,
                sid: rule.sid,
                rev: rule.rev,
                msg: rule.msg.clone(),
                classtype: rule.classtype.clone(),
            },
            action: rule.action,
            severity: rule.severity,
            src: Some(packet.src),
            src_port: has_ports.then_some(packet.src_port),
            dst: Some(packet.dst),
            dst_port: has_ports.then_some(packet.dst_port),
            time: ts,
            evidence: Evidence::Packet {
                summary: summary(packet),
            },
        },
        flow_id: Some(flow.id),
        ip_proto: packet.ip_proto,
        icmp,
        category: rule.category.clone(),
        priority: rule.priority,
    }
}

/// `TCP 10.0.0.1:40000 -> 10.0.0.2:22 len 0 flags S`, for the alert's evidence.
fn summary(packet: &Packet<'_>) -> String {
    let proto = proto_name(packet.ip_proto);
    match packet.transport {
        Transport::Tcp => format!(
            "{proto} {} -> {} len {} flags {}",
            endpoint(packet.src, packet.src_port),
            endpoint(packet.dst, packet.dst_port),
            packet.payload.len(),
            flag_letters(packet.tcp.flags)
        ),
        Transport::Udp => format!(
            "{proto} {} -> {} len {}",
            endpoint(packet.src, packet.src_port),
            endpoint(packet.dst, packet.dst_port),
            packet.payload.len()
        ),
        Transport::Icmp | Transport::Icmpv6 => format!(
            "{proto} {} -> {} type {} code {}",
            packet.src, packet.dst, packet.icmp_type, packet.icmp_code
        ),
        Transport::Other => format!("{proto} {} -> {}", packet.src, packet.dst),
    }
}

fn endpoint(addr: IpAddr, port: u16) -> String {
    match addr {
        IpAddr::V4(v4) => format!("{v4}:{port}"),
        IpAddr::V6(v6) => format!("[{v6}]:{port}"),
    }
}

fn flag_letters(flags: u8) -> String {
    "FSRPAUEC"
        .chars()
        .enumerate()
        .filter(|(bit, _)| flags & (1 << bit) != 0)
        .map(|(_, c)| c)
        .collect()
}

/// Suricata's protocol names in eve.json.
pub fn proto_name(ip_proto: u8) -> String {
    match ip_proto {
        1 => "ICMP".to_owned(),
        6 => "TCP".to_owned(),
        17 => "UDP".to_owned(),
        58 => "IPv6-ICMP".to_owned(),
        47 => "GRE".to_owned(),
        132 => "SCTP".to_owned(),
        other => other.to_string(),
    }
}

fn header_matches(rule: &Rule, packet: &Packet<'_>) -> bool {
    let proto_ok = match rule.proto {
        Proto::Ip => true,
        Proto::Tcp | Proto::TcpPkt | Proto::TcpStream => packet.transport == Transport::Tcp,
        Proto::Udp => packet.transport == Transport::Udp,
        Proto::Icmp => matches!(packet.transport, Transport::Icmp | Transport::Icmpv6),
        Proto::Icmpv6 => packet.transport == Transport::Icmpv6,
    };
    if !proto_ok {
        return false;
    }
    let has_ports = matches!(packet.transport, Transport::Tcp | Transport::Udp);
    let side =
        |addr: &super::rules::AddrSet, ports: &super::rules::PortSet, ip: IpAddr, port: u16| {
            addr.contains(ip) && (ports.is_any() || (has_ports && ports.contains(port)))
        };
    let forward = side(&rule.src, &rule.src_ports, packet.src, packet.src_port)
        && side(&rule.dst, &rule.dst_ports, packet.dst, packet.dst_port);
    forward
        || (rule.bidirectional
            && side(&rule.src, &rule.src_ports, packet.dst, packet.dst_port)
            && side(&rule.dst, &rule.dst_ports, packet.src, packet.src_port))
}

fn flow_matches(rule: &Rule, packet: &Packet<'_>, flow: &FlowCtx) -> bool {
    let opts = &rule.flow;
    if let Some(established) = opts.established
        && flow.established != established
    {
        return false;
    }
    if let Some(to_server) = opts.to_server
        && flow.to_server != to_server
    {
        return false;
    }
    if (opts.only_stream || rule.proto == Proto::TcpStream) && !flow.in_stream {
        return false;
    }
    if opts.only_frag && !packet.fragment || opts.no_frag && packet.fragment {
        return false;
    }
    true
}

fn checks_match(rule: &Rule, packet: &Packet<'_>, flow: &super::flow::Flow) -> bool {
    let icmp = matches!(packet.transport, Transport::Icmp | Transport::Icmpv6);
    rule.checks.iter().all(|check| match check {
        Check::Dsize(cmp) => cmp.matches(packet.payload.len() as u64),
        Check::Flags(flags) => {
            packet.transport == Transport::Tcp && flags.matches(packet.tcp.flags)
        }
        Check::Ttl(cmp) => cmp.matches(u64::from(packet.ttl)),
        Check::Itype(cmp) => icmp && cmp.matches(u64::from(packet.icmp_type)),
        Check::Icode(cmp) => icmp && cmp.matches(u64::from(packet.icmp_code)),
        Check::IcmpId(cmp) => packet
            .icmp_id_seq
            .is_some_and(|(id, _)| cmp.matches(u64::from(id))),
        Check::IcmpSeq(cmp) => packet
            .icmp_id_seq
            .is_some_and(|(_, seq)| cmp.matches(u64::from(seq))),
        Check::IpOpts(opt) => has_ip_option(packet.ipv4_options(), *opt),
        Check::TcpMss(cmp) => packet
            .tcp
            .mss
            .is_some_and(|mss| cmp.matches(u64::from(mss))),
        Check::StreamSize(side, cmp) => {
            if packet.transport != Transport::Tcp {
                return false;
            }
            let client = flow.stream_size(0);
            let server = flow.stream_size(1);
            let test = |size: Option<u64>| size.is_some_and(|s| cmp.matches(s));
            match side {
                StreamSide::Client => test(client),
                StreamSide::Server => test(server),
                StreamSide::Both => test(client) && test(server),
                StreamSide::Either => test(client) || test(server),
            }
        }
    })
}

fn has_ip_option(options: &[u8], wanted: IpOpt) -> bool {
    let mut i = 0;
    while i < options.len() {
        let kind = options[i];
        if wanted == IpOpt::Any || Some(kind) == wanted.code() {
            return true;
        }
        match kind {
            0 => return false,
            1 => i += 1,
            _ => {
                let len = options.get(i + 1).copied().unwrap_or(0) as usize;
                if len < 2 {
                    return false;
                }
                i += len;
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::decode::linktype;
    use crate::detect::rules::parse_text;

    fn engine(rules: &str) -> Engine {
        let set = parse_text("t.rules", rules);
        assert!(set.errors.is_empty(), "{:?}", set.errors);
        Engine::new(set.rules, EngineConfig::default())
    }

    fn tcp(src_port: u16, syn: bool, payload: &[u8]) -> Vec<u8> {
        let mut builder = etherparse::PacketBuilder::ethernet2([1; 6], [2; 6])
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp(src_port, 80, 1, 1024);
        if syn {
            builder = builder.syn();
        } else {
            builder = builder.ack(1).psh();
        }
        let mut frame = Vec::new();
        builder.write(&mut frame, payload).unwrap();
        frame
    }

    fn sids(detections: &[Detection]) -> Vec<u32> {
        detections
            .iter()
            .map(|d| match &d.alert.rule {
                RuleRef::Packet { sid, .. } => *sid,
                RuleRef::Scenario { .. } | RuleRef::Sinkhole { .. } => 0,
            })
            .collect()
    }

    #[test]
    fn prefilter_finds_rules_by_fast_pattern_and_headers_filter() {
        let mut engine = engine(
            "alert tcp any any -> any 80 (msg:\"a\"; content:\"evil\"; nocase; sid:1;)\n\
             alert tcp any any -> any 81 (msg:\"b\"; content:\"evil\"; sid:2;)\n\
             alert tcp any any -> any any (msg:\"c\"; flags:S; sid:3;)\n",
        );
        let t = UNIX_EPOCH + Duration::from_secs(1);
        assert_eq!(
            sids(&engine.process(t, linktype::ETHERNET, &tcp(1000, false, b"so EVIL"))),
            [1]
        );
        assert_eq!(
            sids(&engine.process(t, linktype::ETHERNET, &tcp(1001, true, b""))),
            [3]
        );
        assert!(
            engine
                .process(t, linktype::ETHERNET, &tcp(1002, false, b"good"))
                .is_empty()
        );
        assert_eq!(engine.stats().alerts, 2);
        assert_eq!(engine.stats().packets, 3);
    }

    #[test]
    fn header_only_rules_indexed_by_port_still_match_their_ports_and_directions() {
        let mut engine = engine(
            "alert tcp any any -> any [80,443] (msg:\"web\"; flags:S; sid:1;)\n\
             alert tcp any any -> any 22 (msg:\"ssh\"; flags:S; sid:2;)\n\
             alert tcp any 80 <> any any (msg:\"either way\"; flags:S; sid:3;)\n\
             alert tcp any any -> any !22 (msg:\"not ssh\"; flags:S; sid:4;)\n",
        );
        let t = UNIX_EPOCH;
        // Our test segments go from port N to port 80; sid 3 matches either way round.
        let mut got = sids(&engine.process(t, linktype::ETHERNET, &tcp(1000, true, b"")));
        got.sort();
        assert_eq!(got, [1, 3, 4]);
        let mut got = sids(&engine.process(t, linktype::ETHERNET, &tcp(80, true, b"")));
        got.sort();
        assert_eq!(got, [1, 3, 4]);
    }

    #[test]
    fn bad_checksums_match_nothing_unless_disabled() {
        let rules = "alert tcp any any -> any any (msg:\"x\"; content:\"abc\"; sid:1;)";
        let mut frame = tcp(1000, false, b"abc");
        let at = frame.len() - 20 - 3 + 16; // the TCP checksum's first byte
        frame[at] ^= 0x55;
        let t = UNIX_EPOCH;
        let mut checked = engine(rules);
        assert!(checked.process(t, linktype::ETHERNET, &frame).is_empty());
        assert_eq!(checked.stats().bad_checksum, 1);
        let set = parse_text("t", rules);
        let mut unchecked = Engine::new(
            set.rules,
            EngineConfig {
                checksum: ChecksumMode::No,
                ..EngineConfig::default()
            },
        );
        assert_eq!(unchecked.process(t, linktype::ETHERNET, &frame).len(), 1);
    }

    #[test]
    fn malformed_frames_are_counted_not_matched() {
        let mut engine = engine("alert ip any any -> any any (msg:\"x\"; sid:1;)");
        let frame = tcp(1000, true, b"");
        engine.process(UNIX_EPOCH, linktype::ETHERNET, &frame[..20]);
        engine.process(UNIX_EPOCH, 4242, &frame);
        let stats = engine.stats();
        assert_eq!(
            (stats.malformed, stats.unknown_linktype, stats.alerts),
            (1, 1, 0)
        );
    }

    #[test]
    fn ip_only_rules_fire_once_per_flow_direction() {
        let mut engine = engine("alert ip 10.0.0.1 any -> any any (msg:\"x\"; sid:1;)");
        let t = UNIX_EPOCH;
        let mut alerts = 0;
        for _ in 0..3 {
            alerts += engine
                .process(t, linktype::ETHERNET, &tcp(1000, false, b"x"))
                .len();
        }
        alerts += engine
            .process(t, linktype::ETHERNET, &tcp(1001, false, b"x"))
            .len();
        assert_eq!(alerts, 2);
    }

    #[test]
    fn a_reload_keeps_flowbits_and_threshold_counts() {
        let first = "alert tcp any any -> any any (msg:\"set\"; content:\"login\"; flowbits:set,seen; flowbits:noalert; sid:1;)\n\
                     alert tcp any any -> any any (msg:\"third\"; content:\"x\"; threshold:type threshold, track by_src, count 3, seconds 60; sid:2;)\n";
        let mut engine = engine(first);
        let t = UNIX_EPOCH;
        assert!(
            engine
                .process(t, linktype::ETHERNET, &tcp(1000, false, b"login x"))
                .is_empty()
        );
        assert!(
            engine
                .process(t, linktype::ETHERNET, &tcp(1000, false, b"x"))
                .is_empty()
        );
        let second = parse_text(
            "t.rules",
            "alert tcp any any -> any any (msg:\"third\"; content:\"x\"; threshold:type threshold, track by_src, count 3, seconds 60; sid:2;)\n\
             alert tcp any any -> any any (msg:\"after login\"; flowbits:isset,seen; content:\"cmd\"; sid:3;)\n",
        );
        engine.replace_rules(second.rules);
        // Readers of flowbits run before rules without any, as in Suricata.
        assert_eq!(
            sids(&engine.process(t, linktype::ETHERNET, &tcp(1000, false, b"x cmd"))),
            [3, 2]
        );
        assert_eq!(engine.stats().flows.created, 1);
    }

    #[test]
    fn ip_options_are_found() {
        assert!(has_ip_option(&[1, 7, 3, 0], IpOpt::Rr));
        assert!(has_ip_option(&[1, 0], IpOpt::Eol));
        assert!(!has_ip_option(&[1, 1], IpOpt::Ts));
        assert!(has_ip_option(&[1], IpOpt::Any));
    }
}
