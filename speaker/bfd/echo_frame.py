"""BFD Echo frames over IPv4 (RFC 5880 §6.4, RFC 5881 §4): the pure part of the echo
transport (no sockets, no clocks; :mod:`speaker.bfd.echo_link` does the I/O).

An echo goes on the wire as a whole Ethernet II + IPv4 + UDP frame that we build
(:func:`build_frame`), since the kernel's IP stack would route a datagram to our own
address over ``lo``; what comes back is parsed here too (:func:`parse_frame`), as is a
peer's echo we loop back for a node that does not forward (:func:`reflected`). The
classic BPF program (:func:`echo_filter`) that keeps a packet socket from waking for
unrelated traffic is built here; attaching it is :mod:`speaker.bfd.bpf`'s.
"""

from __future__ import annotations

import itertools
import random
import struct
from ipaddress import IPv4Address
from typing import NamedTuple

from speaker.bfd.bpf import (
    ACCEPT_ALL,
    JEQ_K,
    JSET_K,
    LD_B_ABS,
    LD_H_ABS,
    LD_H_IND,
    LD_W_ABS,
    LDX_B_MSH,
    RET_K,
    SKF_AD_OFF,
    SKF_AD_PKTTYPE,
    BpfInsn,
    stmt,
)

__all__ = [
    "ECHO_PORT",
    "ETH_P_IP",
    "PACKET_HOST",
    "PACKET_OUTGOING",
    "EchoFrame",
    "build_frame",
    "echo_filter",
    "internet_checksum",
    "parse_frame",
    "reflected",
]

ECHO_PORT = 3785  # RFC 5881 §4
ETH_P_IP = 0x0800

# sll_pkttype values (linux/if_packet.h).
PACKET_HOST = 0
PACKET_OUTGOING = 4

_ETH = struct.Struct("!6s6sH")
_IPV4 = struct.Struct("!BBHHHBBH4s4s")
_UDP = struct.Struct("!HHHH")
_ETH_LEN = _ETH.size  # 14
_IP_MIN_LEN = _IPV4.size  # 20
_UDP_LEN = _UDP.size  # 8
_IPPROTO_UDP = 17
_IP_FRAGMENT_BITS = 0x3FFF  # MF flag + fragment offset
_MAX_PAYLOAD = 0xFFFF - _IP_MIN_LEN - _UDP_LEN

_ident_counter = itertools.count(random.randrange(0x10000))


class EchoFrame(NamedTuple):
    """The parts of a received IPv4/UDP frame the echo function cares about."""

    ip_src: IPv4Address
    ip_dst: IPv4Address
    ttl: int
    udp_sport: int
    udp_dport: int
    payload: bytes


# ---------------------------------------------------------------------------------------
# Frames


def internet_checksum(data: bytes) -> int:
    """RFC 1071 one's-complement checksum of ``data`` (odd length padded with a zero)."""
    if len(data) % 2:
        data += b"\x00"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _udp_checksum(ip_src: bytes, ip_dst: bytes, udp: bytes) -> int:
    pseudo = ip_src + ip_dst + struct.pack("!BBH", 0, _IPPROTO_UDP, len(udp))
    return internet_checksum(pseudo + udp)


def _check_mac(name: str, mac: bytes) -> None:
    if len(mac) != 6:
        raise ValueError(f"{name} must be 6 bytes, got {len(mac)}")


def build_frame(  # noqa: PLR0917 (the six wire fields read best in wire order)
    src_mac: bytes,
    dst_mac: bytes,
    ip_src: IPv4Address,
    ip_dst: IPv4Address,
    udp_sport: int,
    payload: bytes,
    *,
    ttl: int = 255,
    ident: int | None = None,
    udp_dport: int = ECHO_PORT,
) -> bytes:
    """An Ethernet II + IPv4 + UDP frame carrying ``payload`` (to port 3785 by default).

    The IPv4 header has no options, DF clear (a 28-byte echo never needs fragmenting and
    a clear DF keeps odd-MTU paths from turning it into ICMP), and ``ident`` as its ID;
    without ``ident`` a process-wide counter supplies incrementing IDs. Both the IPv4
    header checksum and the UDP checksum (over the pseudo-header) are computed: a zero
    UDP checksum would be legal in IPv4, but a real one lets us drop frames corrupted
    on the way.
    """
    _check_mac("src_mac", src_mac)
    _check_mac("dst_mac", dst_mac)
    if not (0 <= udp_sport <= 0xFFFF and 0 <= udp_dport <= 0xFFFF):
        raise ValueError("UDP ports are 16-bit")
    if not 0 <= ttl <= 0xFF:
        raise ValueError("ttl is 8-bit")
    if len(payload) > _MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes does not fit one IPv4 packet")
    if ident is None:
        ident = next(_ident_counter) & 0xFFFF
    elif not 0 <= ident <= 0xFFFF:
        raise ValueError("ident is 16-bit")
    src, dst = ip_src.packed, ip_dst.packed
    udp_len = _UDP_LEN + len(payload)
    udp = _UDP.pack(udp_sport, udp_dport, udp_len, 0) + payload
    udp_csum = _udp_checksum(src, dst, udp) or 0xFFFF  # 0 means "none"; RFC 768
    udp = udp[:6] + struct.pack("!H", udp_csum) + udp[8:]
    header = _IPV4.pack(0x45, 0, _IP_MIN_LEN + udp_len, ident, 0, ttl, _IPPROTO_UDP, 0, src, dst)
    header = header[:10] + struct.pack("!H", internet_checksum(header)) + header[12:]
    return _ETH.pack(dst_mac, src_mac, ETH_P_IP) + header + udp


