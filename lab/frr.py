"""FRR (zebra + bfdd, optionally bgpd) in a lab host.

Each instance has its own directory (owned by user ``frr``: FRR refuses to run as
root) holding configs, pid files, the zserv socket, vty sockets and bfdd's control
socket, so several instances never collide. vtysh talks to one daemon at a time
through ``--vty_socket DIR -d DAEMON``.

bgpd: FRR enables ``bgp ebgp-requires-policy`` by default (RFC 8212), which makes
an eBGP peer accept and send nothing. :func:`bgpd_config` turns it off.
"""

from __future__ import annotations

import functools
import json
import os
import pwd
import re
import socket
from collections.abc import Iterable, Sequence
from typing import Any

from lab.netns import Host
from lab.proc import LabError, Process, wait_until

DAEMON_DIR = "/usr/lib/frr"


def bfd_session_ifaces(config: str) -> set[str]:
    """Interfaces of the enabled single-hop ``peer`` blocks of a bfdd config."""
    out: set[str] = set()
    for block in re.split(r"^ peer ", config, flags=re.M)[1:]:
        head, *body = block.splitlines()
        words = head.split()
        # (in a VRF the socket is bound to the VRF's device, not the interface)
        if {"multihop", "vrf"} & set(words) or "interface" not in words or "  shutdown" in body:
            continue
        out.add(words[words.index("interface") + 1])
    return out


def bfd_peer_block(
    peer: str,
    *,
    local: str | None = None,
    interface: str | None = None,
    multihop: bool = False,
    tx: int = 300,
    rx: int = 300,
    mult: int = 3,
    passive: bool = False,
    echo: int | None = None,
    minimum_ttl: int | None = None,
    shutdown: bool = False,
) -> str:
    """A ``peer ...`` stanza for bfdd's ``bfd`` node. Intervals in ms."""
    head = f" peer {peer}"
    if multihop:
        head += " multihop"
    if local:
        head += f" local-address {local}"
    if interface and not multihop:
        head += f" interface {interface}"
    lines = [
        head,
        f"  detect-multiplier {mult}",
        f"  receive-interval {rx}",
        f"  transmit-interval {tx}",
    ]
    if passive:
        lines.append("  passive-mode")
    if echo is not None:
        lines += [
            "  echo-mode",
            f"  echo receive-interval {echo}",
            f"  echo transmit-interval {echo}",
        ]
    if minimum_ttl is not None:
        lines.append(f"  minimum-ttl {minimum_ttl}")
    lines.append("  shutdown" if shutdown else "  no shutdown")
    lines.append(" !")
    return "\n".join(lines) + "\n"


def bfdd_config(peers: Iterable[str]) -> str:
    return "bfd\n" + "".join(peers) + "!\n"


def bgpd_config(
    asn: int,
    router_id: str,
    neighbors: Sequence[str],
    *,
    networks4: Iterable[str] = (),
    networks6: Iterable[str] = (),
    extra: str = "",
) -> str:
    """A bgpd config. ``neighbors`` are ``neighbor ...`` lines (without indent).

    Every neighbor is activated in both unicast families; eBGP policy is not required.
    """
    lines = [
        f"router bgp {asn}",
        f" bgp router-id {router_id}",
        " no bgp ebgp-requires-policy",
        " no bgp network import-check",
        " no bgp default ipv4-unicast",
    ]
    peers = []
    for n in neighbors:
        lines.append(f" {n}")
        words = n.split()
        if words[0] == "neighbor" and words[2] == "remote-as" and words[1] not in peers:
            peers.append(words[1])
    for afi, nets in (("ipv4", list(networks4)), ("ipv6", list(networks6))):
        lines.append(f" address-family {afi} unicast")
        lines += [f"  network {n}" for n in nets]
        lines += [f"  neighbor {p} activate" for p in peers]
        lines.append(" exit-address-family")
    if extra:
        lines.append(extra)
    return "\n".join(lines) + "\n!\n"


