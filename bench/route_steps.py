"""The longest loop step of the BGP route path, by table size (in-process, no lab).

    python -m bench.route_steps [--sizes 4096,16384,65536]

For each size: a :class:`BgpSession` with that many /32 routes comes up against an
in-process passive peer on loopback, sends its table and End-of-RIB, then takes a
replacement table (1/16 of the routes changed); a Trio Instrument records the
longest step of the session's tasks in thread CPU time (automatic GC off, so the
figure is the code's). Then the route table: building it for that many services,
one health change, and the reference recompute of main (``routes_for_peer``).
Then the receive path: one 4 KiB UPDATE of 1,009 /24s, and the hostile UPDATE
(1,351 repeated ORIGINs). Runs against whatever tree is on PYTHONPATH, so
``PYTHONPATH=<main checkout>`` gives the "before" figures (items missing there
print as "-").
"""

from __future__ import annotations

import argparse
import gc
import ipaddress
import random
import socket
import struct
import sys
import time
from collections.abc import Callable
from typing import Any

import trio

from bench.common import LongestStep
from protocols.bgp import (
    IPV4_UNICAST,
    AsPath,
    Connection,
    NextHop,
    OriginAttribute,
    PathAttribute,
    Prefix,
    SessionConfig,
    State,
    pack_announcements,
)
from protocols.bgp.context import CodecContext
from protocols.bgp.update import decode_update, encode_update_body
from speaker.bgp import BgpPeerConfig, BgpSession, RouteAttributes

Routes = dict[Prefix, RouteAttributes]


def host_routes(first: int, n: int) -> Routes:
    base = int(ipaddress.IPv4Address("198.19.0.0"))
    attributes = RouteAttributes()
    return {ipaddress.IPv4Network((base + first + i, 32)): attributes for i in range(n)}


async def _peer(listener: trio.socket.SocketType, got: list[int]) -> None:
    """A passive router that decodes everything (its steps are not counted)."""
    core = Connection(
        SessionConfig(
            local_asn=64512,
            peer_asn=None,
            router_id=ipaddress.IPv4Address("198.18.0.2"),
            passive=True,
            extended_message=False,
            families=(IPV4_UNICAST,),
            hold_time=90,
        ),
        rng=random.Random(1),
    )
    sock, _ = await listener.accept()
    now = trio.current_time()
    core.start(now)
    core.connection_made(now)
    with sock:
        while True:
            out = core.data_to_send()
            while out:
                sent = await sock.send(out)
                out = out[sent:]
            data = await sock.recv(65536)
            if not data:
                return
            for event in core.receive_data(data, trio.current_time()):
                got.append(len(getattr(event, "announced", ())))


async def session_steps(size: int) -> tuple[float, float]:
    """Longest session step (s): bring-up with ``size`` routes; replacement table."""
    listener = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    await listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    config = BgpPeerConfig(name="bench", peer_address=ipaddress.IPv4Address("127.0.0.1"),
                           peer_port=listener.getsockname()[1], peer_asn=64512,
                           local_asn=64513, router_id=ipaddress.IPv4Address("198.18.0.1"),
                           connect_retry=1.0)  # fmt: skip
    routes, replacement = host_routes(0, size), host_routes(size // 16, size)
    got: list[int] = []
    steps = LongestStep("BgpSession")
    gc.collect()
    gc.disable()
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_peer, listener, got)
            session = BgpSession(config, routes=routes)
            trio.lowlevel.add_instrument(steps)
            await nursery.start(session.run)
            await session.wait_synchronised()
            up = steps.longest
            steps.longest = 0.0
            session.set_routes(replacement)
            await trio.sleep(0)
            await session.wait_synchronised()
            trio.lowlevel.remove_instrument(steps)
            assert session.state is State.ESTABLISHED
            session.cancel()
    finally:
        gc.enable()
        listener.close()
    return up, steps.longest


