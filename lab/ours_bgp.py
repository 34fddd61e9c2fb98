"""Our BGP speaker in a lab host: ``python -m speaker.bgp`` with a query API.

:class:`OurBgp` runs one standalone session and reads its JSON-line reports (state
changes, NOTIFICATIONs, End-of-RIBs, statistics on SIGUSR1); ``set_routes`` rewrites
the routes file and sends SIGHUP. Stopped by PID like every lab process.
"""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from lab.netns import Host
from lab.ours import OurProcess


def vm_hwm_kb(pid: int) -> int:
    """Peak resident set size (VmHWM) of a process, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise LookupError(f"no VmHWM for {pid}")


class OurBgp(OurProcess):
    what = "our BGP"

    def __init__(
        self,
        host: Host,
        *,
        peer: str,
        peer_as: int,
        local_as: int,
        source: str | None = None,
        router_id: str | None = None,
        port: int = 179,
        password: str | None = None,
        hold: int = 90,
        multihop: int | None = None,
        gtsm: bool = False,
        passive: bool = False,
        connect_time: float = 3.0,
        connect_retry: float = 1.0,
        connect_retry_max: float = 10.0,
        routes: Iterable[str | dict[str, Any]] = (),
        announce_range: str | None = None,
        keep_adj_rib_in: bool = False,
        name: str = "bgp",
        extra: Iterable[str] = (),
        debug: bool = False,
    ) -> None:
        super().__init__(host, name)
        self.routes_path = host.lab.dir / f"{host.name}-{name}-routes.json"
        self.routes_path.write_text(json.dumps(list(routes)))
        argv = [
            sys.executable, "-m", "speaker.bgp", "--name", name, "--peer", peer,
            "--peer-as", str(peer_as), "--local-as", str(local_as), "--port", str(port),
            "--hold", str(hold), "--connect-time", str(connect_time),
            "--connect-retry", str(connect_retry), "--connect-retry-max", str(connect_retry_max),
            "--routes-file", str(self.routes_path),
        ]  # fmt: skip
        if source:
            argv += ["--source", source]
        if router_id:
            argv += ["--router-id", router_id]
        if password is not None:
            argv += ["--password", password]
        if multihop is not None:
            argv += ["--multihop", str(multihop)]
        if gtsm:
            argv.append("--gtsm")
        if passive:
            argv.append("--passive")
        if announce_range:
            argv += ["--announce-range", announce_range]
        if keep_adj_rib_in:
            argv.append("--keep-adj-rib-in")
        if debug:
            argv.append("--debug")
        argv += list(extra)
        self.argv = argv

    def start(self, timeout: float = 20.0) -> OurBgp:
        self._launch(self.argv, lambda: bool(self.events("started")), timeout)
        return self

    def peak_rss_kb(self) -> int:
        return vm_hwm_kb(self.pid)

    def log_text(self) -> str:
        assert self.proc is not None
        return self.proc.log_path.read_text(errors="replace")

    def state(self) -> str:
        states = self.states()
        return states[-1]["new"] if states else "Idle"

    def wait_state(self, new: str, *, after: int = 0, timeout: float = 30.0) -> dict[str, Any]:
        """The first state change to ``new`` (e.g. "Established")."""
        return super().wait_state(new, after=after, timeout=timeout)

    def stats(self, timeout: float = 10.0) -> dict[str, Any]:
        return super().stats(timeout)

    def set_routes(self, routes: Iterable[str | dict[str, Any]], timeout: float = 10.0) -> None:
        """Replace the announced routes (``--announce`` strings or objects) via SIGHUP."""
        self.routes_path.write_text(json.dumps(list(routes)))
        self._signal_and_wait(signal.SIGHUP, "routes", timeout)
