"""speaker.bfd.echo_link: frames, the BPF filter, ARP lookup, and echoes through a router.

The lab tests run the echo code inside the ``spk`` namespace (this module's ``__main__``
is the runner) because a packet socket only sees the interfaces of its own namespace.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import statistics
import struct
import sys
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from speaker.bfd.bpf import SKF_AD_OFF, SKF_AD_PKTTYPE, BpfInsn
from speaker.bfd.echo_frame import (
    ECHO_PORT,
    PACKET_HOST,
    PACKET_OUTGOING,
    build_frame,
    echo_filter,
    parse_frame,
    reflected,
)
from speaker.bfd.echo_link import (
    EchoLink,
    EchoLinkError,
    kernel_forwards,
    resolve_mac,
    wait_peer_mac,
)
from tests.helpers import Require

REPO = Path(__file__).resolve().parents[2]
MAC_A = bytes.fromhex("020000000001")
MAC_B = bytes.fromhex("020000000002")
LOCAL = IPv4Address("198.18.1.2")
PEER = IPv4Address("198.18.1.1")

macs = st.binary(min_size=6, max_size=6)
ipv4s = st.integers(0, 2**32 - 1).map(IPv4Address)
ports = st.integers(0, 0xFFFF)
payloads = st.binary(max_size=1500)


def words_sum(data: bytes) -> int:
    """One's-complement sum of 16-bit words, written independently of the module."""
    if len(data) % 2:
        data += b"\x00"
    total = 0
    for i in range(0, len(data), 2):
        total += (data[i] << 8) | data[i + 1]
        total = (total & 0xFFFF) + (total >> 16)
    return total


def echo(payload: bytes = b"hello", **kw: Any) -> bytes:
    args: dict[str, Any] = {
        "src_mac": MAC_A,
        "dst_mac": MAC_B,
        "ip_src": LOCAL,
        "ip_dst": LOCAL,
        "udp_sport": 50000,
        "payload": payload,
    }
    args.update(kw)
    return build_frame(**args)


def with_ip_options(frame: bytes, options: bytes = b"\x01\x01\x01\x00") -> bytes:
    """The same packet with IPv4 options (NOPs + EOL) inserted, checksum redone."""
    ip = bytearray(frame[14:34] + options + frame[34:])
    ip[0] = 0x40 | (20 + len(options)) // 4
    struct.pack_into("!H", ip, 2, len(ip))
    struct.pack_into("!H", ip, 10, 0)
    struct.pack_into("!H", ip, 10, ~words_sum(bytes(ip[: 20 + len(options)])) & 0xFFFF)
    return frame[:14] + bytes(ip)


def patched(frame: bytes, offset: int, fmt: str, value: int, *, fix_ip_csum: bool = True) -> bytes:
    buf = bytearray(frame)
    struct.pack_into(fmt, buf, offset, value)
    if fix_ip_csum:
        struct.pack_into("!H", buf, 24, 0)
        struct.pack_into("!H", buf, 24, ~words_sum(bytes(buf[14:34])) & 0xFFFF)
    return bytes(buf)


# -- frames -----------------------------------------------------------------------------


frame_fields = st.fixed_dictionaries(
    {
        "src_mac": macs,
        "dst_mac": macs,
        "ip_src": ipv4s,
        "ip_dst": ipv4s,
        "udp_sport": ports,
        "payload": payloads,
        "ttl": st.integers(0, 255),
        "ident": ports,
    }
)


@given(frame_fields)
def test_build_parse_round_trip(fields: dict[str, Any]) -> None:
    frame = build_frame(**fields)
    assert frame[:6] == fields["dst_mac"] and frame[6:12] == fields["src_mac"]
    assert frame[12:14] == b"\x08\x00"
    assert struct.unpack("!H", frame[18:20])[0] == fields["ident"]
    parsed = parse_frame(frame)
    assert parsed == (
        fields["ip_src"],
        fields["ip_dst"],
        fields["ttl"],
        fields["udp_sport"],
        ECHO_PORT,
        fields["payload"],
    )
    # Ethernet minimum-size padding after the IP packet is not payload.
    assert parse_frame(frame + bytes(30)) == parsed
    # Every truncation is rejected, never misparsed.
    for cut in (len(frame) - 1, 41, 33, 13, 0):
        assert parse_frame(frame[:cut]) is None