def parse_frame(frame: bytes) -> EchoFrame | None:
    """The echo-relevant fields of an Ethernet frame, or None.

    None for anything that is not an unfragmented IPv4/UDP packet to port 3785 with
    valid lengths and checksums. Trailing bytes past the IPv4 total length (Ethernet
    minimum-size padding) are ignored. Never raises on arbitrary input.
    """
    if len(frame) < _ETH_LEN + _IP_MIN_LEN + _UDP_LEN:
        return None
    (ethertype,) = struct.unpack_from("!H", frame, 12)
    if ethertype != ETH_P_IP:
        return None
    ver_ihl, _tos, total_len, _ident, frag, ttl, proto, _csum, src, dst = _IPV4.unpack_from(
        frame, _ETH_LEN
    )
    ihl = (ver_ihl & 0x0F) * 4
    if ver_ihl >> 4 != 4 or ihl < _IP_MIN_LEN or proto != _IPPROTO_UDP:
        return None
    # Fragments: a later fragment has no UDP header, a first one an unverifiable payload.
    if frag & _IP_FRAGMENT_BITS:
        return None
    if total_len < ihl + _UDP_LEN or _ETH_LEN + total_len > len(frame):
        return None
    ip_packet = frame[_ETH_LEN : _ETH_LEN + total_len]
    if internet_checksum(ip_packet[:ihl]) != 0:
        return None
    sport, dport, udp_len, udp_csum = _UDP.unpack_from(ip_packet, ihl)
    if dport != ECHO_PORT or udp_len < _UDP_LEN or ihl + udp_len > total_len:
        return None
    udp = ip_packet[ihl : ihl + udp_len]
    if udp_csum != 0 and _udp_checksum(src, dst, udp) != 0:
        return None
    return EchoFrame(IPv4Address(src), IPv4Address(dst), ttl, sport, dport, udp[_UDP_LEN:])


# ---------------------------------------------------------------------------------------
# BPF


def echo_filter(
    ip_src: IPv4Address, ip_dst: IPv4Address, udp_sport: int | None = None
) -> list[BpfInsn]:
    """Classic BPF accepting only our returned echoes, for an ``AF_PACKET`` socket.

    Passes a frame only if all hold: it was received for this host (pkttype
    PACKET_HOST: drops frames seen only because the interface is promiscuous, and
    transmitted copies, which reach ETH_P_ALL sockets even before Linux 4.20's
    PACKET_IGNORE_OUTGOING), ethertype IPv4, protocol UDP, not a fragment, IP
    source ``ip_src``, IP destination ``ip_dst``, UDP destination port 3785 and, when
    given, UDP source port ``udp_sport`` (so two links on one interface don't wake each
    other). Offsets are from the Ethernet header, as SOCK_RAW packet sockets see it.
    """
    program: list[BpfInsn] = []
    fail_jumps: list[int] = []  # indexes of jumps whose failing branch is "drop"

    def expect(code: int, offset: int, value: int) -> None:
        program.append(stmt(code, offset))
        fail_jumps.append(len(program))
        program.append(BpfInsn(JEQ_K, 0, 0, value))  # jf patched to "drop" below

    expect(LD_W_ABS, SKF_AD_OFF + SKF_AD_PKTTYPE, PACKET_HOST)
    expect(LD_H_ABS, 12, ETH_P_IP)
    expect(LD_B_ABS, _ETH_LEN + 9, _IPPROTO_UDP)
    program.append(stmt(LD_H_ABS, _ETH_LEN + 6))
    fragment_jump = len(program)
    program.append(BpfInsn(JSET_K, 0, 0, _IP_FRAGMENT_BITS))  # any bit set: drop (jt)
    expect(LD_W_ABS, _ETH_LEN + 12, int(ip_src))
    expect(LD_W_ABS, _ETH_LEN + 16, int(ip_dst))
    # X = 4 * (IHL nibble); the UDP header then starts at 14 + X.
    program.append(stmt(LDX_B_MSH, _ETH_LEN))
    expect(LD_H_IND, _ETH_LEN + 2, ECHO_PORT)
    if udp_sport is not None:
        expect(LD_H_IND, _ETH_LEN, udp_sport)
    drop = len(program) + 1  # after the "accept" return
    for i in fail_jumps:
        program[i] = program[i]._replace(jf=drop - i - 1)
    program[fragment_jump] = program[fragment_jump]._replace(jt=drop - fragment_jump - 1)
    program.append(stmt(RET_K, ACCEPT_ALL))  # keep the whole frame
    program.append(stmt(RET_K, 0))
    return program


# ---------------------------------------------------------------------------------------
# Looping the peer's echoes


def reflected(frame: bytes, local_mac: bytes) -> bytes | None:
    """The frame a router's forwarding plane sends back for a peer's echo, or None.

    The peer addresses its echo to itself (IP source and destination its own
    address, our MAC as Ethernet destination) and expects it back as a router would
    return it: to the sender's MAC from ours, TTL one lower (FRR checks for 254), the
    rest unchanged. None for anything that is not a valid IPv4/UDP echo frame, or
    whose TTL would expire.
    """
    parsed = parse_frame(frame)
    if parsed is None or parsed.ttl <= 1:
        return None
    ihl = (frame[_ETH_LEN] & 0x0F) * 4
    header = bytearray(frame[_ETH_LEN : _ETH_LEN + ihl])
    header[8] -= 1
    header[10:12] = b"\x00\x00"
    header[10:12] = struct.pack("!H", internet_checksum(bytes(header)))
    return frame[6:12] + local_mac + frame[12:_ETH_LEN] + bytes(header) + frame[_ETH_LEN + ihl :]
