"""The Trio floor: a Trio program that does nothing but wake ``--rate`` times a second.

    python -m bench.trio_floor --rate 15 [--seconds S]

``bench.footprint`` runs it beside the idle speakers, at the rate our speaker wakes
(its voluntary context switches per second), to show how much of our idle CPU is
the cost of Trio's event loop waking at all on this machine, before any of our code.
"""

from __future__ import annotations

import argparse
import math
import sys

import trio


async def wake(rate: float, seconds: float) -> None:
    end = trio.current_time() + seconds
    while trio.current_time() < end:
        await trio.sleep(1 / rate)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.trio_floor", description=__doc__)
    ap.add_argument("--rate", type=float, required=True, help="wake-ups per second")
    ap.add_argument("--seconds", type=float, default=math.inf, help="then exit (default: never)")
    args = ap.parse_args(argv)
    print("started", flush=True)
    trio.run(wake, args.rate, args.seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
