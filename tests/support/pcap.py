"""A tiny reader for classic libpcap files: UDP datagrams over Ethernet and IPv4, with their times.

Enough for the captures SIPp ships (``/usr/share/sip-tester/*.pcap``, copied to
``tests/vectors/rtp/``) and for what ``tshark -F pcap`` writes; anything else raises ValueError.
The format: a 24-byte global header (magic, version, snaplen, link type), then per record a 16-byte
header (seconds, microseconds or nanoseconds, captured and original lengths) and the frame.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

_GLOBAL = struct.Struct("IHHiIII")
_RECORD = struct.Struct("IIII")
_MAGIC_US = 0xA1B2C3D4
_MAGIC_NS = 0xA1B23C4D
LINKTYPE_ETHERNET = 1
LINKTYPE_LINUX_SLL = 113
ETHERTYPE_IPV4 = 0x0800
IPPROTO_UDP = 17


@dataclass(frozen=True, slots=True)
class UdpDatagram:
    """One captured UDP datagram."""

    time_s: float
    source: tuple[str, int]
    destination: tuple[str, int]
    payload: bytes


def read_udp(path: Path) -> list[UdpDatagram]:
    """Return every IPv4 UDP datagram in a pcap file, in capture order."""
    data = path.read_bytes()
    for order in ("<", ">"):
        magic = struct.unpack_from(order + "I", data)[0]
        if magic in (_MAGIC_US, _MAGIC_NS):
            break
    else:
        raise ValueError(f"{path.name}: not a classic pcap file")
    fraction = 1e-9 if magic == _MAGIC_NS else 1e-6
    link_type = struct.unpack_from(order + _GLOBAL.format, data)[6]
    record = struct.Struct(order + _RECORD.format)
    offset = _GLOBAL.size
    datagrams = []
    while offset < len(data):
        seconds, sub, captured, _ = record.unpack_from(data, offset)
        frame = data[offset + record.size : offset + record.size + captured]
        offset += record.size + captured
        datagram = _udp(frame, link_type, seconds + sub * fraction)
        if datagram is not None:
            datagrams.append(datagram)
    return datagrams


def _udp(frame: bytes, link_type: int, time_s: float) -> UdpDatagram | None:
    if link_type == LINKTYPE_ETHERNET:
        ethertype, ip = struct.unpack_from("!H", frame, 12)[0], frame[14:]
    elif link_type == LINKTYPE_LINUX_SLL:
        ethertype, ip = struct.unpack_from("!H", frame, 14)[0], frame[16:]
    else:
        raise ValueError(f"unsupported pcap link type {link_type}")
    if ethertype != ETHERTYPE_IPV4 or ip[9] != IPPROTO_UDP:
        return None
    header_length = (ip[0] & 0x0F) * 4
    total_length = struct.unpack_from("!H", ip, 2)[0]
    udp = ip[header_length:total_length]
    source_port, destination_port, udp_length = struct.unpack_from("!HHH", udp)
    return UdpDatagram(
        time_s=time_s,
        source=(_address(ip[12:16]), source_port),
        destination=(_address(ip[16:20]), destination_port),
        payload=udp[8:udp_length],
    )


def _address(raw: bytes) -> str:
    return ".".join(str(octet) for octet in raw)
