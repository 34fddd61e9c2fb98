"""A hostile BGP peer for bench.scale_product: OPEN, KEEPALIVE, then a flood of
malformed UPDATEs (issue 11), as fast as TCP takes them.

    python -m bench.hostile_peer --listen 198.18.3.1 --asn 64515 --duration 120

It listens on port 179 (the speaker connects to it, as to any router), answers the
speaker's OPEN with its own (4-octet AS capability, IPv4 unicast) and a KEEPALIVE,
and from then on writes the same UPDATE over and over: 4,096 bytes holding a valid
ORIGIN, an empty AS_PATH, a NEXT_HOP, and 1,353 duplicate ORIGIN attributes of
length 0 (RFC 7606 §3 g: each duplicate is to be discarded), no NLRI. Whatever the
speaker sends is read and dropped. When the speaker closes the session it waits for
the next connection. It stops after ``--duration`` seconds (bounded like every lab
process) and prints one JSON line per connection and a final summary.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import socket
import struct
import sys
import threading
import time

MARKER = b"\xff" * 16
OPEN, UPDATE, KEEPALIVE = 1, 2, 4
MAX_MESSAGE = 4096
DUPLICATE_ORIGIN = bytes([0x40, 1, 0])  # well-known transitive ORIGIN, length 0


def message(kind: int, body: bytes) -> bytes:
    return MARKER + struct.pack("!HB", 19 + len(body), kind) + body


def open_message(asn: int, router_id: str, hold: int = 90) -> bytes:
    caps = bytes([1, 4, 0, 1, 0, 1])  # multiprotocol: IPv4 unicast
    caps += bytes([65, 4]) + struct.pack("!I", asn)  # 4-octet AS
    params = bytes([2, len(caps)]) + caps
    my_as = asn if asn <= 0xFFFF else 23456
    body = struct.pack("!BHH4sB", 4, my_as, hold, ipaddress.IPv4Address(router_id).packed,
                       len(params)) + params  # fmt: skip
    return message(OPEN, body)


def flood_update(next_hop: str) -> tuple[bytes, int]:
    """The 4,096-byte UPDATE and how many duplicate ORIGINs it holds."""
    first = bytes([0x40, 1, 1, 0]) + bytes([0x40, 2, 0])  # ORIGIN IGP, empty AS_PATH
    first += bytes([0x40, 3, 4]) + ipaddress.IPv4Address(next_hop).packed
    room = MAX_MESSAGE - 19 - 2 - 2 - len(first)
    count = room // len(DUPLICATE_ORIGIN)
    attrs = first + DUPLICATE_ORIGIN * count
    return message(UPDATE, struct.pack("!H", 0) + struct.pack("!H", len(attrs)) + attrs), count


def read_message(sock: socket.socket) -> tuple[int, bytes]:
    head = _read_exact(sock, 19)
    length, kind = struct.unpack("!HB", head[16:19])
    return kind, _read_exact(sock, length - 19)


def _read_exact(sock: socket.socket, n: int) -> bytes:
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed by the speaker")
        data += chunk
    return bytes(data)


def drain(sock: socket.socket) -> None:
    """Read and drop whatever the speaker sends, until it closes."""
    try:
        while sock.recv(65536):
            pass
    except OSError:
        pass


def serve(conn: socket.socket, args: argparse.Namespace, deadline: float) -> dict[str, object]:
    update, duplicates = flood_update(args.listen)
    batch = update * 16  # 64 KiB per write
    sent = 0
    started = time.monotonic()
    reason = "duration over"
    try:
        kind, _ = read_message(conn)
        if kind != OPEN:
            raise ConnectionError(f"first message type {kind}, not OPEN")
        conn.sendall(open_message(args.asn, args.router_id) + message(KEEPALIVE, b""))
        threading.Thread(target=drain, args=(conn,), daemon=True).start()
        while time.monotonic() < deadline:
            conn.sendall(batch)
            sent += 16
    except OSError as exc:  # the speaker closed or reset the session
        reason = str(exc) or type(exc).__name__
    finally:
        conn.close()
    return {"event": "connection", "updates_sent": sent, "duplicates_per_update": duplicates,
            "seconds": time.monotonic() - started, "ended": reason}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.hostile_peer", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--listen", required=True, help="IPv4 address to listen on (port 179)")
    ap.add_argument("--asn", type=int, default=64515)
    ap.add_argument("--router-id", help="BGP identifier (default: the listen address)")
    ap.add_argument("--duration", type=float, default=600.0, help="seconds before exiting")
    args = ap.parse_args(argv)
    args.router_id = args.router_id or args.listen
    deadline = time.monotonic() + args.duration
    total, connections = 0, 0
    with socket.create_server((args.listen, 179)) as server:
        print(json.dumps({"event": "listening", "address": args.listen}), flush=True)
        while time.monotonic() < deadline:
            server.settimeout(max(0.1, min(1.0, deadline - time.monotonic())))
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            connections += 1
            record = serve(conn, args, deadline)
            total += int(str(record["updates_sent"]))
            print(json.dumps(record), flush=True)
    print(json.dumps({"event": "done", "connections": connections, "updates_sent": total}),
          flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