@given(ipv4s, ipv4s, ports, payloads, st.integers(0, 255))
def test_checksums_verify(
    ip_src: IPv4Address, ip_dst: IPv4Address, sport: int, payload: bytes, ttl: int
) -> None:
    frame = build_frame(MAC_A, MAC_B, ip_src, ip_dst, sport, payload, ttl=ttl)
    ip_header = frame[14:34]
    assert ip_header[0] == 0x45
    assert words_sum(ip_header) == 0xFFFF
    assert struct.unpack("!H", ip_header[6:8])[0] & 0x4000 == 0  # DF clear
    udp = frame[34:]
    assert struct.unpack("!H", udp[4:6])[0] == len(udp) == 8 + len(payload)
    assert struct.unpack("!H", udp[6:8])[0] != 0  # a real checksum, not "none"
    pseudo = ip_src.packed + ip_dst.packed + struct.pack("!BBH", 0, 17, len(udp))
    assert words_sum(pseudo + udp) == 0xFFFF


def test_ident_increments_by_default() -> None:
    ids = [struct.unpack("!H", echo()[18:20])[0] for _ in range(3)]
    assert ids[1] == (ids[0] + 1) & 0xFFFF and ids[2] == (ids[1] + 1) & 0xFFFF
    assert struct.unpack("!H", echo(ident=0xBEEF)[18:20])[0] == 0xBEEF


@given(st.binary(max_size=200))
def test_parse_garbage_never_raises(data: bytes) -> None:
    parse_frame(data)


@given(st.binary(max_size=64), st.integers(0, 200), st.integers(0, 255))
def test_parse_mutated_echo_never_raises(payload: bytes, index: int, value: int) -> None:
    frame = bytearray(echo(payload))
    frame[index % len(frame)] = value
    result = parse_frame(bytes(frame))
    assert result is None or isinstance(result.payload, bytes)


def test_parse_rejects_what_is_not_a_valid_echo() -> None:
    good = echo(b"x" * 28)
    assert parse_frame(good) is not None
    assert parse_frame(echo(udp_dport=3784)) is None  # BFD control, not echo
    assert parse_frame(patched(good, 12, "!H", 0x86DD)) is None  # not IPv4 ethertype
    assert parse_frame(patched(good, 14, "!B", 0x65)) is None  # IP version 6
    assert parse_frame(patched(good, 14, "!B", 0x44)) is None  # IHL below 5
    assert parse_frame(patched(good, 23, "!B", 6)) is None  # TCP
    assert parse_frame(patched(good, 20, "!H", 0x2000)) is None  # MF: first fragment
    assert parse_frame(patched(good, 20, "!H", 0x0001)) is None  # later fragment
    assert parse_frame(patched(good, 24, "!H", 0x1234, fix_ip_csum=False)) is None
    assert parse_frame(patched(good, 16, "!H", 1000)) is None  # total length > frame
    assert parse_frame(patched(good, 38, "!H", 1000)) is None  # UDP length > IP
    assert parse_frame(patched(good, 38, "!H", 7)) is None  # UDP length < header
    bad_udp = bytearray(good)
    bad_udp[-1] ^= 0xFF
    assert parse_frame(bytes(bad_udp)) is None  # UDP checksum no longer matches
    # A zero UDP checksum means "none" in IPv4 and is accepted as such.
    assert parse_frame(bytes(bad_udp[:40]) + b"\x00\x00" + bytes(bad_udp[42:])) is not None
    # DF set by someone else's stack is fine.
    assert parse_frame(patched(good, 20, "!H", 0x4000)) is not None


def test_parse_handles_ip_options() -> None:
    parsed = parse_frame(with_ip_options(echo(b"payload")))
    assert parsed is not None and parsed.payload == b"payload"


