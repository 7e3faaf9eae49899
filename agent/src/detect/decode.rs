//! Packet decoding: from a captured frame and its pcap link type to the fields rules look
//! at. Headers are sliced with `etherparse` (zero-copy); what it does not cover (Linux SLL2,
//! BSD loopback, checksum sums over raw slices) is a few lines here.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use etherparse::{EtherType, NetSlice, SlicedPacket, TransportSlice};

/// The pcap link types (`DLT_*` / `LINKTYPE_*`) we decode.
pub mod linktype {
    pub const NULL: u32 = 0;
    pub const ETHERNET: u32 = 1;
    pub const RAW_OPENBSD: u32 = 12;
    pub const RAW_BSD: u32 = 14;
    pub const RAW: u32 = 101;
    pub const LINUX_SLL: u32 = 113;
    pub const IPV4: u32 = 228;
    pub const IPV6: u32 = 229;
    pub const LINUX_SLL2: u32 = 276;
}

/// IP protocol numbers we treat specially.
pub mod ipproto {
    pub const ICMP: u8 = 1;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const ICMPV6: u8 = 58;
}

/// What sits above IP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Udp,
    Icmp,
    Icmpv6,
    /// Another protocol, or a fragment (which we do not reassemble).
    Other,
}

/// TCP fields rules and the flow table use.
#[derive(Debug, Clone, Copy, Default)]
pub struct TcpInfo {
    pub flags: u8,
    pub seq: u32,
    pub ack: u32,
    /// The MSS option's value, if the segment carries one.
    pub mss: Option<u16>,
}

/// A decoded packet: borrowed from the frame, nothing allocated.
#[derive(Debug, Clone)]
pub struct Packet<'a> {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub ip_proto: u8,
    /// IPv4 TTL or IPv6 hop limit.
    pub ttl: u8,
    /// IPv4 options (at most 40 bytes; none for IPv6), copied out of the header since the
    /// header slice does not outlive decoding. See [`Packet::ipv4_options`].
    ipv4_options: [u8; 40],
    ipv4_options_len: u8,
    pub fragment: bool,
    pub transport: Transport,
    pub src_port: u16,
    pub dst_port: u16,
    pub tcp: TcpInfo,
    pub icmp_type: u8,
    pub icmp_code: u8,
    /// Identifier and sequence of ICMP messages that have them (echo, timestamp, ...).
    pub icmp_id_seq: Option<(u16, u16)>,
    /// What content keywords look at: TCP/UDP data, the ICMP body after its 8-byte header.
    pub payload: &'a [u8],
    /// Whether the IP, TCP, UDP and ICMP checksums are right (`true` when not checked).
    pub checksum_ok: bool,
    /// The frame's length on the wire.
    pub wire_len: usize,
}

impl Packet<'_> {
    /// The IPv4 options (empty for IPv6 or without options).
    pub fn ipv4_options(&self) -> &[u8] {
        &self.ipv4_options[..usize::from(self.ipv4_options_len)]
    }
}

/// Why a frame was not decoded; counted and dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// A link type we do not know.
    LinkType(u32),
    /// Not IP (ARP, LLDP, ...): not an error, but nothing for IP rules.
    NotIp,
    /// Truncated or inconsistent headers.
    Malformed,
}

/// Decodes `frame` captured with pcap link type `linktype`. `verify_checksums` computes
/// [`Packet::checksum_ok`]; otherwise it is `true`.
pub fn decode(
    linktype: u32,
    frame: &[u8],
    verify_checksums: bool,
) -> Result<Packet<'_>, DecodeError> {
    let sliced = match linktype {
        linktype::ETHERNET => SlicedPacket::from_ethernet(frame),
        linktype::LINUX_SLL => {
            // SLL: packet type (2), ARPHRD (2), address length (2), address (8), protocol
            // (2). Parsed here because etherparse refuses ARPHRD types other than Ethernet,
            // and captures on `any` or `lo` carry loopback ones.
            let proto = frame.get(14..16).ok_or(DecodeError::Malformed)?;
            let rest = frame.get(16..).ok_or(DecodeError::Malformed)?;
            SlicedPacket::from_ether_type(EtherType(u16::from_be_bytes([proto[0], proto[1]])), rest)
        }
        linktype::LINUX_SLL2 => {
            // SLL2: protocol type (2), reserved (2), ifindex (4), ARPHRD (2), packet type
            // (1), address length (1), address (8): 20 bytes before the network header.
            let proto = frame.get(..2).ok_or(DecodeError::Malformed)?;
            let rest = frame.get(20..).ok_or(DecodeError::Malformed)?;
            SlicedPacket::from_ether_type(EtherType(u16::from_be_bytes([proto[0], proto[1]])), rest)
        }
        linktype::RAW
        | linktype::RAW_BSD
        | linktype::RAW_OPENBSD
        | linktype::IPV4
        | linktype::IPV6 => SlicedPacket::from_ip(frame),
        linktype::NULL => SlicedPacket::from_ip(frame.get(4..).ok_or(DecodeError::Malformed)?),
        other => return Err(DecodeError::LinkType(other)),
    }
    .map_err(|_| DecodeError::Malformed)?;
    from_sliced(&sliced, frame.len(), verify_checksums)
}

