"""ExaBGP 5 (the ``exabgp`` pip package, in the project's virtualenv) in a lab host.

One ``exabgp server CONFIG`` per instance, started and stopped by PID. It needs
nothing from /etc or /run: its environment file (``exabgp.env``, INI sections as
``exabgp env`` prints them) is written to the lab directory and passed through
``EXABGP_ENVFILE``; it runs as root (no privilege drop to ``nobody``), logs to stdout
(the lab's log file), creates no CLI named pipes and does not listen (``tcp.bind``
empty: it only connects out, so it never competes for port 179 in its namespace).

ExaBGP has no query API here; :class:`ExaBGP` is checked from the peer's side (the
gobgpd or FRR it talks to). :func:`neighbor_block` writes a ``neighbor`` with routes in
its ``static`` section.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterable
from pathlib import Path

from lab.netns import Host
from lab.proc import Daemon, LabError, Process, wait_until

ENV = {
    "exabgp.daemon": {"user": "'root'", "drop": "false", "daemonize": "false", "pid": "''"},
    "exabgp.log": {"destination": "'stdout'", "level": "INFO"},
    "exabgp.api": {"cli": "false"},
    "exabgp.tcp": {"bind": "''"},
}


def exabgp_path() -> str | None:
    """The ``exabgp`` next to this interpreter (the virtualenv), else on PATH."""
    here = Path(sys.executable).parent / "exabgp"
    if here.is_file():
        return str(here)
    return shutil.which("exabgp")


def neighbor_block(
    peer: str,
    *,
    local_address: str,
    local_as: int,
    peer_as: int,
    router_id: str,
    routes: Iterable[str] = (),
    family: str = "ipv6",
    hold_time: int = 90,
) -> str:
    """A ``neighbor`` announcing ``routes`` (prefixes) with ``next-hop self``."""
    lines = [
        f"neighbor {peer} {{",
        f"  router-id {router_id};",
        f"  local-address {local_address};",
        f"  local-as {local_as};",
        f"  peer-as {peer_as};",
        f"  hold-time {hold_time};",
        f"  family {{ {family} unicast; }}",
        "  static {",
    ]
    lines += [f"    route {prefix} next-hop self;" for prefix in routes]
    lines += ["  }", "}"]
    return "\n".join(lines) + "\n"


class ExaBGP(Daemon):
    """An ``exabgp server`` in ``host``: ``start()``, ``stop()`` (by PID)."""

    def __init__(self, host: Host, *, config: str, name: str = "exabgp") -> None:
        exe = exabgp_path()
        if exe is None:
            raise LabError("exabgp not installed (pip install 'exabgp>=5' in the virtualenv)")
        self.exe = exe
        self.host = host
        self.name = name
        self.config_path = host.lab.dir / f"{host.name}-{name}.conf"
        self.config_path.write_text(config)
        self.env_path = host.lab.dir / f"{host.name}-{name}.env"
        self.env_path.write_text(
            "".join(
                f"[{section}]\n" + "".join(f"{k} = {v}\n" for k, v in opts.items()) + "\n"
                for section, opts in ENV.items()
            )
        )
        self.proc: Process | None = None

    def start(self, timeout: float = 30.0) -> ExaBGP:
        """Start; ready once the configuration is loaded (ExaBGP then connects out).

        ``timeout`` bounds the configuration parse, which is slow for many routes
        (ExaBGP parses route by route in Python)."""
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "EXABGP_ENVFILE": str(self.env_path)}
        self.proc = self.host.popen(self.name, [self.exe, "server", str(self.config_path)], env=env)
        proc = self.proc

        def ready() -> bool:
            proc.check_alive(f"exabgp in {self.host.name}")
            return "loaded new configuration successfully" in self.log_text()

        wait_until(ready, timeout=timeout, interval=0.1, what=f"exabgp in {self.host.name}")
        return self

    def log_text(self) -> str:
        assert self.proc is not None
        return self.proc.log_path.read_text(errors="replace")