def test_build_frame_validates() -> None:
    with pytest.raises(ValueError):
        echo(src_mac=b"\x00" * 5)
    with pytest.raises(ValueError):
        echo(udp_sport=70000)
    with pytest.raises(ValueError):
        echo(ttl=256)
    with pytest.raises(ValueError):
        echo(b"x" * 70000)


# -- BPF ----------------------------------------------------------------------------------


def run_bpf(program: list[BpfInsn], frame: bytes, pkttype: int = PACKET_HOST) -> int:
    """A classic-BPF interpreter for the opcodes echo_filter uses (0 means drop)."""
    a = x = 0
    pc = 0

    def load(offset: int, size: int) -> int | None:
        if offset == (SKF_AD_OFF + SKF_AD_PKTTYPE) & 0xFFFFFFFF:
            return pkttype
        if offset + size > len(frame):
            return None  # the kernel drops the packet on an out-of-bounds load
        return int.from_bytes(frame[offset : offset + size], "big")

    while True:
        code, jt, jf, k = program[pc]
        pc += 1
        sizes = {0x20: 4, 0x28: 2, 0x30: 1, 0x48: 2}
        if code in (0x20, 0x28, 0x30, 0x48):
            value = load(k + (x if code == 0x48 else 0), sizes[code])
            if value is None:
                return 0
            a = value
        elif code == 0xB1:  # ldx 4*([k]&0xf)
            byte = load(k, 1)
            if byte is None:
                return 0
            x = (byte & 0x0F) * 4
        elif code == 0x15:
            pc += jt if a == k else jf
        elif code == 0x45:
            pc += jt if a & k else jf
        elif code == 0x06:
            return k
        else:
            raise AssertionError(f"unexpected opcode {code:#x}")


def test_bpf_filter_passes_only_our_returned_echoes() -> None:
    prog = echo_filter(LOCAL, LOCAL, 50000)
    good = echo(b"e" * 28, ttl=254)
    assert run_bpf(prog, good) > len(good)
    assert run_bpf(prog, with_ip_options(good)) > 0
    assert run_bpf(prog, good, PACKET_OUTGOING) == 0
    assert run_bpf(prog, echo(ip_src=PEER)) == 0
    assert run_bpf(prog, echo(ip_dst=PEER, ip_src=PEER)) == 0  # the peer's own echo
    assert run_bpf(prog, echo(udp_dport=3784)) == 0
    assert run_bpf(prog, echo(udp_sport=50001)) == 0
    assert run_bpf(prog, patched(good, 20, "!H", 0x2000)) == 0
    assert run_bpf(prog, patched(good, 23, "!B", 6)) == 0
    assert run_bpf(prog, patched(good, 12, "!H", 0x0806)) == 0
    assert run_bpf(prog, good[:30]) == 0
    # Without a source port any sport passes, everything else still applies.
    assert run_bpf(echo_filter(LOCAL, LOCAL), echo(udp_sport=1234)) > 0


@given(ipv4s, ipv4s, ports, ports, st.sampled_from([PACKET_HOST, PACKET_OUTGOING, 1, 3]))
def test_bpf_agrees_with_parse(
    ip_src: IPv4Address, ip_dst: IPv4Address, sport: int, dport: int, pkttype: int
) -> None:
    frame = build_frame(MAC_A, MAC_B, ip_src, ip_dst, sport, b"p", udp_dport=dport)
    accepted = run_bpf(echo_filter(LOCAL, LOCAL, 50000), frame, pkttype) > 0
    parsed = parse_frame(frame)
    expected = (
        pkttype == PACKET_HOST
        and parsed is not None
        and (parsed.ip_src, parsed.ip_dst, parsed.udp_sport) == (LOCAL, LOCAL, 50000)
    )
    assert accepted == expected


# -- ARP ----------------------------------------------------------------------------------

ARP_TABLE = """\
IP address       HW type     Flags       HW address            Mask     Device
198.18.1.1       0x1         0x2         aa:bb:cc:dd:ee:01     *        to-rtr1
198.18.2.1       0x1         0x0         00:00:00:00:00:00     *        to-rtr2
198.18.3.1       0x1         0x6         aa:bb:cc:dd:ee:03     *        to-rtr3
198.18.1.1       0x1         0x2         aa:bb:cc:dd:ee:99     *        other
"""


