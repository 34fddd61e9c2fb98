"""A picture of the Grafana dashboard, from a real failover run on the netns lab.

``docs/grafana-dashboard.json`` needs a Prometheus and a Grafana to show anything; this
draws its failover panels (BGP and BFD session state, BFD flaps, BFD detection to BGP
NOTIFICATION, event-loop lag, prefixes announced, BFD packet rates) from what
``speaker run`` exported during a run of the lab demo (``lab/demo.py``):

* rtr1 is the router (gobgpd plus FRR bfdd at the same address), spk runs
  ``speaker run`` with the demo's TOML config (198.19.0.10/32 over eBGP, BFD 50/50/3);
* a thread inside spk's network namespace GETs ``/metrics`` every ``--scrape-ms``
  (150 ms by default) from before the first fault to after the last recovery;
* each round drops BFD towards spk (as the demo does), waits for the route to leave
  gobgpd's RIB, holds the cut ``--hold`` seconds, restores BFD and waits for the route
  and BFD to be back.

The scrapes are kept as a small JSON file (each series stored only where its value
changed) and the PNG is drawn from that file alone, so it can be redrawn without the
lab (``--render-only``)::

    python -m bench.dashboard_picture                # needs root: lab run, JSON, PNG
    python -m bench.dashboard_picture --render-only  # PNG from the committed JSON

Defaults write ``docs/img/failover-dashboard.json`` and ``.png``. Quantiles are
computed as Prometheus' ``histogram_quantile`` does (linear inside a bucket), rates
over a 1 s window, so the panels read as Grafana would draw them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import re
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_JSON = REPO / "docs" / "img" / "failover-dashboard.json"
DEFAULT_PNG = REPO / "docs" / "img" / "failover-dashboard.png"
METRICS = "127.0.0.1:7472"
VIP = "198.19.0.10/32"

#: The families the picture draws; everything else in /metrics is not kept.
WANTED = re.compile(
    r"^((?:metallb_bgp_session_up|metallb_bfd_session_up|metallb_bgp_announced_prefixes_total"
    r"|metallb_bfd_control_packet_(?:input|output)|speaker_bfd_flaps_total"
    r"|speaker_bgp_session_flaps_total|speaker_event_loop_longest_step_seconds"
    r"|speaker_event_loop_slow_steps_total"
    r"|speaker_(?:bfd_detection_to_teardown|bgp_teardown_to_reannounce|event_loop_lag)"
    r"_seconds_(?:bucket|sum|count)))(\{[^}]*\})? (\S+)$",
    re.M,
)
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


# ---- reading /metrics -------------------------------------------------------------------


def parse_metrics(text: str) -> dict[str, float]:
    """The wanted series of one scrape, ``name{labels}`` -> value."""
    return {m.group(1) + (m.group(2) or ""): float(m.group(3)) for m in WANTED.finditer(text)}


def labels_of(key: str) -> tuple[str, dict[str, str]]:
    """``name{a="x",b="y"}`` -> ``("name", {"a": "x", "b": "y"})``."""
    name, _, rest = key.partition("{")
    return name, dict(_LABEL.findall(rest))


def encode(
    times: Sequence[float], scrapes: Sequence[Mapping[str, float]], meta: Mapping[str, Any]
) -> dict[str, Any]:
    """The record written to JSON: scrape times, and for each series the ``[index,
    value]`` pairs where its value changed (the first scrape that has it included)."""
    series: dict[str, list[list[float]]] = {}
    last: dict[str, float] = {}
    for i, scrape in enumerate(scrapes):
        for key, value in scrape.items():
            if last.get(key) != value:
                kept = int(value) if value.is_integer() else round(value, 7)
                series.setdefault(key, []).append([i, kept])
                last[key] = value
    return {
        "meta": dict(meta),
        "times": [round(t, 3) for t in times],
        "series": dict(sorted(series.items())),
    }


def decode(record: Mapping[str, Any]) -> dict[str, list[float]]:
    """Each series as one value per scrape (NaN before it first appeared)."""
    n = len(record["times"])
    out: dict[str, list[float]] = {}
    for key, changes in record["series"].items():
        values = [math.nan] * n
        for (i, value), nxt in zip(changes, [*changes[1:], [n, 0]], strict=True):
            values[int(i) : int(nxt[0])] = [float(value)] * (int(nxt[0]) - int(i))
        out[key] = values
    return out


# ---- what Prometheus would compute ------------------------------------------------------------


def histogram_quantile(q: float, buckets: Mapping[float, float]) -> float | None:
    """Prometheus' ``histogram_quantile`` over cumulative ``{le: count}`` (``inf``
    included): linear interpolation inside the bucket holding the rank; None when empty."""
    ordered = sorted(buckets.items())
    if not ordered or ordered[-1][1] <= 0:
        return None
    total = ordered[-1][1]
    rank = q * total
    lower, below = 0.0, 0.0
    for le, count in ordered:
        if count >= rank:
            if math.isinf(le):
                return lower  # as Prometheus: the highest finite bound
            if count == below:
                return le
            return lower + (le - lower) * (rank - below) / (count - below)
        lower, below = le, count
    return lower


def buckets_of(
    values: Mapping[str, Sequence[float]], family: str, index: int, since: int | None = None
) -> dict[float, float]:
    """A histogram's cumulative buckets at scrape ``index`` (summed over labels other than
    ``le``), minus those at scrape ``since`` when given (an ``increase()``)."""
    out: dict[float, float] = {}
    for key, series in values.items():
        name, labels = labels_of(key)
        if name != family + "_bucket" or "le" not in labels:
            continue
        le = float(labels["le"].replace("+Inf", "inf"))
        now = series[index]
        if math.isnan(now):
            continue
        before = series[since] if since is not None and not math.isnan(series[since]) else 0.0
        out[le] = out.get(le, 0.0) + now - before
    return out


def by_peer(values: Mapping[str, Sequence[float]], family: str) -> dict[str, list[float]]:
    """The series of one family, keyed by their ``peer`` label (or ``""``)."""
    out: dict[str, list[float]] = {}
    for key, series in values.items():
        name, labels = labels_of(key)
        if name == family:
            out[labels.get("peer", "")] = list(series)
    return out


def rate(times: Sequence[float], series: Sequence[float], window: float) -> list[float]:
    """Per-second increase over the last ``window`` seconds at each scrape (NaN until a
    window's worth of scrapes exists), like ``rate(x[window])``."""
    out, j = [], 0
    for i, t in enumerate(times):
        while times[j] < t - window:
            j += 1
        span = t - times[j]
        ok = i > j and span > 0 and not math.isnan(series[i]) and not math.isnan(series[j])
        out.append(max(0.0, series[i] - series[j]) / span if ok else math.nan)
    return out


def derive(record: Mapping[str, Any], window: float = 1.0) -> dict[str, Any]:
    """What each panel shows, as numbers (the test checks these; :func:`render` draws
    them). Times are seconds since the first scrape."""
    times = list(record["times"])
    t0 = times[0]
    ts = [t - t0 for t in times]
    values = decode(record)
    last = len(times) - 1
    out: dict[str, Any] = {"t": ts}
    out["bgp_up"] = by_peer(values, "metallb_bgp_session_up")
    out["bfd_up"] = by_peer(values, "metallb_bfd_session_up")
    out["prefixes"] = by_peer(values, "metallb_bgp_announced_prefixes_total")
    out["bfd_flaps"] = by_peer(values, "speaker_bfd_flaps_total")
    out["bgp_flaps"] = by_peer(values, "speaker_bgp_session_flaps_total")
    out["bfd_rx_rate"] = {
        p: rate(ts, s, window)
        for p, s in by_peer(values, "metallb_bfd_control_packet_input").items()
    }
    out["bfd_tx_rate"] = {
        p: rate(ts, s, window)
        for p, s in by_peer(values, "metallb_bfd_control_packet_output").items()
    }

    # Detection -> NOTIFICATION: the whole run's histogram (Grafana's $__range).
    det = "speaker_bfd_detection_to_teardown_seconds"
    cumulative = buckets_of(values, det, last)
    edges = sorted(cumulative)
    counts, below = [], 0.0
    for le in edges:
        counts.append(cumulative[le] - below)
        below = cumulative[le]
    det_sum = sum(v[last] for k, v in values.items() if labels_of(k)[0] == det + "_sum")
    det_n = cumulative.get(math.inf, 0.0)
    out["detection"] = {
        "le": edges,
        "count": counts,
        "n": det_n,
        "mean": det_sum / det_n if det_n else None,
        "p50": histogram_quantile(0.5, cumulative),
        "p99": histogram_quantile(0.99, cumulative),
    }
    rean = "speaker_bgp_teardown_to_reannounce_seconds"
    rc = buckets_of(values, rean, last)
    rean_sum = sum(v[last] for k, v in values.items() if labels_of(k)[0] == rean + "_sum")
    rean_n = rc.get(math.inf, 0.0)
    out["reannounce"] = {
        "n": rean_n,
        "mean": rean_sum / rean_n if rean_n else None,
        "p50": histogram_quantile(0.5, rc),
    }

    # Loop lag: p50 / p99 / mean of the wakes between one scrape and the one a window
    # earlier (histogram_quantile over increase(...[1s])), and the longest-step gauge.
    lag = "speaker_event_loop_lag_seconds"
    p50: list[float] = []
    p99: list[float] = []
    mean: list[float] = []
    j = 0
    lag_sum = next((v for k, v in values.items() if labels_of(k)[0] == lag + "_sum"), None)
    lag_count = next((v for k, v in values.items() if labels_of(k)[0] == lag + "_count"), None)
    for i, t in enumerate(ts):
        while ts[j] < t - window:
            j += 1
        if i == j or lag_sum is None or lag_count is None:
            for column in (p50, p99, mean):
                column.append(math.nan)
            continue
        inc = buckets_of(values, lag, i, j)
        q50, q99 = histogram_quantile(0.5, inc), histogram_quantile(0.99, inc)
        p50.append(math.nan if q50 is None else q50)
        p99.append(math.nan if q99 is None else q99)
        n = lag_count[i] - lag_count[j]
        mean.append((lag_sum[i] - lag_sum[j]) / n if n > 0 else math.nan)
    longest = by_peer(values, "speaker_event_loop_longest_step_seconds")
    slow = by_peer(values, "speaker_event_loop_slow_steps_total").get("")
    out["lag"] = {
        "slow_steps": slow[last] - slow[0] if slow else None,
        "p50": p50,
        "p99": p99,
        "mean": mean,
        "longest_step": next(iter(longest.values()), []),
    }
    out["rounds"] = [
        {k: (v - t0 if isinstance(v, float | int) else v) for k, v in r.items()}
        for r in record["meta"].get("rounds", [])
    ]
    return out


# ---- drawing -----------------------------------------------------------------------------------


def _ms(le: float) -> str:
    if math.isinf(le):
        return "+Inf"
    ms = le * 1000
    return f"{ms:g}" if ms >= 1 else f"{ms:.2g}"


def render(record: Mapping[str, Any], out: Path) -> Path:
    """Draw the dashboard's panels from a record (see :func:`encode`) into ``out`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = derive(record)
    meta = record["meta"]
    t = d["t"]
    fig, axes = plt.subplots(3, 2, figsize=(13, 10.5), dpi=100)
    (ax_state, ax_flaps), (ax_det, ax_lag), (ax_pfx, ax_pkts) = axes
    title = (
        f"speaker failover dashboard: {meta.get('rounds_n', len(d['rounds']))} BFD cuts on the "
        f"netns lab (router: gobgpd + FRR bfdd), BFD {meta.get('bfd', '50/50/3')}, "
        f"/metrics every {meta.get('scrape_ms', '?')} ms"
    )
    fig.suptitle(title, fontsize=12)
    sub = f"{meta.get('date', '')}  commit {meta.get('commit', '?')}  {meta.get('host', '')}"
    fig.text(0.5, 0.945, sub.strip(), ha="center", fontsize=8, color="0.4")

    def faults(ax: Any, label: bool = False) -> None:
        for k, r in enumerate(d["rounds"]):
            if "cut" in r and "restored" in r:
                ax.axvspan(
                    r["cut"],
                    r["restored"],
                    color="tab:red",
                    alpha=0.12,
                    lw=0,
                    label="BFD cut (towards spk)" if label and k == 0 else None,
                )

    def timeseries(ax: Any, panel: str, ylabel: str) -> None:
        ax.set_title(panel, fontsize=10, loc="left")
        ax.set_ylabel(ylabel)
        ax.set_xlabel("s since the first scrape")
        ax.grid(alpha=0.3)
        ax.set_xlim(0, t[-1])

    # BGP and BFD session up, per peer (the dashboard's two "session up" panels in one).
    for peer, s in d["bgp_up"].items():
        ax_state.step(
            t, [v + 0.03 for v in s], where="post", lw=1.8, label=f"metallb_bgp_session_up {peer}"
        )
    for peer, s in d["bfd_up"].items():
        ax_state.step(
            t,
            [v - 0.03 for v in s],
            where="post",
            lw=1.8,
            ls="--",
            label=f"metallb_bfd_session_up {peer}",
        )
    faults(ax_state, label=True)
    ax_state.set_ylim(-0.2, 1.45)
    ax_state.set_yticks([0, 1], ["down", "up"])
    ax_state.legend(fontsize=8, loc="upper right", ncol=2)
    timeseries(ax_state, "BGP and BFD session up, per peer", "")

    # Failovers: BFD flaps and BGP session flaps, cumulative.
    for peer, s in d["bfd_flaps"].items():
        ax_flaps.step(t, s, where="post", lw=1.8, label=f"speaker_bfd_flaps_total {peer}")
    for peer, s in d["bgp_flaps"].items():
        ax_flaps.step(
            t, s, where="post", lw=1.2, ls="--", label=f"speaker_bgp_session_flaps_total {peer}"
        )
    faults(ax_flaps)
    r = d["reannounce"]
    if r["n"]:
        ax_flaps.text(
            0.02,
            0.95,
            f"teardown -> routes announced again: {r['n']:g} times, "
            f"mean {r['mean']:.1f} s (gobgpd holds a dropped peer Idle 5 s)",
            transform=ax_flaps.transAxes,
            va="top",
            fontsize=8,
        )
    top = max(
        [1.0]
        + [max((v for v in s if not math.isnan(v)), default=1.0) for s in d["bfd_flaps"].values()]
    )
    ax_flaps.set_ylim(-0.2, top * 1.25 + 0.5)
    ax_flaps.legend(fontsize=8, loc="lower right")
    timeseries(ax_flaps, "Failovers: BFD flaps and BGP session flaps (cumulative)", "count")

    # BFD detection -> BGP NOTIFICATION: the run's histogram.
    det = d["detection"]
    labels = [_ms(le) for le in det["le"]]
    ax_det.bar(range(len(labels)), det["count"], color="tab:blue")
    ax_det.set_xticks(range(len(labels)), labels, fontsize=8)
    ax_det.set_xlabel("bucket upper bound le (ms)")
    ax_det.set_ylabel("teardowns")
    ax_det.set_title(
        "BFD detection -> NOTIFICATION (speaker_bfd_detection_to_teardown_seconds)",
        fontsize=10,
        loc="left",
    )
    if det["n"]:
        ax_det.text(
            0.98,
            0.95,
            f"n = {det['n']:g}\nmean {det['mean'] * 1000:.2f} ms\n"
            f"p50 {det['p50'] * 1000:.2f} ms\np99 {det['p99'] * 1000:.2f} ms\n"
            "(histogram_quantile)",
            transform=ax_det.transAxes,
            ha="right",
            va="top",
            fontsize=9,
        )
    ax_det.grid(alpha=0.3, axis="y")

    # Event-loop lag.
    lag = d["lag"]
    ms = [[v * 1000 for v in lag[k]] for k in ("p50", "p99", "mean")]
    ax_lag.plot(t, ms[1], lw=1.2, label="p99 over 1 s (histogram_quantile)")
    ax_lag.plot(t, ms[0], lw=1.2, label="p50 over 1 s")
    ax_lag.plot(t, ms[2], lw=1.0, ls=":", label="mean over 1 s (sum / count)")
    if lag["longest_step"]:
        ax_lag.step(
            t,
            [v * 1000 for v in lag["longest_step"]],
            where="post",
            lw=1.0,
            color="0.3",
            label="longest task step, last 60 s",
        )
    faults(ax_lag)
    ax_lag.set_yscale("log")
    peak = max([1.0] + [v for col in ms for v in col if not math.isnan(v)])
    ax_lag.set_ylim(0.1, peak * 8)
    if lag["slow_steps"] is not None:
        note = f"task steps > 5 ms during the run: {lag['slow_steps']:g}"
        worst = (meta.get("loop_status") or {}).get("longestStepEver")
        if worst:
            note += f"; longest {worst['ms']:.1f} ms, in task {worst['task']!r}"
        ax_lag.text(
            0.02,
            0.03,
            note,
            transform=ax_lag.transAxes,
            va="bottom",
            fontsize=8,
        )
    ax_lag.legend(fontsize=8, loc="upper right", ncol=2)
    timeseries(ax_lag, "Event-loop lag (speaker_event_loop_lag_seconds)", "ms late (log)")

    # Prefixes announced, per peer.
    for peer, s in d["prefixes"].items():
        ax_pfx.step(
            t, s, where="post", lw=1.8, label=f"metallb_bgp_announced_prefixes_total {peer}"
        )
    faults(ax_pfx)
    for r in d["rounds"]:
        if "route_gone" in r:
            ax_pfx.annotate(
                f"gone from gobgpd\n+{(r['route_gone'] - r['cut']) * 1000:.0f} ms",
                (r["cut"], 1.0),
                xytext=(4, 8),
                textcoords="offset points",
                fontsize=7.5,
                color="tab:red",
            )
    ax_pfx.set_ylim(
        -0.1,
        max(
            [1.0]
            + [max((v for v in s if not math.isnan(v)), default=1) for s in d["prefixes"].values()]
        )
        * 1.4,
    )
    ax_pfx.legend(fontsize=8, loc="upper right")
    timeseries(ax_pfx, "Prefixes announced, per peer", "prefixes")

    # BFD control packets per second.
    for peer, s in d["bfd_tx_rate"].items():
        ax_pkts.plot(t, s, lw=1.2, label=f"sent {peer}")
    for peer, s in d["bfd_rx_rate"].items():
        ax_pkts.plot(t, s, lw=1.2, label=f"received {peer}")
    faults(ax_pkts)
    ax_pkts.set_ylim(bottom=0)
    ax_pkts.legend(fontsize=8, loc="lower right")
    timeseries(ax_pkts, "BFD control packets per second (rate over 1 s)", "packets/s")

    fig.tight_layout(rect=(0, 0, 1, 0.94))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out


# ---- the lab run ------------------------------------------------------------------------------


class Scraper:
    """GETs /metrics every ``interval`` seconds from a thread inside ``host``'s network
    namespace (only that thread moves), keeping the wanted series of each scrape."""

    def __init__(self, host: Any, interval: float) -> None:
        self.host = host
        self.interval = interval
        self.times: list[float] = []
        self.scrapes: list[dict[str, float]] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="scraper")

    def start(self) -> Scraper:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        from bench.scale_product import enter_netns, http_get

        enter_netns(self.host)
        tick = time.monotonic()
        while not self._stop.is_set():
            before = time.time()
            try:
                body = http_get(METRICS, "/metrics", timeout=5)
            except Exception as exc:  # a missed scrape is a gap, as in Prometheus
                self.errors.append(f"{time.time():.3f} {exc}"[:200])
            else:
                self.times.append((before + time.time()) / 2)
                self.scrapes.append(parse_metrics(body.decode(errors="replace")))
            tick += self.interval
            self._stop.wait(max(0.0, tick - time.monotonic()))


def _commit() -> str:
    out = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    )
    return out.stdout.strip() or "?"


def _loop_status(sock: Path) -> Any:
    """The ``eventLoop`` part of ``speaker show status --json`` (longest steps and the tasks
    that took them), to explain a lag spike in the picture; None if it failed."""
    out = subprocess.run(
        [sys.executable, "-m", "speaker.cli", "show", "status", "--json", "-s", str(sock)],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
        timeout=20,
    )
    try:
        data = json.loads(out.stdout)
    except json.JSONDecodeError:
        return None
    return data.get("eventLoop") if isinstance(data, dict) else None


def run_lab(rounds: int, interval_ms: int, scrape_ms: int, hold: float) -> dict[str, Any]:
    """The lab run: the demo's setup, ``rounds`` BFD cuts, every scrape. The record."""
    from lab import Lab, faults
    from lab.demo import SPEAKER_CONFIG, wait_bfd_fast, watch_rib_until_gone
    from lab.frr import FRR, bfd_peer_block, bfdd_config
    from lab.gobgp import GoBGP, neighbor_toml
    from lab.ours import OurSpeaker
    from lab.requirements import missing

    reason = missing("frr", "gobgp")
    if reason:
        raise SystemExit(f"dashboard_picture: {reason}")
    with Lab.create(hosts=["spk", "rtr1"], links=[("rtr1", "spk")], routers=["rtr1"]) as lab:
        rtr, spk = lab["rtr1"], lab["spk"]
        r_addr, s_addr = str(rtr.addr4("spk")), str(spk.addr4("rtr1"))
        router = GoBGP(
            rtr, asn=64512, router_id=r_addr, neighbors=neighbor_toml(s_addr, 64513)
        ).start()
        rtr_bfd = FRR(
            rtr,
            bfdd=bfdd_config(
                [
                    bfd_peer_block(
                        s_addr,
                        local=r_addr,
                        interface=rtr.iface("spk"),
                        tx=interval_ms,
                        rx=interval_ms,
                    ),
                ]
            ),
        ).start()
        config = SPEAKER_CONFIG.format(
            r_addr=r_addr, s_addr=s_addr, ms=interval_ms, state=lab.dir / "state.json"
        )
        # Our own control socket (not /run/speaker's), the default metrics address.
        config += f'\n[control]\nsocket = "{lab.dir / "control.sock"}"\n'
        config += f'\n[metrics]\naddress = "{METRICS}"\n'
        OurSpeaker(spk, config).start()
        router.wait_rib(lambda r: VIP in r, timeout=60, what=VIP)
        wait_bfd_fast(rtr_bfd, s_addr, interval_ms)
        print(f"{VIP} in gobgpd's RIB, BFD {interval_ms}/{interval_ms}/3 Up; scraping", flush=True)
        scraper = Scraper(spk, scrape_ms / 1000).start()
        marks: list[dict[str, float]] = []
        try:
            time.sleep(3.0)
            for n in range(1, rounds + 1):
                fault = faults.drop_bfd(spk, direction="in")
                gone = watch_rib_until_gone(router, VIP, time.monotonic() + 10)
                time.sleep(hold)
                undone = fault.undo()
                router.wait_rib(lambda r: VIP in r, timeout=60, what=f"{VIP} back")
                back = time.time()
                wait_bfd_fast(rtr_bfd, s_addr, interval_ms)
                mark = {"cut": fault.t_wall, "restored": undone.t_wall, "route_back": back}
                if gone is not None:
                    mark["route_gone"] = gone
                marks.append(mark)
                print(
                    f"round {n}: route gone after "
                    f"{(gone - fault.t_wall) * 1000 if gone else float('nan'):.0f} ms, "
                    f"back {back - undone.t_wall:.1f} s after BFD was restored",
                    flush=True,
                )
                time.sleep(3.0)
        finally:
            scraper.stop()
        status = _loop_status(lab.dir / "control.sock")
    if not scraper.scrapes:
        raise SystemExit(f"dashboard_picture: no scrape succeeded: {scraper.errors[:3]}")
    meta = {
        "what": "speaker /metrics scraped during BFD failovers on the netns lab "
        "(bench/dashboard_picture.py)",
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": _commit(),
        "bfd": f"{interval_ms}/{interval_ms}/3",
        "scrape_ms": scrape_ms,
        "rounds_n": rounds,
        "hold_s": hold,
        "failed_scrapes": len(scraper.errors),
        "loop_status": status,
        "rounds": [{k: round(v, 3) for k, v in m.items()} for m in marks],
    }
    return encode(scraper.times, scraper.scrapes, meta)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.dashboard_picture",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--interval-ms", type=int, default=50, help="BFD intervals")
    parser.add_argument("--scrape-ms", type=int, default=150)
    parser.add_argument(
        "--hold", type=float, default=2.0, help="seconds BFD stays cut after the route is gone"
    )
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="the samples")
    parser.add_argument("--png", type=Path, default=DEFAULT_PNG, help="the picture")
    parser.add_argument(
        "--render-only", action="store_true", help="no lab: draw --png from an existing --json"
    )
    args = parser.parse_args(argv)
    if args.render_only:
        record = json.loads(args.json.read_text())
    else:
        record = run_lab(args.rounds, args.interval_ms, args.scrape_ms, args.hold)
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(record, separators=(",", ":")) + "\n")
        print(f"{len(record['times'])} scrapes, {len(record['series'])} series -> {args.json}")
    print(f"picture -> {render(record, args.png)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