fn from_sliced<'a>(
    sliced: &SlicedPacket<'a>,
    wire_len: usize,
    verify: bool,
) -> Result<Packet<'a>, DecodeError> {
    let mut checksum_ok = true;
    let mut ipv4_options = [0u8; 40];
    let mut ipv4_options_len = 0u8;
    let (src, dst, ttl, ip_proto, fragment, ip_payload, pseudo) = match &sliced.net {
        Some(NetSlice::Ipv4(ipv4)) => {
            let header = ipv4.header();
            if verify && ones_complement(0, header.slice()) != 0xffff {
                checksum_ok = false;
            }
            let src = header.source();
            let dst = header.destination();
            let payload = ipv4.payload();
            let pseudo = Pseudo::V4(src, dst);
            let options = header.options();
            let len = options.len().min(40);
            ipv4_options[..len].copy_from_slice(&options[..len]);
            ipv4_options_len = len as u8;
            (
                IpAddr::V4(Ipv4Addr::from(src)),
                IpAddr::V4(Ipv4Addr::from(dst)),
                header.ttl(),
                payload.ip_number.0,
                payload.fragmented,
                payload.payload,
                pseudo,
            )
        }
        Some(NetSlice::Ipv6(ipv6)) => {
            let header = ipv6.header();
            let payload = ipv6.payload();
            let src = header.source();
            let dst = header.destination();
            (
                IpAddr::V6(Ipv6Addr::from(src)),
                IpAddr::V6(Ipv6Addr::from(dst)),
                header.hop_limit(),
                payload.ip_number.0,
                payload.fragmented,
                payload.payload,
                Pseudo::V6(src, dst),
            )
        }
        Some(NetSlice::Arp(_)) | None => return Err(DecodeError::NotIp),
    };
    let mut packet = Packet {
        src,
        dst,
        ip_proto,
        ttl,
        ipv4_options,
        ipv4_options_len,
        fragment,
        transport: Transport::Other,
        src_port: 0,
        dst_port: 0,
        tcp: TcpInfo::default(),
        icmp_type: 0,
        icmp_code: 0,
        icmp_id_seq: None,
        payload: ip_payload,
        checksum_ok,
        wire_len,
    };
    if fragment {
        return Ok(packet);
    }
    match &sliced.transport {
        Some(TransportSlice::Tcp(tcp)) => {
            packet.transport = Transport::Tcp;
            packet.src_port = tcp.source_port();
            packet.dst_port = tcp.destination_port();
            let header = tcp.header_slice();
            packet.tcp = TcpInfo {
                flags: header.get(13).copied().unwrap_or(0),
                seq: tcp.sequence_number(),
                ack: tcp.acknowledgment_number(),
                mss: mss(tcp.options()),
            };
            packet.payload = tcp.payload();
            if verify && packet.checksum_ok {
                packet.checksum_ok = pseudo.verify(ipproto::TCP, tcp.slice());
            }
        }
        Some(TransportSlice::Udp(udp)) => {
            packet.transport = Transport::Udp;
            packet.src_port = udp.source_port();
            packet.dst_port = udp.destination_port();
            packet.payload = udp.payload();
            // A zero UDP checksum over IPv4 means "not computed".
            if verify
                && packet.checksum_ok
                && !(udp.checksum() == 0 && matches!(pseudo, Pseudo::V4(..)))
            {
                packet.checksum_ok = pseudo.verify(ipproto::UDP, udp.slice());
            }
        }
        Some(TransportSlice::Icmpv4(icmp)) => {
            let raw = icmp.slice();
            packet.transport = Transport::Icmp;
            set_icmp(&mut packet, raw, |t| {
                matches!(t, 0 | 8 | 13 | 14 | 15 | 16 | 17 | 18)
            });
            if verify && packet.checksum_ok {
                packet.checksum_ok = ones_complement(0, raw) == 0xffff;
            }
        }
        Some(TransportSlice::Icmpv6(icmp)) => {
            let raw = icmp.slice();
            packet.transport = Transport::Icmpv6;
            set_icmp(&mut packet, raw, |t| matches!(t, 128 | 129));
            if verify && packet.checksum_ok {
                packet.checksum_ok = pseudo.verify(ipproto::ICMPV6, raw);
            }
        }
        Some(TransportSlice::Igmp(_)) | None => {}
    }
    Ok(packet)
}