def test_resolve_mac_reads_complete_entries(tmp_path: Path) -> None:
    table = tmp_path / "arp"
    table.write_text(ARP_TABLE)
    path = str(table)
    assert resolve_mac("to-rtr1", PEER, arp_table=path) == bytes.fromhex("aabbccddee01")
    assert resolve_mac("other", PEER, arp_table=path) == bytes.fromhex("aabbccddee99")
    assert resolve_mac("to-rtr2", IPv4Address("198.18.2.1"), arp_table=path) is None
    assert resolve_mac("to-rtr3", IPv4Address("198.18.3.1"), arp_table=path) is not None
    assert resolve_mac("to-rtr2", PEER, arp_table=path) is None
    assert resolve_mac("to-rtr1", PEER, arp_table=str(tmp_path / "missing")) is None


async def test_wait_peer_mac_times_out_clearly() -> None:
    # No interface of that name exists, so no entry ever appears; the trigger datagram
    # goes harmlessly over lo.
    with pytest.raises(EchoLinkError, match=r"^no ARP entry for 127\.0\.0\.2 on nosuchif0$"):
        await wait_peer_mac(
            "nosuchif0", IPv4Address("127.0.0.2"), IPv4Address("127.0.0.1"), timeout=0.1
        )


async def test_link_errors() -> None:
    link = EchoLink("nosuchif0", LOCAL, PEER)
    with pytest.raises(EchoLinkError, match="not open"):
        await link.send(b"x")
    with pytest.raises(EchoLinkError, match="no interface nosuchif0"):
        await link.open()
    link.close()  # idempotent, also when never opened


class ScriptedPacketSocket:
    """recvfrom answers from a script: an OSError to raise or (frame, address)."""

    def __init__(self, *script: OSError | tuple[bytes, tuple[Any, ...]]) -> None:
        self.script = list(script)

    async def recvfrom(self, size: int) -> tuple[bytes, tuple[Any, ...]]:
        await trio.lowlevel.checkpoint()
        item = self.script.pop(0)
        if isinstance(item, OSError):
            raise item
        return item


async def test_both_receive_loops_skip_a_link_down_and_frames_not_for_this_host() -> None:
    """EchoLink.receive_frame and EchoReflector.run read through one helper."""
    from speaker.bfd.echo_link import _receive_host_frame

    def address(pkttype: int) -> tuple[Any, ...]:
        return ("to-rtr1", 0x0800, pkttype, 1, MAC_B)

    sock = ScriptedPacketSocket(
        OSError(errno.ENETDOWN, "Network is down"),
        (b"outgoing", address(PACKET_OUTGOING)),
        (b"ours", address(PACKET_HOST)),
        OSError(errno.EBADF, "Bad file descriptor"),
    )
    assert await _receive_host_frame(sock, "to-rtr1") == b"ours"  # type: ignore[arg-type]  # scripted
    with pytest.raises(EchoLinkError, match="echo receive on to-rtr1 failed"):
        await _receive_host_frame(sock, "to-rtr1")  # type: ignore[arg-type]  # scripted socket


# -- lab ----------------------------------------------------------------------------------


def run_in_spk(lab: Any, *args: str) -> dict[str, Any]:
    cp = lab["spk"].run(
        "env",
        f"PYTHONPATH={REPO}",
        sys.executable,
        "-m",
        "tests.speaker.test_echo_link",
        *args,
        timeout=30,
    )
    result: dict[str, Any] = json.loads(cp.stdout)
    return result


def icmp_out_redirects(host: Any) -> int:
    lines = [line.split() for line in host.run("cat", "/proc/net/snmp").stdout.splitlines()]
    names, values = [pair for pair in lines if pair[0] == "Icmp:"][:2]
    return int(values[names.index("OutRedirects")])


