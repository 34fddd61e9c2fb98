"""GoBGP (gobgpd + the gobgp CLI) in a lab host.

The daemon gets its own TOML config and gRPC API port, bound to 127.0.0.1 inside
the namespace; the CLI runs in the same namespace. GoBGP 3.x's JSON: in
``gobgp neighbor -j`` ``state.session_state`` is an integer (6 = established).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from lab.netns import Host
from lab.proc import Daemon, Process, wait_until

ESTABLISHED = 6

# GoBGP 3.x encodes session_state as an integer in JSON.
SESSION_STATES = {
    0: "unknown", 1: "idle", 2: "connect", 3: "active",
    4: "opensent", 5: "openconfirm", 6: "established",
}  # fmt: skip


def neighbor_toml(
    address: str,
    peer_as: int,
    *,
    passive: bool = True,
    password: str | None = None,
    local_address: str | None = None,
    multihop_ttl: int | None = None,
    families: Iterable[str] = (),
    hold_time: int | None = None,
    keepalive: int | None = None,
    connect_retry: int = 1,
    extra: str = "",
) -> str:
    """One ``[[neighbors]]`` block. ``families`` like ``"ipv4-unicast"``, ``"ipv6-unicast"``."""
    out = [
        "[[neighbors]]",
        "  [neighbors.config]",
        f'    neighbor-address = "{address}"',
        f"    peer-as = {peer_as}",
    ]
    if password is not None:
        out.append(f'    auth-password = "{password}"')
    out += ["  [neighbors.transport.config]", f"    passive-mode = {str(passive).lower()}"]
    if local_address:
        out.append(f'    local-address = "{local_address}"')
    out += ["  [neighbors.timers.config]", f"    connect-retry = {connect_retry}"]
    if hold_time is not None:
        out.append(f"    hold-time = {hold_time}")
    if keepalive is not None:
        out.append(f"    keepalive-interval = {keepalive}")
    if multihop_ttl is not None:
        out += [
            "  [neighbors.ebgp-multihop.config]",
            "    enabled = true",
            f"    multihop-ttl = {multihop_ttl}",
        ]
    for fam in families:
        out += [
            "  [[neighbors.afi-safis]]",
            "    [neighbors.afi-safis.config]",
            f'      afi-safi-name = "{fam}"',
        ]
    if extra:
        out.append(extra)
    return "\n".join(out) + "\n"


class GoBGP(Daemon):
    """A gobgpd in ``host``: ``start()``, query, ``stop()`` (by PID)."""

    def __init__(
        self,
        host: Host,
        *,
        asn: int,
        router_id: str,
        neighbors: str = "",
        api_port: int = 50051,
        listen_port: int = 179,
        name: str = "gobgpd",
    ) -> None:
        self.host = host
        self.asn = asn
        self.router_id = router_id
        self.api_port = api_port
        self.name = name
        self.config_path = host.lab.dir / f"{host.name}-{name}.toml"
        self.config_path.write_text(
            "[global.config]\n"
            f"  as = {asn}\n"
            f'  router-id = "{router_id}"\n'
            f"  port = {listen_port}\n\n" + neighbors
        )
        self.proc: Process | None = None

    def start(self, timeout: float = 15.0) -> GoBGP:
        self.proc = self.host.popen(
            self.name,
            [
                "gobgpd", "-f", str(self.config_path), "-t", "toml", "-p",
                "--api-hosts", f"127.0.0.1:{self.api_port}", "--pprof-disable",
            ],
        )  # fmt: skip
        wait_until(self._ready, timeout=timeout, what=f"gobgpd in {self.host.name}")
        return self

    def _ready(self) -> bool:
        if self.proc is not None:
            self.proc.check_alive(f"gobgpd in {self.host.name}")
        self.cli("global", check_json=False)
        return True

    def cli(self, *args: str, check_json: bool = True) -> Any:
        """Run ``gobgp -p PORT ARGS -j`` in the namespace; return parsed JSON."""
        argv = ["gobgp", "-p", str(self.api_port), *args]
        if check_json:
            argv.append("-j")
        out = self.host.run(*argv, timeout=10.0).stdout
        if not check_json:
            return out
        return json.loads(out) if out.strip() else None

    # ---- queries -----------------------------------------------------------

    def rib(self, family: str = "ipv4") -> dict[str, list[dict[str, Any]]]:
        """Loc-RIB as ``{prefix: [path, ...]}``."""
        return self.cli("global", "rib", "-a", family) or {}

    def adj_in(self, neighbor: str, family: str = "ipv4") -> dict[str, list[dict[str, Any]]]:
        return self.cli("neighbor", neighbor, "adj-in", "-a", family) or {}

    def neighbors(self) -> list[dict[str, Any]]:
        return self.cli("neighbor") or []

    def neighbor(self, address: str) -> dict[str, Any]:
        found: dict[str, Any] = self.cli("neighbor", address)
        return found

    def resets(self, address: str) -> tuple[int, int]:
        """(flops, OPENs received) for a neighbor: both grow when a session is reset.

        GoBGP's JSON omits zero counters (``flops`` is absent until the first flap)."""
        state = self.neighbor(address)["state"]
        opens = state.get("messages", {}).get("received", {}).get("open", 0)
        return state.get("flops", 0), opens

    def session_state(self, address: str) -> str:
        state = self.neighbor(address)["state"].get("session_state", 0)
        return SESSION_STATES.get(state, str(state)) if isinstance(state, int) else str(state)

    def add_route(self, prefix: str, *attrs: str, family: str = "ipv4") -> None:
        """``gobgp global rib add PREFIX [nexthop X] [community ...]`` etc."""
        self.cli("global", "rib", "add", "-a", family, prefix, *attrs, check_json=False)

    def del_route(self, prefix: str, family: str = "ipv4") -> None:
        self.cli("global", "rib", "del", "-a", family, prefix, check_json=False)

    # ---- waiting -----------------------------------------------------------

    def wait_rib(
        self,
        condition: Callable[[dict[str, list[dict[str, Any]]]], bool],
        *,
        family: str = "ipv4",
        timeout: float = 10.0,
        interval: float = 0.05,
        what: str = "RIB condition",
    ) -> dict[str, list[dict[str, Any]]]:
        """Poll the RIB until ``condition(rib)`` holds; return that RIB."""

        seen: list[dict[str, list[dict[str, Any]]]] = []

        def probe() -> bool:
            rib = self.rib(family)
            seen.append(rib)
            return condition(rib)

        wait_until(
            probe, timeout=timeout, interval=interval, what=f"gobgpd {self.host.name}: {what}"
        )
        return seen[-1]

    def wait_established(self, address: str, timeout: float = 30.0) -> None:
        wait_until(
            lambda: self.session_state(address) == "established",
            timeout=timeout,
            what=f"gobgpd {self.host.name}: {address} established",
        )


def path_attrs(path: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """A RIB path's attributes keyed by BGP attribute type code."""
    return {a["type"]: a for a in path.get("attrs", [])}