fn set_icmp<'a>(packet: &mut Packet<'a>, raw: &'a [u8], has_id: impl Fn(u8) -> bool) {
    packet.icmp_type = raw.first().copied().unwrap_or(0);
    packet.icmp_code = raw.get(1).copied().unwrap_or(0);
    if has_id(packet.icmp_type) && raw.len() >= 8 {
        packet.icmp_id_seq = Some((
            u16::from_be_bytes([raw[4], raw[5]]),
            u16::from_be_bytes([raw[6], raw[7]]),
        ));
    }
    packet.payload = raw.get(8..).unwrap_or(&[]);
}

/// The TCP MSS option (kind 2, length 4), if present.
fn mss(options: &[u8]) -> Option<u16> {
    let mut i = 0;
    while i < options.len() {
        match options[i] {
            0 => return None,
            1 => i += 1,
            kind => {
                let len = usize::from(*options.get(i + 1)?);
                if len < 2 {
                    return None;
                }
                if kind == 2 && len == 4 {
                    let value = options.get(i + 2..i + 4)?;
                    return Some(u16::from_be_bytes([value[0], value[1]]));
                }
                i += len;
            }
        }
    }
    None
}

/// The addresses of the pseudo-header TCP, UDP and ICMPv6 checksums cover.
#[derive(Debug, Clone, Copy)]
enum Pseudo {
    V4([u8; 4], [u8; 4]),
    V6([u8; 16], [u8; 16]),
}

impl Pseudo {
    fn verify(self, proto: u8, segment: &[u8]) -> bool {
        let Ok(len) = u32::try_from(segment.len()) else {
            return false;
        };
        let mut sum = 0u32;
        match self {
            Pseudo::V4(src, dst) => {
                sum = add_words(sum, &src);
                sum = add_words(sum, &dst);
            }
            Pseudo::V6(src, dst) => {
                sum = add_words(sum, &src);
                sum = add_words(sum, &dst);
            }
        }
        sum += u32::from(proto) + (len >> 16) + (len & 0xffff);
        ones_complement(sum, segment) == 0xffff
    }
}

fn add_words(mut sum: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for pair in &mut chunks {
        sum += u32::from(u16::from_be_bytes([pair[0], pair[1]]));
        sum = (sum & 0xffff) + (sum >> 16);
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(*last) << 8;
    }
    sum
}