@pytest.mark.lab
def test_echoes_loop_back_through_router(lab: Any) -> None:
    before = icmp_out_redirects(lab["rtr1"])
    result = run_in_spk(lab, "--count", "50", "--interval", "0.01", "--wait", "1.0")
    redirects = icmp_out_redirects(lab["rtr1"]) - before
    rtts = result["rtt_ms"]
    print(
        f"\necho through rtr1: {len(rtts)}/{result['sent']} back, rtt ms "
        f"min {min(rtts):.3f} median {statistics.median(rtts):.3f} max {max(rtts):.3f}; "
        f"ttl {set(result['ttls'])}; rtr1 ICMP redirects sent {redirects}"
    )
    assert result["sent"] == 50
    assert len(rtts) >= 48, result
    assert result["stray"] == 0
    assert max(rtts) < 20.0
    # One forwarding hop: 255 on the way out, 254 when it is back.
    assert set(result["ttls"]) == {254}


@pytest.mark.lab
def test_echo_source_outside_subnet_draws_no_redirects(lab: Any) -> None:
    # spk's loopback address; rtr1 routes it back via 198.18.1.2 (lab static route).
    source = str(lab["spk"].lo4)
    before = icmp_out_redirects(lab["rtr1"])
    result = run_in_spk(lab, "--source", source, "--count", "20", "--wait", "1.0")
    assert len(result["rtt_ms"]) == 20, result
    assert icmp_out_redirects(lab["rtr1"]) - before == 0


@pytest.mark.lab
def test_echo_lost_when_peer_does_not_forward(lab: Any) -> None:
    lab["rtr1"].run("sysctl", "-qw", "net.ipv4.ip_forward=0")
    result = run_in_spk(lab, "--count", "20", "--interval", "0.01", "--wait", "1.0")
    assert result["sent"] == 20
    assert result["rtt_ms"] == [], result  # ARP still works; the echo path is lost


@pytest.mark.lab
def test_bpf_filter_in_kernel(lab_require: Require) -> None:
    """The filter as the kernel runs it: frames injected on lo of a scratch namespace."""
    lab_require()
    from lab import Lab

    with Lab.create(hosts=["flt"], links=[]) as scratch:
        cp = scratch["flt"].run(
            "env", f"PYTHONPATH={REPO}", sys.executable, "-m", "tests.speaker.test_echo_link",
            "--filter-check", timeout=30,
        )  # fmt: skip
    # Only the looped-back (incoming) copy of the one matching frame; the outgoing copy
    # of every frame is dropped by the pkttype test, the rest by the header tests.
    assert json.loads(cp.stdout) == {"received": ["good"]}


# -- runner (executed inside a lab namespace) --------------------------------------------


async def echo_run(args: argparse.Namespace) -> dict[str, Any]:
    link = EchoLink(args.ifname, args.local, args.peer, source_ip=args.source)
    async with link:
        outstanding: dict[bytes, float] = {}
        rtt_ms: list[float] = []
        ttls: list[int] = []
        stray = 0

        async def collect() -> None:
            nonlocal stray
            while True:
                frame = await link.receive_frame()
                now = trio.current_time()
                started = outstanding.pop(frame.payload, None)
                if started is None:
                    stray += 1
                    continue
                rtt_ms.append((now - started) * 1000)
                ttls.append(frame.ttl)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(collect)
            for seq in range(args.count):
                payload = b"SPKE" + struct.pack("!I", seq) + os.urandom(20)
                outstanding[payload] = trio.current_time()
                await link.send(payload)
                await trio.sleep(args.interval)
            with trio.move_on_after(args.wait):
                while outstanding:
                    await trio.sleep(0.005)
            nursery.cancel_scope.cancel()
        return {
            "sent": args.count,
            "rtt_ms": rtt_ms,
            "ttls": ttls,
            "stray": stray,
            "sport": link.udp_sport,
            "local_mac": link.local_mac.hex(":"),
            "peer_mac": link.peer_mac.hex(":"),
        }


FILTER_CASES: dict[str, dict[str, Any]] = {
    "good": {},
    "other-src": {"ip_src": IPv4Address("127.0.0.2")},
    "other-dst": {"ip_dst": IPv4Address("127.0.0.2")},
    "other-sport": {"udp_sport": 50001},
    "control-port": {"udp_dport": 3784},
}


