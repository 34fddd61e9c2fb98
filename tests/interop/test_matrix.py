"""The interop matrix (issue 12): `speaker run` against routers configured as
operators configure them (lab/matrix.py), one cell per router x variant.

Each cell: BGP Established at both ends; our pool route in the router's RIB; BFD Up
at both ends; no flap (BGP or BFD, at either end) for MATRIX_SOAK seconds (default
10; the issue asks for 30: ``MATRIX_SOAK=30``); a one-way BFD cut (every BFD packet
towards us dropped) removes the route at the router within detection time + 100 ms,
timed from the cut to the router's RIB without it (polled back to back); once the
cut is lifted the route is back within 3 s. Every check of a cell runs even when an
earlier one failed (except when there is nothing left to check), so a failing cell
shows all it gets wrong; with ``MATRIX_RECORD=1`` the figures of each cell go to
bench/results/interop-matrix.json (``python -m bench.interop_table`` renders them);
without it a run leaves the tree as it was.

See docs/interop.md.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

from lab import Lab, faults
from lab.exabgp import exabgp_path
from lab.matrix import CELLS, Cell, Ends, Router, speaker_toml, start_router
from lab.ours import OurSpeaker
from lab.proc import LabError
from tests.helpers import IN_CI, Require
from tests.helpers.interop import Ours, poll

pytestmark = pytest.mark.lab

SOAK_S = float(os.environ.get("MATRIX_SOAK", "10"))
BFD_MS = int(os.environ.get("MATRIX_BFD_MS", "100"))
DETECT_MS = 3 * BFD_MS
WITHDRAW_BUDGET_MS = DETECT_MS + 100
RECOVERY_BUDGET_S = 3.0
RECOVERY_P50_S = 1.5
UP_TIMEOUT_S = 15.0
# After the 3 s budget, how much longer to watch for the route, to record how slow a
# failing cell really is.
RECOVERY_WATCH_S = float(os.environ.get("MATRIX_RECOVERY_WATCH", "12"))


@pytest.fixture(scope="session")
def matrix_results() -> Iterator[dict[str, dict[str, Any]]]:
    """Each cell's record, saved to bench/results/interop-matrix.json at session end
    when ``MATRIX_RECORD`` is set (a test run does not change tracked files)."""
    results: dict[str, dict[str, Any]] = {}
    yield results
    if results and os.environ.get("MATRIX_RECORD"):
        from bench.interop_table import save

        save(results)


@pytest.fixture
def record(
    request: pytest.FixtureRequest, matrix_results: dict[str, dict[str, Any]]
) -> Iterator[dict[str, Any]]:
    """The running cell's record; its outcome is filled in after the test."""
    rec: dict[str, Any] = {"failures": []}
    yield rec
    rep = getattr(request.node, "rep_call", None)
    if rep is None or rep.skipped or "id" not in rec:
        return
    rec["status"] = "pass" if rep.passed else "fail"
    if rep.failed and not rec["failures"]:
        crash = getattr(rep.longrepr, "reprcrash", None)
        message = crash.message if crash is not None else str(rep.longrepr)
        rec["failures"].append(message.splitlines()[0][:300])
    rec["at"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    matrix_results[rec["id"]] = rec


def needs(cell: Cell, lab_require: Require) -> None:
    lab_require({"frr": "frr", "bird": "bird", "gobgp": "gobgp"}.get(cell.router, "frr"))
    if cell.router in ("gobgp", "exabgp"):
        lab_require("frr")  # bfdd beside it
    if cell.router == "exabgp" and exabgp_path() is None:
        reason = "exabgp not installed (pip install 'exabgp>=5' in the virtualenv)"
        if IN_CI:
            pytest.fail(f"CI=true and {reason}", pytrace=False)
        pytest.skip(reason)


@pytest.mark.parametrize("cell", CELLS, ids=lambda c: c.id)
def test_cell(lab: Lab, lab_require: Require, cell: Cell, record: dict[str, Any]) -> None:
    needs(cell, lab_require)
    spk, rtr = lab["spk"], lab["rtr1"]
    # Our node forwards nothing (a new namespace's default, said out loud): FRR's echo
    # packets are looped by the speaker or not at all.
    spk.sysctl("net.ipv4.ip_forward", "0")
    ends = Ends.of(cell, spk, rtr)
    record.update(id=cell.id, variant=cell.variant, role=cell.role, family=cell.family,
                  bfd_ms=BFD_MS, soak_s=SOAK_S, withdraw_budget_ms=WITHDRAW_BUDGET_MS)  # fmt: skip
    router = start_router(cell, lab, ends, bfd_ms=BFD_MS)
    try:
        run_cell(cell, lab, ends, router, record)
    finally:
        router.close()


def run_cell(cell: Cell, lab: Lab, ends: Ends, router: Router, record: dict[str, Any]) -> None:
    spk = lab["spk"]
    socket = str(lab.dir / "speaker.sock")
    failures: list[str] = record["failures"]

    def check(ok: bool, what: str) -> None:
        if not ok:
            failures.append(what)

    record["router"] = router.label
    config = speaker_toml(cell, ends, lab=lab, control=lab.dir / "speaker.sock", bfd_ms=BFD_MS)
    started = time.monotonic()
    speaker = OurSpeaker(spk, config).start()
    ours = Ours(speaker, socket)

    def context() -> str:
        try:
            view = router.describe()
        except LabError as exc:
            view = f"(router view unavailable: {exc})"
        tail = speaker.proc.log_tail(12) if speaker.proc else ""
        return f"\nrouter: {view}\nspeaker log tail:\n{tail}"

    # -- Established, the route at the router, BFD Up at both ends --------------------
    both_up, _ = poll(lambda: ours.bgp()["state"] == "Established" and router.established(),
                      UP_TIMEOUT_S)  # fmt: skip
    if both_up is None:
        bgp = ours.bgp()
        failures.append(
            f"not Established within {UP_TIMEOUT_S:.0f} s (ours: {bgp['state']}"
            f"{', ' + bgp['stateDetail'] if bgp.get('stateDetail') else ''}, "
            f"{bgp['connectionsEstablished']} sessions so far; BFD ours "
            f"{ours.bfd().get('status')} after {ours.bfd_downs()} Down events, router "
            f"{'up' if router.bfd_up() else 'not up'})"
        )
        pytest.fail("; ".join(failures) + context())
    record["established_s"] = both_up - started
    routed, _ = poll(router.has_route, 5.0)
    if routed is None:
        failures.append(f"{cell.prefix} not in the router's RIB 5 s after Established")
        pytest.fail("; ".join(failures) + context())
    bfd_up, _ = poll(lambda: ours.bfd().get("status") == "up" and router.bfd_up(), 5.0)
    check(bfd_up is not None,
          f"BFD not Up at both ends (ours {ours.bfd().get('status')}, router "
          f"{'up' if router.bfd_up() else 'not up'})")  # fmt: skip

    # -- no flap in the first SOAK_S seconds (and at least 2 s after Established) -----
    time.sleep(max(0.0, started + SOAK_S - time.monotonic(), both_up + 2.0 - time.monotonic()))
    bgp, downs = ours.bgp(), ours.bfd_downs()
    theirs = router.sessions_established()
    record["flaps"] = {"bgp_sessions_ours": bgp["connectionsEstablished"], "bfd_downs_ours": downs,
                       "bgp_sessions_router": theirs}  # fmt: skip
    check(bgp["state"] == "Established" and bgp["connectionsDropped"] == 0
          and bgp["connectionsEstablished"] == 1 and downs == 0 and theirs in (None, 1),
          f"flapped in the first {SOAK_S:g} s: BGP sessions {bgp['connectionsEstablished']} "
          f"(ours), {theirs} (router); our BFD Down events {downs}")  # fmt: skip
    if not router.has_route():
        failures.append(f"{cell.prefix} gone from the router at the end of the soak")
        pytest.fail("; ".join(failures) + context())

    # -- one-way BFD cut: the route leaves the router within detection + 100 ms -------
    if cell.variant == "echo":
        # Echoes cross our node on packet sockets, which see frames before netfilter:
        # an input drop at spk would cut control packets only. Cut at the router what
        # it sends or loops back to us (one-way still: the router hears us).
        cut = faults.drop_bfd_towards(lab["rtr1"], ends.speaker)
    else:
        cut = faults.drop_bfd(spk, direction="in")
    gone, poll_s = poll(lambda: not router.has_route(), 5.0)
    record["poll_ms"] = round(poll_s * 1000, 1)
    if gone is None:
        check(False, "the route stayed at the router 5 s after the BFD cut")
    else:
        withdraw_ms = (gone - cut.at.before_mono) * 1000
        record["withdraw_ms"] = round(withdraw_ms, 1)
        check(withdraw_ms <= WITHDRAW_BUDGET_MS,
              f"route gone at the router {withdraw_ms:.0f} ms after the cut "
              f"(budget {WITHDRAW_BUDGET_MS} ms = detection {DETECT_MS} + 100)")  # fmt: skip

    # -- cut lifted: the route is back within 3 s ------------------------------------
    time.sleep(0.3)  # let the teardown settle at both ends before restoring
    lifted = cut.undo()
    record["cut_lifted"] = True
    # A router that refuses a new session for a fixed time after one went down
    # (gobgpd: 5 s) gets that time + 1 s; the p50 below counts every cell as measured.
    budget = max(RECOVERY_BUDGET_S, router.idle_hold_s + 1.0)
    record["recovery_budget_s"] = budget
    back, _ = poll(router.has_route, budget + RECOVERY_WATCH_S)
    if back is None:
        check(False, f"route not back {budget + RECOVERY_WATCH_S:.0f} s after "
                     "the cut was lifted")  # fmt: skip
    else:
        recovery = back - lifted.before_mono
        record["recovery_s"] = round(recovery, 3)
        why = (
            f", the router's own idle hold {router.idle_hold_s:g} s + 1"
            if budget > RECOVERY_BUDGET_S
            else ""
        )
        check(recovery <= budget,
              f"route back {recovery:.1f} s after the cut was lifted (budget "
              f"{budget:g} s{why})")  # fmt: skip
    assert not failures, "; ".join(failures) + context()


def test_recovery_p50_over_the_cells(matrix_results: dict[str, dict[str, Any]]) -> None:
    """The issue's recovery target across the matrix: p50 <= 1.5 s over the cells that
    ran in this session (a cell that never recovered counts as infinitely slow)."""
    from bench.interop_table import recovery_p50

    p50 = recovery_p50(matrix_results)
    if p50 is None:
        pytest.skip("no matrix cell reached the cut in this session")
    assert p50 <= RECOVERY_P50_S, f"recovery p50 {p50:.2f} s over {len(matrix_results)} cells"
