"""Packet capture on a lab interface: dumpcap to write, tshark to decode.

    cap = Capture(lab["rtr1"], "to-spk", "udp port 3784").start()
    ...                                   # make things happen
    cap.stop()
    for p in cap.packets(BFD_FIELDS):     # dicts: {"time": wall-clock float, field: value}
        ...

Timestamps are the kernel's receive/transmit stamps on the veth (wall clock), which
is the clock :class:`lab.faults.Fault` reports as ``t_wall``. The pcapng file stays in
the lab directory; ``tshark -r FILE -V`` shows it in full.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lab.netns import Host
from lab.proc import Process, run, wait_until

BFD_FIELDS = (
    "ip.src", "ipv6.src", "ip.dst", "ipv6.dst", "ip.ttl", "ipv6.hlim", "udp.srcport",
    "udp.dstport", "bfd.sta", "bfd.diag", "bfd.flags.p", "bfd.flags.f", "bfd.flags.a",
    "bfd.flags.d", "bfd.detect_time_multiplier", "bfd.my_discriminator",
    "bfd.your_discriminator", "bfd.desired_min_tx_interval", "bfd.required_min_rx_interval",
    "bfd.required_min_echo_interval", "bfd.auth.type",
)  # fmt: skip
BGP_FIELDS = (
    "ip.src", "ipv6.src", "ip.dst", "ipv6.dst", "tcp.srcport", "tcp.dstport", "tcp.flags.fin",
    "tcp.flags.reset", "bgp.type", "bgp.notify.major_error", "bgp.notify.minor_error",
    "bgp.notify.minor_error_cease", "bgp.notify.minor_error_open",
    "bgp.notify.minor_error_update", "bgp.notify.communication",
)  # fmt: skip

BFD_STATES = {0: "AdminDown", 1: "Down", 2: "Init", 3: "Up"}


class Capture:
    def __init__(self, host: Host, iface: str, capture_filter: str = "", *, name: str = "") -> None:
        self.host = host
        self.iface = iface
        self.filter = capture_filter
        tag = name or f"{iface}-{id(self):x}"
        self.path: Path = host.lab.dir / f"{host.name}-{tag}.pcapng"
        self.proc: Process | None = None

    def start(self, timeout: float = 10.0) -> Capture:
        argv = ["dumpcap", "-i", self.iface, "-w", str(self.path)]
        if self.filter:
            argv += ["-f", self.filter]
        self.proc = self.host.popen(f"dumpcap-{self.path.stem}", argv)
        proc = self.proc

        def ready() -> bool:
            proc.check_alive(f"dumpcap on {self.host.name}/{self.iface}")
            return "Capturing on" in proc.log_tail(50)

        wait_until(ready, timeout=timeout, what=f"dumpcap on {self.host.name}/{self.iface}")
        return self

    def stop(self, settle: float = 0.5) -> Path:
        """Stop after ``settle`` seconds, then SIGINT (dumpcap flushes and closes it).

        dumpcap reads the kernel's ring in blocks that are handed over when full or
        250 ms after their first packet (libpcap's TPACKET_V3 timeout), and on SIGINT
        it drops a block not yet handed over: packets of the last 250 ms before the
        signal may never reach the file (measured: 0 of 2 kept at 50 ms, 2 of 2 from
        250 ms). ``settle`` covers that with room for a loaded machine."""
        if self.proc is not None and self.proc.alive():
            time.sleep(settle)
            self.proc.stop(sig=2)
        return self.path

    def __enter__(self) -> Capture:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def packets(self, fields: Sequence[str], display_filter: str = "") -> list[dict[str, Any]]:
        """Decode the capture; each packet is ``{"time": float, "<field>": value}``.

        Numeric fields come back as ints (tshark prints some as hex), others as str;
        a field that occurs several times in a packet gives a list.
        """
        return decode(self.path, fields, display_filter)


def decode(
    path: Path, fields: Sequence[str], display_filter: str = "", *, ints: bool = True
) -> list[dict[str, Any]]:
    """Decode ``path`` with tshark. With ``ints``, decimal and 0x-hex values become ints."""
    argv = ["tshark", "-n", "-r", str(path), "-T", "json", "-e", "frame.time_epoch"]
    for f in fields:
        argv += ["-e", f]
    if display_filter:
        argv += ["-Y", display_filter]
    out = run(argv, timeout=120.0).stdout
    result = []
    for pkt in json.loads(out or "[]"):
        layers = pkt["_source"]["layers"]
        row: dict[str, Any] = {"time": float(layers.pop("frame.time_epoch")[0])}
        for key, raw in layers.items():
            values = [_int_or_str(v) for v in raw] if ints else raw
            row[key] = values[0] if len(values) == 1 else values
        result.append(row)
    return result


def _int_or_str(value: str) -> int | str:
    if _INT.fullmatch(value):
        return int(value, 0)
    return value


_INT = re.compile(r"0x[0-9a-fA-F]+|-?[0-9]+")
