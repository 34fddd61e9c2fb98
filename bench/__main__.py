"""Run the benchmark suite on the netns lab (root): ``python -m bench [--quick] [names...]``.

Each benchmark runs as its own process (``python -m bench.<module> [--quick]``), one
after the other, and writes ``bench/results/<date>-<name>[-quick].{json,md}``. The
runner then joins their Markdown, with the environment and the machine's load, into
one report:

* full run (no ``--quick``): ``docs/performance.md`` (the committed report);
* ``--quick``: ``bench/results/<date>-suite-quick.md`` (a smoke run: figures are
  printed, nothing is asserted, the committed report is left alone);
* ``--report-only``: run nothing, rebuild ``docs/performance.md`` from the newest full
  result of each benchmark (so benchmarks run on different occasions can be joined).

A ``bench/results/<date>-<name>.notes.md`` beside a result (observations written by
hand: causes, profiles, proposed fixes) is appended to that benchmark's section.

Every benchmark can also run alone: ``python -m bench.failover --quick``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import (
    PLOT_SKIPPED,
    REPO,
    RESULTS,
    env_line,
    environment,
    have_matplotlib,
    other_pytests,
    stem,
)

#: name on the command line -> (module, result name, title), in running order.
BENCHMARKS: dict[str, tuple[str, str, str]] = {
    "dataplane": ("bench.dataplane", "dataplane", "0. What users feel: data-plane failover"),
    "failover": ("bench.failover", "failover", "1. Failover: fault to NOTIFICATION and withdrawal"),
    "bfd_detection": ("bench.bfd_detection", "bfd-detection", "2. BFD detection accuracy"),
    "bgp_throughput": ("bench.bgp_throughput", "bgp-throughput", "3. Announcement throughput"),
    "footprint": ("bench.footprint", "footprint", "4. Idle footprint"),
    "bfd_scale": ("bench.bfd_scale", "bfd-scale", "5. BFD scale"),
    "start_reload": ("bench.start_reload", "start-reload", "6. Start and reload"),
    "scale_product": (
        "bench.scale_product",
        "scale-product",
        "7. The product at scale: never a false failover",
    ),
    "routes_product": (
        "bench.routes_product",
        "routes-product",
        "8. Routes at scale through the product: 100k and 1M",
    ),
}
DOC = REPO / "docs" / "performance.md"


def run_one(module: str, quick: bool, timeout: float) -> dict[str, Any]:
    argv = [sys.executable, "-m", module] + (["--quick"] if quick else [])
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    load = Path("/proc/loadavg").read_text().split()[:3]
    pytests = len(other_pytests())
    print(f"\n=== {' '.join(argv[1:])} (load {' '.join(load)}, other pytest: {pytests})",
          flush=True)  # fmt: skip
    started = time.monotonic()
    try:
        rc = subprocess.run(argv, cwd=REPO, env=env, timeout=timeout, check=False).returncode
    except subprocess.TimeoutExpired:
        rc = -1
    return {"module": module, "rc": rc, "seconds": time.monotonic() - started,
            "load_before": load, "other_pytest_before": pytests}  # fmt: skip


def newest_full(name: str) -> Path | None:
    """The newest full (not quick) Markdown result of a benchmark: ``<date>-<name>.md``
    or a labelled variant ``<date>-<name>-<label>.md``, by the date in its name, then
    by when the run started (its JSON's ``environment.quiet_at_start.at``; the file's
    modification time only without it: a checkout gives every file the same age)."""
    pattern = re.compile(r"\d{4}-\d\d-\d\d-" + re.escape(name) + r"(-[a-z0-9-]+)?\.md$")
    found = [
        p
        for p in RESULTS.glob(f"*-{name}*.md")
        if pattern.match(p.name) and not p.name.endswith(("-quick.md", ".notes.md"))
    ]
    return max(found, key=lambda p: (p.name[:10], _started(p))) if found else None


def _started(result: Path) -> float:
    """When the run behind ``result`` (Markdown) started, as a Unix time."""
    try:
        env = json.loads(result.with_suffix(".json").read_text()).get("environment", {})
        return float(env["quiet_at_start"]["at"])
    except (OSError, ValueError, KeyError, TypeError):
        return result.stat().st_mtime


def measured_at(result: Path) -> str:
    """ ", measured at commit X" from a result's JSON (results of different runs are
    joined into one report, so each says which code it measured)."""
    try:
        env = json.loads(result.with_suffix(".json").read_text()).get("environment", {})
    except (OSError, ValueError):
        return ""
    commit = str(env.get("commit", ""))[:12]
    if not commit:
        return ""
    return f", measured at commit {commit}" + (" (with local changes)" if env.get("dirty") else "")


def demote(markdown: str) -> str:
    """One heading level down (each benchmark's report becomes a section)."""
    return re.sub(r"^(#+) ", r"#\1 ", markdown, flags=re.M)


def fix_links(markdown: str, target: Path) -> str:
    """Image links are written relative to docs/; a report elsewhere gets them fixed."""
    if target.parent == DOC.parent:
        return markdown
    return markdown.replace("](../bench/results/", "](")


Section = tuple[str, str, Path | None, dict[str, Any] | None]


def assemble(
    sections: list[Section],
    target: Path,
    quick: bool,
    total_s: float | None,
) -> str:
    env = environment()
    lines = [
        "# Performance" + (" (quick smoke run: few trials, not for quoting)" if quick else ""),
        "",
        f"Generated by `python -m bench{' --quick' if quick else ''}` "
        f"(or `--report-only` from the newest results) on {dt.date.today().isoformat()}.",
        "Each section below is one benchmark's own report (`bench/results/<date>-<name>.md`, "
        "raw samples in the `.json` beside it); every figure is p50 / p99 / max over "
        "repeated trials unless said otherwise, measured on the netns lab of `lab/`.",
        "",
        f"Machine when this report was assembled: {env_line(env)}.",
        "",
    ]
    headlines = REPO / "bench" / "headlines.md"
    if not quick and headlines.exists():  # the hand-written summary of the committed run
        lines += [demote(headlines.read_text()).strip(), ""]
    if not have_matplotlib():
        lines += [PLOT_SKIPPED, ""]
    found = [(title, line) for title, _n, path, _r in sections for line in targets(path)]
    if found:  # every "Target ..." line of the sections, met or missed, in one place
        lines += ["## Targets", "", "| benchmark | target → result |", "|---|---|"]
        lines += [f"| {title} | {line.removeprefix('Target (ours): ')} |" for title, line in found]
        lines += [""]
    lines += ["| benchmark | result file | runtime | exit |", "|---|---|---:|---:|"]
    for title, _name, path, run in sections:
        runtime = f"{run['seconds']:.0f} s" if run else "(earlier run)"
        rc = str(run["rc"]) if run else ""
        lines.append(f"| {title} | {path.name if path else 'missing'} | {runtime} | {rc} |")
    if total_s is not None:
        lines += ["", f"Total runtime: {total_s:.0f} s."]
    for title, _name, path, _run in sections:
        if path is None or not path.exists():
            lines += ["", f"## {title}", ""]
            lines.append("No result: the benchmark has not been run (or failed before writing).")
            continue
        body = demote(path.read_text()).strip()
        first, _, rest = body.partition("\n")
        when = re.search(r"\(([^()]*)\)\s*$", first)  # "(date[, quick])" of its own heading
        lines += ["", f"## {title}" + (f" ({when.group(1)})" if when else ""), ""]
        body = rest.strip() if first.startswith("## ") else body
        lines += [fix_links(body, target), "", f"Raw samples: `bench/results/{path.stem}.json`"
                  f"{measured_at(path)}."]  # fmt: skip
        notes = path.with_name(path.stem + ".notes.md")
        if notes.exists():  # observations written by hand after the run, kept on re-runs
            lines += ["", f"Observations ({notes.name}):", "", demote(notes.read_text()).strip()]
    return "\n".join(lines) + "\n"


def targets(result: Path | None) -> list[str]:
    """The "Target ..." lines of a benchmark's Markdown report (met / MISSED)."""
    if result is None or not result.exists():
        return []
    return [ln.strip() for ln in result.read_text().splitlines() if ln.startswith("Target")]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument(
        "names", nargs="*", help=f"benchmarks to run (default all: {', '.join(BENCHMARKS)})"
    )
    ap.add_argument("--quick", action="store_true", help="smoke run (whole suite < 4 min)")
    ap.add_argument("--report-only", action="store_true", help="only rebuild docs/performance.md")
    ap.add_argument("--timeout", type=float, help="per benchmark, seconds (quick 120, full 7200)")
    args = ap.parse_args(argv)
    unknown = [n for n in args.names if n not in BENCHMARKS]
    if unknown:
        ap.error(f"unknown benchmark(s) {unknown}; choose from {list(BENCHMARKS)}")
    names = args.names or list(BENCHMARKS)
    if args.report_only:
        sections: list[Section] = [
            (BENCHMARKS[n][2], n, newest_full(BENCHMARKS[n][1]), None) for n in BENCHMARKS
        ]
        DOC.write_text(assemble(sections, DOC, quick=False, total_s=None))
        print(f"wrote {DOC}")
        return 0
    if os.geteuid() != 0:
        print("bench: the lab needs root", file=sys.stderr)
        return 2
    timeout = args.timeout or (120.0 if args.quick else 7200.0)
    started = time.monotonic()
    runs: dict[str, dict[str, Any]] = {}
    for name in names:
        module, _result, _title = BENCHMARKS[name]
        runs[name] = run_one(module, args.quick, timeout)
    total = time.monotonic() - started
    failed = [n for n, r in runs.items() if r["rc"] != 0]
    if args.quick:
        target = RESULTS / f"{dt.date.today().isoformat()}-suite-quick.md"
        sections = [(BENCHMARKS[n][2], n, stem(BENCHMARKS[n][1], True).with_suffix(".md"),
                     runs[n]) for n in names]  # fmt: skip
    else:
        target = DOC
        # Benchmarks not run now keep their newest earlier full result.
        sections = [
            (BENCHMARKS[n][2], n,
             stem(BENCHMARKS[n][1], False).with_suffix(".md") if n in runs
             else newest_full(BENCHMARKS[n][1]), runs.get(n))
            for n in BENCHMARKS
        ]  # fmt: skip
    target.write_text(assemble(sections, target, args.quick, total))
    print(f"\nsuite: {total:.0f} s; report {target}")
    for title, _name, path, _run in sections:
        for line in targets(path):
            print(f"  {title}: {line}")
    for n, r in runs.items():
        print(f"  {n:15s} {r['seconds']:6.0f} s  exit {r['rc']}")
    if failed:
        print(f"failed: {failed}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
