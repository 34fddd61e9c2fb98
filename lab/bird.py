"""BIRD 2 in a lab host, with its own control socket.

BIRD 2.0 takes BFD session options per interface pattern (or the ``multihop`` block),
not per ``neighbor``; :func:`bfd_protocol` writes one interface block per neighbor.
BIRD's BFD is the lab's reference for RFC 5880 authentication (all five types).

As a BGP speaker (bench/bgp_throughput.py): :func:`static_protocol` holds the routes,
:func:`bgp_protocol` exports them. Seen with 2.0.12: the last batch of a big export
(a multiple of 256 routes) often goes out about 3 s after the rest, unless something
(a birdc command) wakes BIRD's main loop first.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Iterable

import attrs

from lab.netns import Host
from lab.proc import Daemon, LabError, Process, wait_until

AUTH_TYPES = {
    "simple": "simple",
    "keyed-md5": "keyed md5",
    "meticulous-keyed-md5": "meticulous keyed md5",
    "keyed-sha1": "keyed sha1",
    "meticulous-keyed-sha1": "meticulous keyed sha1",
}


@attrs.frozen(kw_only=True)
class BfdNeighbor:
    address: str
    local: str
    interface: str | None = None  # None: multihop
    interval_ms: int = 300
    min_rx_ms: int | None = None
    min_tx_ms: int | None = None
    multiplier: int = 3
    passive: bool = False
    auth: str | None = None  # a key of AUTH_TYPES
    password: str = ""
    key_id: int = 1


def bfd_protocol(neighbors: Iterable[BfdNeighbor], name: str = "bfd1") -> str:
    ifaces: list[str] = []
    lines = [f"protocol bfd {name} {{"]
    for n in neighbors:
        opts = [
            f"interval {n.interval_ms} ms;",
            f"multiplier {n.multiplier};",
            "idle tx interval 1000 ms;",
        ]
        if n.min_rx_ms is not None:
            opts.append(f"min rx interval {n.min_rx_ms} ms;")
        if n.min_tx_ms is not None:
            opts.append(f"min tx interval {n.min_tx_ms} ms;")
        if n.passive:
            opts.append("passive on;")
        if n.auth is not None:
            opts.append(f"authentication {AUTH_TYPES[n.auth]};")
            opts.append(f'password "{n.password}" {{ id {n.key_id}; }};')
        body = " ".join(opts)
        if n.interface is None:
            lines.append(f"  multihop {{ {body} }};")
            lines.append(f"  neighbor {n.address} local {n.local} multihop;")
        else:
            if n.interface not in ifaces:
                ifaces.append(n.interface)
                lines.append(f'  interface "{n.interface}" {{ {body} }};')
            lines.append(f'  neighbor {n.address} dev "{n.interface}" local {n.local};')
    lines.append("}")
    return "\n".join(lines) + "\n"


def static_protocol(
    routes: Iterable[str], *, family: str = "ipv6", name: str = "static1", kind: str = "blackhole"
) -> str:
    """A ``protocol static`` in the ``family`` channel holding ``routes`` (prefixes) as
    ``route PREFIX blackhole;`` (into the master table, from where BGP exports them)."""
    body = "".join(f"  route {prefix} {kind};\n" for prefix in routes)
    return f"protocol static {name} {{\n  {family};\n{body}}}\n"


def bgp_protocol(
    *,
    local: str,
    local_as: int,
    neighbor: str,
    peer_as: int,
    family: str = "ipv6",
    name: str = "bgp1",
    export: str = "all",
    import_: str = "none",
    hold_time: int = 90,
    start_delay: int = 1,
    extra: str = "",
) -> str:
    """A ``protocol bgp`` with one ``family`` channel. BIRD waits ``start delay time``
    (default 5 s) before its first connection attempt; 1 s here keeps tests short.
    ``extra``: more statements (``bfd on;``, ``password "...";``, ``multihop 2;``)."""
    return (
        f"protocol bgp {name} {{\n"
        f"  local {local} as {local_as};\n"
        f"  neighbor {neighbor} as {peer_as};\n"
        f"  hold time {hold_time};\n"
        f"  start delay time {start_delay};\n"
        f"  connect delay time {start_delay};\n"
        + "".join(f"  {line}\n" for line in extra.splitlines() if line.strip())
        + f"  {family} {{ import {import_}; export {export}; }};\n"
        "}\n"
    )


class Bird(Daemon):
    """A bird daemon in ``host``; ``birdc`` through its own control socket."""

    def __init__(self, host: Host, *, router_id: str, config: str, name: str = "bird") -> None:
        self.host = host
        self.name = name
        self.socket = host.lab.dir / f"{host.name}-{name}.ctl"
        self.config_path = host.lab.dir / f"{host.name}-{name}.conf"
        self.config_path.write_text(
            f'log "{host.lab.dir}/{host.name}-{name}.birdlog" all;\n'
            f"router id {router_id};\nprotocol device {{ }}\n" + config
        )
        self.proc: Process | None = None

    def start(self, timeout: float = 10.0) -> Bird:
        # Parse check first, for a clear error (a big config takes a while: same bound).
        self.host.run("bird", "-p", "-c", str(self.config_path), timeout=max(20.0, timeout))
        self.proc = self.host.popen(
            self.name,
            ["bird", "-f", "-c", str(self.config_path), "-s", str(self.socket),
             "-P", str(self.host.lab.dir / f"{self.host.name}-{self.name}.pid")],
        )  # fmt: skip
        proc = self.proc

        def ready() -> bool:
            proc.check_alive(f"bird in {self.host.name}")
            return "BIRD" in self.birdc("show status")

        wait_until(ready, timeout=timeout, what=f"bird in {self.host.name}")
        return self

    def birdc(self, *command: str) -> str:
        cp = self.host.run("birdc", "-s", str(self.socket), *command, check=False, timeout=10.0)
        if cp.returncode != 0:
            raise LabError(f"birdc {' '.join(command)}: {cp.stderr.strip() or cp.stdout.strip()}")
        return cp.stdout

    def control(self) -> BirdControl:
        """A connection to the control socket: ~0.3 ms a command instead of birdc's
        process start, for polling a table while timing a failover."""
        return BirdControl(self.socket)

    def protocols_all(self) -> str:
        return self.birdc("show", "protocols", "all")

    def bfd_sessions(self, protocol: str = "bfd1") -> dict[str, dict[str, str]]:
        """``show bfd sessions`` parsed: ``{address: {"interface", "state", "since",
        "interval", "timeout"}}``."""
        out = self.birdc("show", "bfd", "sessions", protocol)
        sessions: dict[str, dict[str, str]] = {}
        for line in out.splitlines():
            m = re.match(
                r"^\s*(\S+)\s+(\S+)\s+(Up|Down|Init|AdminDown)\s+(.+?)\s+(\S+)\s+(\S+)\s*$", line
            )
            if m:
                addr, iface, state, since, interval, timeout = m.groups()
                sessions[addr] = {
                    "interface": iface,
                    "state": state,
                    "since": since,
                    "interval": interval,
                    "timeout": timeout,
                }
        return sessions

    def wait_bfd_state(self, address: str, state: str, timeout: float = 10.0) -> dict[str, str]:
        def probe() -> dict[str, str] | None:
            s = self.bfd_sessions().get(address)
            return s if s is not None and s["state"] == state else None

        return wait_until(
            probe, timeout=timeout, what=f"bird {self.host.name}: BFD {address} {state}"
        )


class BirdControl:
    """BIRD's control socket, as birdc speaks it: a command line out; reply lines
    ``DDDD-text`` (more follow), `` text`` (continuation) and ``DDDD text`` (the last;
    0000 is success, 8xxx/9xxx errors)."""

    def __init__(self, path: os.PathLike[str] | str, timeout: float = 5.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.buf = b""
        try:
            self.sock.connect(os.fspath(path))
            self._reply()  # 0001 BIRD x.y.z ready.
        except OSError as exc:
            self.sock.close()
            raise LabError(f"bird control {path}: {exc}") from exc

    def _reply(self) -> tuple[int, str]:
        lines: list[str] = []
        while True:
            while b"\n" not in self.buf:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise LabError("bird control socket closed")
                self.buf += chunk
            raw, self.buf = self.buf.split(b"\n", 1)
            line = raw.decode(errors="replace")
            lines.append(line[5:] if line[:4].isdigit() else line[1:])
            if line[:4].isdigit() and line[4:5] == " ":
                return int(line[:4]), "\n".join(lines)

    def command(self, command: str) -> tuple[int, str]:
        """(the last line's code, the reply's text)."""
        try:
            self.sock.sendall(command.encode() + b"\n")
            return self._reply()
        except OSError as exc:
            raise LabError(f"bird control {command!r}: {exc}") from exc

    def close(self) -> None:
        self.sock.close()
