"""Shared pieces of the benchmark suite: statistics, environment, results, plots, and
the longest task step of a Trio run.

Conventions every ``bench.<name>`` module follows (``python -m bench`` relies on them):

* ``python -m bench.<name> [--quick]`` runs it alone; ``--quick`` is a smoke run of
  a few trials (the whole quick suite stays under 4 minutes);
* results go to ``bench/results/<date>-<name>[-quick].json`` (raw samples and the
  environment) and ``.md`` (the report section; ``docs/performance.md`` embeds it);
* figures are p50 / p99 / max over many trials (nearest-rank percentiles);
* no thresholds are asserted: a missed target is reported, never hidden.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import trio

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parents[1]


# ---- statistics ------------------------------------------------------------------------


def pct(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (with fewer than 100 samples p99 is the maximum)."""
    if not values:
        return None
    s = sorted(values)
    return s[max(0, math.ceil(q / 100 * len(s)) - 1)]


def summary(values: Sequence[float]) -> dict[str, float | None]:
    vals = [v for v in values if v is not None]
    return {
        "n": len(vals),
        "min": min(vals) if vals else None,
        "p50": statistics.median(vals) if vals else None,
        "p99": pct(vals, 99),
        "max": max(vals) if vals else None,
    }


def fmt3(s: dict[str, Any] | None, digits: int = 1) -> str:
    """``p50 / p99 / max`` of a :func:`summary`."""
    if not s or s.get("p50") is None:
        return "n/a"
    return " / ".join(f"{s[k]:.{digits}f}" for k in ("p50", "p99", "max"))


def ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b == 0:
        return "n/a"
    return f"{a / b:.2f}"