/// The folded 16-bit ones' complement sum of `data` on top of `start`; a valid checksummed
/// region sums to `0xffff`.
fn ones_complement(start: u32, data: &[u8]) -> u16 {
    let mut sum = add_words(start, data);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    fn syn(payload: &[u8]) -> Vec<u8> {
        let builder = etherparse::PacketBuilder::ethernet2([1; 6], [2; 6])
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp(40000, 22, 7, 1024)
            .syn();
        let mut frame = Vec::new();
        builder.write(&mut frame, payload).unwrap();
        frame
    }

    #[test]
    fn ethernet_ipv4_tcp_decodes_with_valid_checksums() {
        let frame = syn(b"hello");
        let packet = decode(linktype::ETHERNET, &frame, true).unwrap();
        assert_eq!(packet.src, "10.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(packet.dst_port, 22);
        assert_eq!(packet.tcp.flags, 0x02);
        assert_eq!(packet.payload, b"hello");
        assert_eq!(packet.ttl, 64);
        assert!(packet.checksum_ok);
    }

    #[test]
    fn a_flipped_payload_byte_breaks_the_tcp_checksum() {
        let mut frame = syn(b"hello");
        let last = frame.len() - 1;
        frame[last] ^= 0xff;
        assert!(
            !decode(linktype::ETHERNET, &frame, true)
                .unwrap()
                .checksum_ok
        );
        assert!(
            decode(linktype::ETHERNET, &frame, false)
                .unwrap()
                .checksum_ok
        );
    }

    #[test]
    fn raw_ip_sll2_and_truncation() {
        let frame = syn(b"x");
        let ip = &frame[14..];
        assert_eq!(decode(linktype::RAW, ip, true).unwrap().src_port, 40000);
        let mut sll2 = vec![0x08, 0x00];
        sll2.extend_from_slice(&[0; 18]);
        sll2.extend_from_slice(ip);
        assert_eq!(
            decode(linktype::LINUX_SLL2, &sll2, true).unwrap().dst_port,
            22
        );
        assert_eq!(
            decode(linktype::ETHERNET, &frame[..30], true).unwrap_err(),
            DecodeError::Malformed
        );
        assert_eq!(
            decode(9999, &frame, true).unwrap_err(),
            DecodeError::LinkType(9999)
        );
    }

    #[test]
    fn vlan_tagged_and_qinq_frames_decode() {
        let mut frame = Vec::new();
        etherparse::PacketBuilder::ethernet2([1; 6], [2; 6])
            .double_vlan(
                etherparse::VlanId::try_new(100).unwrap(),
                etherparse::VlanId::try_new(7).unwrap(),
            )
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 9)
            .udp(53, 5353)
            .write(&mut frame, b"dns")
            .unwrap();
        let packet = decode(linktype::ETHERNET, &frame, true).unwrap();
        assert_eq!(
            (packet.transport, packet.dst_port, packet.ttl),
            (Transport::Udp, 5353, 9)
        );
        assert_eq!(packet.payload, b"dns");
        assert!(packet.checksum_ok);
    }

    #[test]
    fn ipv6_with_a_destination_options_header_reaches_icmpv6() {
        // IPv6 (next header 60) + destination options (8 bytes, PadN) + ICMPv6 echo.
        let mut icmp = vec![128, 0, 0, 0, 0x12, 0x34, 0, 1, b'h', b'i'];
        let src = [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        let dst = [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        let sum = Pseudo::V6(src, dst);
        // Fill in the checksum so the packet is valid.
        let mut total = add_words(0, &src);
        total = add_words(total, &dst);
        total += 58 + icmp.len() as u32;
        let folded = !ones_complement(total, &icmp);
        icmp[2..4].copy_from_slice(&folded.to_be_bytes());
        assert!(sum.verify(ipproto::ICMPV6, &icmp));
        let mut frame = vec![0x60, 0, 0, 0];
        frame.extend_from_slice(&((8 + icmp.len()) as u16).to_be_bytes());
        frame.extend_from_slice(&[60, 255]);
        frame.extend_from_slice(&src);
        frame.extend_from_slice(&dst);
        frame.extend_from_slice(&[58, 0, 1, 4, 0, 0, 0, 0]);
        frame.extend_from_slice(&icmp);
        let packet = decode(linktype::RAW, &frame, true).unwrap();
        assert_eq!(packet.transport, Transport::Icmpv6);
        assert_eq!(packet.icmp_type, 128);
        assert_eq!(packet.icmp_id_seq, Some((0x1234, 1)));
        assert_eq!(packet.ttl, 255);
        assert!(packet.checksum_ok);
    }

    #[test]
    fn linux_sll_with_a_loopback_hardware_type_decodes() {
        let frame = syn(b"x");
        // packet type 0, ARPHRD_LOOPBACK (772), address length 6, address, IPv4.
        let mut sll = vec![0, 0, 0x03, 0x04, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0x08, 0x00];
        sll.extend_from_slice(&frame[14..]);
        let packet = decode(linktype::LINUX_SLL, &sll, true).unwrap();
        assert_eq!(packet.dst_port, 22);
    }

    #[test]
    fn mss_option_is_found_among_others() {
        assert_eq!(mss(&[1, 1, 2, 4, 0x05, 0xb4, 0]), Some(1460));
        assert_eq!(mss(&[3, 3, 7]), None);
        assert_eq!(mss(&[2, 0]), None);
    }
}
