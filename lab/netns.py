"""Hosts as network namespaces joined by veth pairs, on benchmarking addresses only.

Addressing (RFC 2544 / RFC 5180 ranges, nothing else):

* link ``k`` (1-based, in the order links are given) is 198.18.k.0/24 and 2001:2:0:k::/64;
  its first host gets ``.1`` / ``::1``, its second ``.2`` / ``::2``;
* host ``i`` (1-based, in the order hosts are given) has the loopback address
  198.18.0.i/32 and 2001:2::i/128, reachable from every directly linked host through
  a static route (multihop BFD and eBGP multihop use these).

In host ``a`` the interface towards host ``b`` is named ``to-b``.

Namespace names carry the owning process ID (``sl<pid>-<n>-<host>``), so a later
run can tell a leftover of a dead run from a lab that is in use, and sweep it.
"""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import os
import re
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from lab.proc import REGISTRY, LabError, Process, run

LAB_ROOT = Path(os.environ.get("LAB_DIR", "/tmp/speaker-lab"))
NS_PATTERN = re.compile(r"^sl(\d+)-(\d+)-([a-z0-9]+)$")
_counter = itertools.count(1)


class Host:
    """One network namespace."""

    def __init__(self, lab: Lab, name: str, index: int) -> None:
        self.lab = lab
        self.name = name
        self.index = index
        self.ns = f"{lab.prefix}-{name}"
        self.lo4 = ipaddress.IPv4Address(f"198.18.0.{index}")
        self.lo6 = ipaddress.IPv6Address(f"2001:2::{index:x}")
        # peer host name -> (iface, own v4, own v6, peer v4, peer v6)
        self.links: dict[str, Link] = {}

    def exec_argv(self, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.ns, *argv]

    def run(
        self, *argv: str, check: bool = True, timeout: float = 20.0, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return run(self.exec_argv(argv), check=check, timeout=timeout, input=input)

    def popen(self, name: str, argv: Sequence[str], env: dict[str, str] | None = None) -> Process:
        """Start a long-running process in this namespace; the lab stops it by PID."""
        proc = Process(
            f"{self.name}/{name}",
            self.exec_argv(argv),
            self.lab.dir / f"{self.name}-{name}.log",
            env,
        )
        self.lab.processes.append(proc)
        return proc

    def iface(self, peer: str) -> str:
        return f"to-{peer}"

    def addr4(self, peer: str) -> ipaddress.IPv4Address:
        """This host's IPv4 address on its link to ``peer``."""
        return self.links[peer].addr4(self.name)

    def addr6(self, peer: str) -> ipaddress.IPv6Address:
        return self.links[peer].addr6(self.name)

    def sysctl(self, key: str, value: str) -> None:
        self.run("sysctl", "-qw", f"{key}={value}")

    def __repr__(self) -> str:
        return f"<Host {self.name} ns={self.ns}>"


class Link:
    """A veth pair between two hosts."""

    def __init__(self, a: Host, b: Host, index: int) -> None:
        self.a, self.b, self.index = a, b, index
        self.net4 = ipaddress.IPv4Network(f"198.18.{index}.0/24")
        self.net6 = ipaddress.IPv6Network(f"2001:2:0:{index:x}::/64")

    def _nth(self, host: str) -> int:
        if host == self.a.name:
            return 1
        if host == self.b.name:
            return 2
        raise LabError(f"{host} is not on link {self.a.name}-{self.b.name}")

    def addr4(self, host: str) -> ipaddress.IPv4Address:
        return self.net4.network_address + self._nth(host)

    def addr6(self, host: str) -> ipaddress.IPv6Address:
        return self.net6.network_address + self._nth(host)


class Lab:
    """A set of namespaces and links, plus everything started in them.

    Use :meth:`create` (or :func:`default_lab`) and always :meth:`close`; the pytest
    fixture and ``with Lab.create(...)`` do that for you.
    """

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.dir = LAB_ROOT / prefix
        self.hosts: dict[str, Host] = {}
        self.links: list[Link] = []
        self.processes: list[Process] = []
        self.closed = False

    @classmethod
    def create(
        cls,
        hosts: Sequence[str],
        links: Sequence[tuple[str, str]],
        *,
        routers: Sequence[str] = (),
    ) -> Lab:
        sweep_leftovers()
        lab = cls(f"sl{os.getpid()}-{next(_counter)}")
        lab.dir.mkdir(parents=True, exist_ok=True)
        try:
            lab._build(hosts, links, routers)
        except BaseException:
            lab.close()
            raise
        return lab

    def _build(
        self, hosts: Sequence[str], links: Sequence[tuple[str, str]], routers: Sequence[str]
    ) -> None:
        for i, name in enumerate(hosts, start=1):
            if not re.fullmatch(r"[a-z][a-z0-9]{0,9}", name):
                raise LabError(f"host name {name!r}: use 1-10 lowercase letters/digits")
            host = Host(self, name, i)
            run(["ip", "netns", "add", host.ns])
            self.hosts[name] = host
            host.run("ip", "link", "set", "lo", "up")
            host.run("ip", "addr", "add", f"{host.lo4}/32", "dev", "lo")
            host.run("ip", "-6", "addr", "add", f"{host.lo6}/128", "dev", "lo", "nodad")
            # Replies must leave the way requests came; no reverse-path surprises.
            host.sysctl("net.ipv4.conf.all.rp_filter", "0")
            host.sysctl("net.ipv4.conf.default.rp_filter", "0")
        for k, (a_name, b_name) in enumerate(links, start=1):
            a, b = self.hosts[a_name], self.hosts[b_name]
            link = Link(a, b, k)
            self.links.append(link)
            a.links[b.name] = link
            b.links[a.name] = link
            run([
                "ip", "link", "add", a.iface(b.name), "netns", a.ns, "type", "veth",
                "peer", "name", b.iface(a.name), "netns", b.ns,
            ])  # fmt: skip
            for host, peer in ((a, b), (b, a)):
                dev = host.iface(peer.name)
                host.run("ip", "addr", "add", f"{link.addr4(host.name)}/24", "dev", dev)
                host.run(
                    "ip", "-6", "addr", "add", f"{link.addr6(host.name)}/64", "dev", dev, "nodad"
                )
                host.run("ip", "link", "set", dev, "up")
                host.run("ip", "route", "add", f"{peer.lo4}/32", "via", str(link.addr4(peer.name)))
                host.run(
                    "ip", "-6", "route", "add", f"{peer.lo6}/128", "via", str(link.addr6(peer.name))
                )
        for name in routers:
            host = self.hosts[name]
            host.sysctl("net.ipv4.ip_forward", "1")
            host.sysctl("net.ipv6.conf.all.forwarding", "1")
        # IPv6 link-local addresses need a moment even without DAD on global ones.
        for host in self.hosts.values():
            wait_no_tentative(host)

    def __getitem__(self, name: str) -> Host:
        return self.hosts[name]

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop every process started here (by PID), then delete the namespaces."""
        if self.closed:
            return
        self.closed = True
        for proc in reversed(self.processes):
            proc.stop()
        for host in self.hosts.values():
            _delete_namespace(host.ns)
        # Directory stays for post-mortem reading unless the run asked otherwise.
        if os.environ.get("LAB_CLEAN_DIR") == "1":
            shutil.rmtree(self.dir, ignore_errors=True)

    def detach(self) -> None:
        """Leave everything running after this process exits (for inspection).

        The namespaces then belong to a dead run: ``python -m lab sweep`` (or the next
        lab run) deletes them and the processes inside, by the PIDs the kernel lists
        for each namespace.
        """
        for proc in self.processes:
            REGISTRY.pop(proc.pid, None)
        self.closed = True

    def describe(self) -> str:
        """A few lines telling a human how to poke at this lab."""
        lines = [f"lab {self.prefix} (files in {self.dir}):"]
        for host in self.hosts.values():
            addrs = ", ".join(
                f"{host.iface(p)} {host.addr4(p)} {host.addr6(p)}" for p in host.links
            )
            lines.append(
                f"  {host.name}: ip netns exec {host.ns} bash   # lo {host.lo4} {host.lo6}; {addrs}"
            )
        for proc in self.processes:
            lines.append(f"  {proc!r} log {proc.log_path}")
        return "\n".join(lines)


def wait_no_tentative(host: Host, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = host.run("ip", "-6", "addr", "show", "tentative").stdout
        if not out.strip():
            return
        time.sleep(0.05)
    raise LabError(f"{host.name}: IPv6 addresses still tentative after {timeout}s")


def default_lab() -> Lab:
    """``spk`` linked to two routers: link 1 is rtr1-spk, link 2 is rtr2-spk.

    rtr1: 198.18.1.1 / 2001:2:0:1::1, spk on it 198.18.1.2 / 2001:2:0:1::2;
    rtr2: 198.18.2.1 / 2001:2:0:2::1, spk on it 198.18.2.2 / 2001:2:0:2::2.
    """
    return Lab.create(
        hosts=["spk", "rtr1", "rtr2"],
        links=[("rtr1", "spk"), ("rtr2", "spk")],
        routers=["rtr1", "rtr2"],
    )


def lab_namespaces() -> list[str]:
    out = run(["ip", "netns", "list"]).stdout
    names = [line.split()[0] for line in out.splitlines() if line.strip()]
    return [n for n in names if NS_PATTERN.match(n)]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _delete_namespace(ns: str) -> None:
    # Safety net for anything the namespace still holds (a daemon's forked child, say):
    # these PIDs are read from this very namespace, never matched by name.
    pids = run(["ip", "netns", "pids", ns], check=False).stdout.split()
    for pid in pids:
        if int(pid) in REGISTRY:
            continue
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), 9)
    run(["ip", "netns", "del", ns], check=False)


def owner_alive(ns: str) -> bool:
    """Whether the process that created lab namespace ``ns`` still runs."""
    m = NS_PATTERN.match(ns)
    return m is not None and _pid_alive(int(m.group(1)))


def sweep_leftovers() -> list[str]:
    """Delete namespaces left by lab runs whose process is gone. Returns their names."""
    swept = []
    for ns in lab_namespaces():
        m = NS_PATTERN.match(ns)
        assert m is not None
        owner = int(m.group(1))
        if owner != os.getpid() and not _pid_alive(owner):
            _delete_namespace(ns)
            swept.append(ns)
    return swept


def own_namespaces() -> list[str]:
    """Namespaces created by this process that still exist."""
    mine = f"sl{os.getpid()}-"
    return [ns for ns in lab_namespaces() if ns.startswith(mine)]
