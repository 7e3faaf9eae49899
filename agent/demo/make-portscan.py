#!/usr/bin/python3
"""Writes portscan.pcap, the demo's bundled port scan (made by the project, no licence
concerns): 203.0.113.66 sends TCP SYNs to ports 1-120 of 192.0.2.10, one every 20 ms, and
three Xmas probes. Both are documentation addresses (RFC 5737). Re-run to regenerate:
    python3 agent/demo/make-portscan.py
"""
import os
import struct

SRC = bytes([203, 0, 113, 66])
DST = bytes([192, 0, 2, 10])
START = 1_767_225_600  # 2026-01-01T00:00:00Z


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def tcp_packet(sport, dport, flags, seq):
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 5 << 4, flags, 1024, 0, 0)
    pseudo = SRC + DST + struct.pack("!BBH", 0, 6, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", checksum(pseudo + tcp)) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), seq & 0xFFFF, 0, 64, 6, 0, SRC, DST)
    ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    eth = bytes.fromhex("020000000002" "020000000001") + struct.pack("!H", 0x0800)
    return eth + ip + tcp


def main():
    frames = []
    t = 0.0
    for port in range(1, 121):
        frames.append((t, tcp_packet(40000 + port, port, 0x02, 1000 + port)))
        t += 0.02
    for port in (22, 80, 443):
        frames.append((t, tcp_packet(41000 + port, port, 0x29, 5000 + port)))  # FIN PSH URG
        t += 0.02
    out = bytearray(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    for ts, frame in frames:
        sec = START + int(ts)
        usec = int(round((ts - int(ts)) * 1_000_000))
        out += struct.pack("<IIII", sec, usec, len(frame), len(frame)) + frame
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "portscan.pcap")
    with open(path, "wb") as f:
        f.write(out)


if __name__ == "__main__":
    main()