class FRR:
    """zebra + bfdd (+ bgpd when a bgpd config is given) in ``host``."""

    def __init__(
        self,
        host: Host,
        *,
        bfdd: str | None = "",
        bgpd: str | None = None,
        name: str = "frr",
        debug: bool = False,
    ) -> None:
        self.host = host
        self.name = name
        self.dir = host.lab.dir / f"{host.name}-{name}"
        self.dir.mkdir(parents=True, exist_ok=True)
        frr = pwd.getpwnam("frr")
        os.chown(self.dir, frr.pw_uid, frr.pw_gid)
        header = f"hostname {host.name}\nlog file {self.dir}/frr.log\n"
        if debug:
            header += "debug bfd peer\ndebug bfd network\ndebug bgp neighbor-events\n"
        self.configs: dict[str, str] = {"zebra": header}
        if bfdd is not None:
            self.configs["bfdd"] = header + bfdd
        if bgpd is not None:
            self.configs["bgpd"] = header + bgpd
        self.procs: dict[str, Process] = {}

    def start(self, timeout: float = 15.0) -> FRR:
        frr = pwd.getpwnam("frr")
        for daemon in self.configs:  # zebra first: the others connect to it
            conf = self.dir / f"{daemon}.conf"
            conf.write_text(self.configs[daemon])
            os.chown(conf, frr.pw_uid, frr.pw_gid)
            argv = [
                f"{DAEMON_DIR}/{daemon}",
                "-f", str(conf),
                "-i", str(self.dir / f"{daemon}.pid"),
                "-z", str(self.dir / "zserv.api"),
                "--vty_socket", str(self.dir),
                "-A", "127.0.0.1", "-P", "0",
                "-u", "frr", "-g", "frr",
                "--log", f"file:{self.dir}/{daemon}.log",
            ]  # fmt: skip
            if daemon == "bfdd":
                argv += ["--bfdctl", str(self.dir / "bfdd.sock")]
            if daemon == "bgpd":
                argv += ["-p", "179"]
            self.procs[daemon] = self.host.popen(f"{self.name}-{daemon}", argv)
            wait_until(
                functools.partial(self._ready, daemon),
                timeout=timeout,
                what=f"FRR {daemon} in {self.host.name}",
            )
        return self

    def _ready(self, daemon: str) -> bool:
        self.procs[daemon].check_alive(f"FRR {daemon} in {self.host.name}")
        self.vtysh(daemon, "show version")
        return daemon != "bfdd" or self._bfd_sessions_enabled()

    def _bfd_sessions_enabled(self) -> bool:
        """Every single-hop session bound to an interface of this host has its socket.

        bfdd reads its config before zebra has told it about interfaces ("session-enable:
        specified interface ... doesn't exist") and enables those sessions when zebra
        does. A passive session that receives a packet in between goes to Init without
        a socket to answer from and stays there (bfdd 8.4: input counted once, output
        never): so a peer's packets must not be sent to a bfdd that is half started."""
        wanted = bfd_session_ifaces(self.configs.get("bfdd", ""))
        present = set(self.host.run("ip", "-o", "link", "show").stdout.split())
        wanted = {i for i in wanted if f"{i}:" in present or any(
            p.startswith(f"{i}@") for p in present)}  # fmt: skip
        if not wanted:
            return True
        pid = str(self.procs["bfdd"].pid)
        sockets = self.host.run("ss", "-uanpH").stdout.splitlines()
        bound = {line.split()[3].rsplit(":", 1)[0].partition("%")[2]
                 for line in sockets if f"pid={pid}," in line}  # fmt: skip
        return wanted <= bound

    def stop(self) -> None:
        for proc in reversed(list(self.procs.values())):
            proc.stop()

    def pid(self, daemon: str) -> int:
        return self.procs[daemon].pid

    # ---- vtysh -------------------------------------------------------------

    def vtysh(self, daemon: str, *commands: str, timeout: float = 10.0) -> str:
        argv = ["vtysh", "--vty_socket", str(self.dir), "-d", daemon]
        for c in commands:
            argv += ["-c", c]
        # vtysh needs no namespace: it reaches the daemon through its unix socket.
        cp = self.host.run(*argv, timeout=timeout, check=False)
        if cp.returncode != 0:
            raise LabError(
                f"vtysh -d {daemon} {commands}: {cp.stderr.strip() or cp.stdout.strip()}"
            )
        return cp.stdout

    def vty(self, daemon: str) -> Vty:
        """A connection to ``daemon``'s vty socket: ~0.3 ms a command instead of vtysh's
        ~30 ms (process start), for polling a RIB while timing a failover."""
        return Vty(self.dir / f"{daemon}.vty")

    def vtysh_json(self, daemon: str, command: str) -> Any:
        out = self.vtysh(daemon, command)
        return json.loads(out) if out.strip() else None

    def configure(self, daemon: str, *lines: str) -> None:
        """Apply config lines live (``configure terminal`` + lines)."""
        self.vtysh(daemon, "configure terminal", *lines)

    # ---- BFD ---------------------------------------------------------------

    def bfd_peers(self) -> list[dict[str, Any]]:
        return self.vtysh_json("bfdd", "show bfd peers json") or []

    def bfd_counters(self) -> list[dict[str, Any]]:
        return self.vtysh_json("bfdd", "show bfd peers counters json") or []

    def bfd_peer(self, peer: str) -> dict[str, Any] | None:
        for p in self.bfd_peers():
            if p.get("peer") == peer:
                return p
        return None

    def wait_bfd_status(self, peer: str, status: str, timeout: float = 10.0) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            p = self.bfd_peer(peer)
            return p if p is not None and p.get("status") == status else None

        return wait_until(
            probe, timeout=timeout, what=f"FRR {self.host.name}: BFD peer {peer} {status}"
        )

    # ---- BGP ---------------------------------------------------------------

    def bgp_summary(self) -> dict[str, Any]:
        return self.vtysh_json("bgpd", "show bgp summary json") or {}

    def bgp_neighbor(self, peer: str) -> dict[str, Any]:
        data = self.vtysh_json("bgpd", f"show bgp neighbor {peer} json") or {}
        found: dict[str, Any] = data.get(peer, {})
        return found

    def bgp_routes(self, family: str = "ipv4") -> dict[str, Any]:
        data = self.vtysh_json("bgpd", f"show bgp {family} unicast json") or {}
        found: dict[str, Any] = data.get("routes", {})
        return found

    def wait_bgp_state(self, peer: str, state: str = "Established", timeout: float = 30.0) -> None:
        wait_until(
            lambda: self.bgp_neighbor(peer).get("bgpState") == state,
            timeout=timeout,
            what=f"FRR {self.host.name}: BGP {peer} {state}",
        )


class Vty:
    """One FRR daemon's vty socket, spoken to as vtysh does: a command and a NUL out;
    the output back, ended by three NULs and a status byte (0: success)."""

    def __init__(self, path: os.PathLike[str] | str, timeout: float = 5.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(os.fspath(path))
        except OSError as exc:
            self.sock.close()
            raise LabError(f"vty {path}: {exc}") from exc

    def command(self, command: str) -> str:
        try:
            self.sock.sendall(command.encode() + b"\0")
            buf = b""
            while len(buf) < 4 or buf[-4:-1] != b"\0\0\0":
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise LabError(f"vty closed during {command!r}")
                buf += chunk
        except OSError as exc:
            raise LabError(f"vty {command!r}: {exc}") from exc
        out = buf[:-4].decode(errors="replace")
        if buf[-1] != 0:
            raise LabError(f"vty {command!r}: status {buf[-1]}: {out}")
        return out

    def json(self, command: str) -> Any:
        out = self.command(command)
        return json.loads(out) if out.strip() else None

    def close(self) -> None:
        self.sock.close()
