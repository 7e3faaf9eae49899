//! Small captures built in the test, with etherparse's builder, and written as classic
//! pcap files (the format is a 24-byte header and a 16-byte header per record, so it is
//! written here rather than through libpcap).

use std::io::Write;
use std::path::Path;

/// One frame and its capture time in microseconds since the epoch.
pub(crate) struct Frame {
    pub(crate) micros: u64,
    pub(crate) data: Vec<u8>,
}

/// 2026-11-21T00:00:00Z, so fixture alerts carry a plausible date.
pub(crate) const T0: u64 = 1_795_305_600 * 1_000_000;

/// Writes an Ethernet pcap.
pub(crate) fn write_pcap(path: &Path, frames: &[Frame]) {
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&0i32.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&65535u32.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    for frame in frames {
        let len = frame.data.len() as u32;
        out.extend_from_slice(&((frame.micros / 1_000_000) as u32).to_le_bytes());
        out.extend_from_slice(&((frame.micros % 1_000_000) as u32).to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&frame.data);
    }
    std::fs::File::create(path)
        .unwrap()
        .write_all(&out)
        .unwrap();
}

fn ether() -> etherparse::PacketBuilderStep<etherparse::Ethernet2Header> {
    etherparse::PacketBuilder::ethernet2([0x02, 0, 0, 0, 0, 1], [0x02, 0, 0, 0, 0, 2])
}

/// A TCP segment; `flags` are the header's flag bits (FIN 1, SYN 2, RST 4, PSH 8, ACK 16,
/// URG 32).
pub(crate) fn tcp(
    src: [u8; 4],
    sport: u16,
    dst: [u8; 4],
    dport: u16,
    flags: u8,
    seq: u32,
    payload: &[u8],
) -> Vec<u8> {
    let mut builder = ether().ipv4(src, dst, 64).tcp(sport, dport, seq, 64240);
    if flags & 0x01 != 0 {
        builder = builder.fin();
    }
    if flags & 0x02 != 0 {
        builder = builder.syn();
    }
    if flags & 0x04 != 0 {
        builder = builder.rst();
    }
    if flags & 0x08 != 0 {
        builder = builder.psh();
    }
    if flags & 0x10 != 0 {
        builder = builder.ack(1);
    }
    if flags & 0x20 != 0 {
        builder = builder.urg(0);
    }
    let mut out = Vec::new();
    builder.write(&mut out, payload).unwrap();
    out
}

pub(crate) fn udp(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    ether()
        .ipv4(src, dst, 64)
        .udp(sport, dport)
        .write(&mut out, payload)
        .unwrap();
    out
}

pub(crate) fn ping(src: [u8; 4], dst: [u8; 4], seq: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    ether()
        .ipv4(src, dst, 64)
        .icmpv4_echo_request(0x4242, seq)
        .write(&mut out, payload)
        .unwrap();
    out
}

pub(crate) fn ping6(src: [u8; 16], dst: [u8; 16], seq: u16) -> Vec<u8> {
    let mut out = Vec::new();
    ether()
        .ipv6(src, dst, 64)
        .icmpv6_echo_request(0x4242, seq)
        .write(&mut out, b"abcdefgh")
        .unwrap();
    out
}

/// A complete TCP session: handshake, one request from the client, one answer, so that
/// `flow:established` rules see it.
pub(crate) fn session(
    client: [u8; 4],
    sport: u16,
    server: [u8; 4],
    dport: u16,
    request: &[u8],
    start: u64,
) -> Vec<Frame> {
    let steps: Vec<Vec<u8>> = vec![
        tcp(client, sport, server, dport, 0x02, 1000, b""),
        tcp(server, dport, client, sport, 0x12, 5000, b""),
        tcp(client, sport, server, dport, 0x10, 1001, b""),
        tcp(client, sport, server, dport, 0x18, 1001, request),
        tcp(server, dport, client, sport, 0x18, 5001, b"OK\r\n"),
    ];
    steps
        .into_iter()
        .enumerate()
        .map(|(i, data)| Frame {
            micros: start + i as u64 * 1_000,
            data,
        })
        .collect()
}