def timed(fn: Callable[[], Any], repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.thread_time()
        fn()
        best = min(best, time.thread_time() - start)
    return best


def route_table(size: int) -> dict[str, float | None]:
    from speaker.announce import routes_for_peer
    from speaker.config import loads_config

    services = "".join(
        f'[[services]]\nname = "s{i}"\naddress = "198.19.{i // 256}.{i % 256}"\n'
        f'health = {{ tcp = "127.0.0.1:{1 + i % 60000}" }}\n'
        for i in range(size)
    )
    config = loads_config(
        '[speaker]\nmy_asn = 64513\nnode_name = "n"\n[[peers]]\nname = "p"\n'
        'peer_address = "198.18.0.2"\npeer_asn = 64512\n[[pools]]\nname = "big"\n'
        'addresses = ["198.19.0.0/16"]\n[[advertisements]]\nname = "hosts"\n' + services
    )
    healthy = frozenset(f"s{i}" for i in range(1, size))
    out: dict[str, float | None] = {
        "recompute": timed(lambda: routes_for_peer(config, "p", healthy), 1)
    }
    from speaker.plan import RouteFunction

    if not hasattr(RouteFunction, "build"):  # main before the route table
        return out | {"build_total": None, "build_slice": None, "health_change": None}
    steps = RouteFunction.build(config, {}, healthy=healthy)
    longest = total = 0.0
    gc.collect()
    gc.disable()  # the code's own slices (GC pauses: see docs/architecture.md)
    while True:
        start = time.thread_time()
        try:
            next(steps)
        except StopIteration as done:
            table: Any = done.value
            break
        finally:
            took = time.thread_time() - start
            longest, total = max(longest, took), total + took
    gc.enable()
    flip = [True, False]
    out |= {"build_total": total, "build_slice": longest}

    def flipped() -> bool:
        flip.reverse()
        return flip[0]

    out["health_change"] = timed(lambda: table.set_service("s0", flipped()), 5)
    return out


def receive() -> dict[str, float]:
    ctx = CodecContext(asn4=True)
    nh = NextHop(address=ipaddress.IPv4Address("198.18.0.1"))
    path: list[PathAttribute] = [OriginAttribute(value=0), AsPath.sequence(64512, 65000, 3356), nh]
    base = int(ipaddress.IPv4Address("198.18.0.0"))
    prefixes = [ipaddress.IPv4Network((base + (i << 8), 24)) for i in range(1009)]
    (update,) = pack_announcements(path, prefixes, ctx)
    body = encode_update_body(update, ctx)
    good = b"\x40\x01\x01\x00\x40\x02\x00\x40\x03\x04\xc6\x12\x00\x01"
    repeats = (4096 - 19 - 4 - len(good) - 5) // 3
    attributes = good + b"\x40\x01\x00" * repeats
    hostile = (
        b"\x00\x00" + struct.pack("!H", len(attributes)) + attributes + b"\x20\xc6\x12\x01\x01"
    )
    return {
        "full_update_1009_prefixes": timed(lambda: decode_update(body, ctx), 5),
        "hostile_update": timed(lambda: decode_update(hostile, ctx), 5),
    }


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.2f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.route_steps", description=__doc__)
    ap.add_argument("--sizes", default="4096,16384,65536")
    args = ap.parse_args(argv)
    print("| routes | session up: longest step ms | replace: longest step ms | "
          "recompute (main's per change) ms | table build ms (longest slice) | "
          "one health change ms |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|---:|")
    for size in (int(s) for s in args.sizes.split(",")):
        up, replace = trio.run(session_steps, size)
        table = route_table(size)
        print(f"| {size} | {ms(up)} | {ms(replace)} | {ms(table['recompute'])} | "
              f"{ms(table['build_total'])} ({ms(table['build_slice'])}) | "
              f"{ms(table['health_change'])} |", flush=True)  # fmt: skip
    decode = receive()
    full, hostile = ms(decode["full_update_1009_prefixes"]), ms(decode["hostile_update"])
    print(f"\ndecode one 4 KiB UPDATE of 1,009 /24s: {full} ms; "
          f"the hostile UPDATE (1,351 repeated ORIGINs): {hostile} ms")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