async def filter_check() -> dict[str, Any]:
    """Inject frames on lo past a socket carrying echo_filter; report what it let in."""
    import socket

    from speaker.bfd.bpf import attach_filter as _attach_filter
    from speaker.bfd.echo_frame import ETH_P_IP

    local = IPv4Address("127.0.0.1")
    listener = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    _attach_filter(listener, echo_filter(local, local, 50000))
    # ETH_P_ALL (3) and no PACKET_IGNORE_OUTGOING: the listener then also gets the
    # transmitted copy of every frame, and only the filter's pkttype test can drop it
    # (bound to ETH_P_IP, as EchoLink is, the kernel never hands those over at all).
    listener.bind(("lo", 3))
    sender = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    sender.bind(("lo", ETH_P_IP))
    zero = bytes(6)
    for tag, overrides in FILTER_CASES.items():
        fields: dict[str, Any] = {"src_mac": zero, "dst_mac": zero, "ip_src": local}
        fields |= {"ip_dst": local, "udp_sport": 50000, "payload": tag.encode()}
        sender.send(build_frame(**(fields | overrides)))
    template = build_frame(zero, zero, local, local, 50000, b"odd")
    sender.send(patched(template, 20, "!H", 0x2000))  # a first fragment
    sender.send(patched(template, 12, "!H", 0x0806, fix_ip_csum=False))  # ethertype ARP
    received: list[str] = []
    with trio.socket.from_stdlib_socket(listener) as sock:
        with trio.move_on_after(0.3):
            while True:
                data = await sock.recv(4096)
                parsed = parse_frame(data)
                received.append(parsed.payload.decode() if parsed else data.hex())
    sender.close()
    return {"received": received}


def main() -> None:
    parser = argparse.ArgumentParser(description="send BFD echoes and report what returns")
    parser.add_argument("--ifname", default="to-rtr1")
    parser.add_argument("--local", default=str(LOCAL))
    parser.add_argument("--peer", default=str(PEER))
    parser.add_argument("--source", default=None)
    parser.add_argument("--count", type=int, default=50)
    parser.add_argument("--interval", type=float, default=0.01)
    parser.add_argument("--wait", type=float, default=1.0)
    parser.add_argument("--filter-check", action="store_true")
    args = parser.parse_args()
    if args.filter_check:
        print(json.dumps(trio.run(filter_check)))
    else:
        print(json.dumps(trio.run(echo_run, args)))


if __name__ == "__main__":
    main()


def test_reflected_is_what_a_router_sends_back() -> None:
    """A peer's echo (addressed to itself, to our MAC) goes back to the sender's MAC
    from ours with TTL one lower, as a forwarding plane returns it (FRR wants 254)."""
    theirs = build_frame(MAC_B, MAC_A, PEER, PEER, 3785, b"frr-echo" * 3)
    back = reflected(theirs, MAC_A)
    assert back is not None
    assert back[:6] == MAC_B and back[6:12] == MAC_A
    parsed = parse_frame(back)  # checksums still valid
    assert parsed is not None and parsed.ttl == 254
    assert (parsed.ip_src, parsed.ip_dst, parsed.payload) == (PEER, PEER, b"frr-echo" * 3)

    def unchanged(frame: bytes) -> bytes:  # all but the MACs, TTL and IP checksum
        return frame[12:22] + frame[23:24] + frame[26:]

    assert unchanged(back) == unchanged(theirs)
    assert reflected(build_frame(MAC_B, MAC_A, PEER, PEER, 3785, b"x", ttl=1), MAC_A) is None
    assert reflected(theirs[:30], MAC_A) is None


def test_kernel_forwards_reads_the_interface_flag(tmp_path: Path) -> None:
    (tmp_path / "eth0").mkdir()
    (tmp_path / "eth0" / "forwarding").write_text("1\n")
    (tmp_path / "eth1").mkdir()
    (tmp_path / "eth1" / "forwarding").write_text("0\n")
    assert kernel_forwards("eth0", root=str(tmp_path))
    assert not kernel_forwards("eth1", root=str(tmp_path))
    assert not kernel_forwards("missing", root=str(tmp_path))