# ---- processes --------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (and its reaped children not included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def status_kb(pid: int, key: str) -> int:
    """A ``/proc/PID/status`` size field (VmRSS, VmHWM...) in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise LookupError(f"no {key} for {pid}")


def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def other_pytests() -> list[str]:
    """Command lines of pytest processes on the machine (other engineers' test runs)."""
    out = subprocess.run(["pgrep", "-af", "pytest"], capture_output=True, text=True, check=False)
    return [line for line in out.stdout.splitlines() if line.strip()]


def quiet_note() -> dict[str, Any]:
    """How quiet the machine is right now (recorded before every measurement)."""
    return {"loadavg": loadavg(), "other_pytest": len(other_pytests()), "at": time.time()}


# ---- environment ------------------------------------------------------------------------


def _first_line(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "not installed"


def environment() -> dict[str, Any]:
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kb = status_mem_total()
    try:
        import trio

        trio_version = trio.__version__
    except ImportError:  # pragma: no cover - the project depends on it
        trio_version = "?"
    return {
        "cpu_model": cpu,
        "cpus": os.cpu_count(),
        "mem_total_mib": mem_kb // 1024,
        "kernel": platform.release(),
        "os": _first_line(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"]),
        "python": sys.version.split()[0],
        "trio": trio_version,
        "frr": _first_line(["/usr/lib/frr/bgpd", "-v"]),
        "gobgpd": _first_line(["gobgpd", "--version"]),
        "bird": _first_line(["bird", "--version"]),
        "exabgp": _first_line([str(Path(sys.executable).parent / "exabgp"), "version"]),
        "tshark": _first_line(["tshark", "--version"]),
        "stress_ng": _first_line(["stress-ng", "--version"]),
        "commit": _first_line(["git", "-C", str(REPO), "rev-parse", "HEAD"]),
        # Uncommitted changes to the code measured (results and docs do not count).
        "dirty": bool(
            subprocess.run(
                [
                    "git",
                    "-C",
                    str(REPO),
                    "status",
                    "--porcelain",
                    "--untracked-files=no",
                    "--",
                    "protocols",
                    "speaker",
                    "lab",
                    "bench",
                    ":!bench/results",
                ],
                capture_output=True,
                text=True,
                check=False,
            ).stdout.strip()
        ),
        "quiet_at_start": quiet_note(),
    }


def status_mem_total() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1])
    return 0


def env_line(env: dict[str, Any]) -> str:
    q = env.get("quiet_at_start", {})
    return (
        f"CPU {env['cpu_model']} x {env['cpus']}, {env.get('mem_total_mib', '?')} MiB, kernel "
        f"{env['kernel']}; Python {env['python']}, Trio {env.get('trio', '?')}; "
        f"{env.get('frr', '?')}; {env.get('gobgpd', '?')}; {env.get('bird', '?')}; "
        f"commit {str(env.get('commit', '?'))[:12]}{' (dirty tree)' if env.get('dirty') else ''}; "
        f"load average at start {q.get('loadavg')}, other pytest processes {q.get('other_pytest')}"
    )


# ---- results ----------------------------------------------------------------------------


def stem(name: str, quick: bool) -> Path:
    return RESULTS / f"{dt.date.today().isoformat()}-{name}{'-quick' if quick else ''}"


def write_results(
    name: str, quick: bool, data: dict[str, Any], markdown: str, base: Path | None = None
) -> Path:
    """``bench/results/<date>-<name>[-quick].{json,md}`` (or ``base``.{json,md}, e.g. the
    result being re-summarised); returns the .md path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    base = base if base is not None else stem(name, quick)
    base.with_suffix(".json").write_text(json.dumps(data, indent=1, default=str) + "\n")
    md = base.with_suffix(".md")
    md.write_text(markdown)
    print(f"wrote {base}.json and .md", flush=True)
    return md


def new_data(name: str, quick: bool, parameters: dict[str, Any]) -> dict[str, Any]:
    return {
        "benchmark": name,
        "date": dt.date.today().isoformat(),
        "quick": quick,
        "command": "python -m bench." + name.replace("-", "_") + " " + " ".join(sys.argv[1:]),
        "environment": environment(),
        "parameters": parameters,
        "notes": [],
    }


# ---- plots (matplotlib is optional) --------------------------------------------------------


def have_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


PLOT_SKIPPED = "(plot skipped: matplotlib is not installed; `pip install matplotlib` to get it)"


def plot(name: str, quick: bool, suffix: str, draw: Callable[[Any], None]) -> str:
    """Draw with ``draw(axes)`` into ``<stem>-<suffix>.png``; the Markdown that embeds it
    (relative to docs/), or a note that plotting was skipped."""
    if not have_matplotlib():
        return PLOT_SKIPPED
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5), dpi=110)
    draw(ax)
    fig.tight_layout()
    path = stem(name, quick).with_name(stem(name, quick).name + f"-{suffix}.png")
    fig.savefig(path)
    plt.close(fig)
    return f"![{name} {suffix}](../bench/results/{path.name})"


def ecdf(ax: Any, values: Sequence[float], label: str) -> None:
    """An empirical CDF line on ``ax``."""
    s = sorted(values)
    if not s:
        return
    ys = [(i + 1) / len(s) for i in range(len(s))]
    ax.step(s, ys, where="post", label=label)


def ecdf_plot(
    name: str, quick: bool, suffix: str, series: Mapping[str, Sequence[float]], xlabel: str
) -> str:
    """One empirical CDF per labelled series, as :func:`plot` embeds it."""

    def draw(ax: Any) -> None:
        for label, values in series.items():
            ecdf(ax, values, label)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("fraction of trials")
        ax.legend(fontsize=7)

    return plot(name, quick, suffix, draw)


# ---- the loop --------------------------------------------------------------------------


class LongestStep(trio.abc.Instrument):
    """The longest step of a task whose name contains ``marker`` (any task: ""), in the
    thread's CPU time (the machine is shared: wall time would count other processes),
    and that task's name. Set ``longest`` to 0 to start a new measurement."""

    def __init__(self, marker: str = "") -> None:
        self.marker = marker
        self.longest = 0.0
        self.task = ""
        self._start: float | None = None

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self._start = time.thread_time()

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        if self._start is None:
            return  # added during this step: its start was not seen
        took, self._start = time.thread_time() - self._start, None
        if self.marker in task.name and took > self.longest:
            self.longest, self.task = took, task.name
