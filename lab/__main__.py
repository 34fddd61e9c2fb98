"""``python -m lab up`` builds the default lab and leaves it up; ``python -m lab sweep``
deletes labs whose owning process is gone (and stops what runs in them, by PID)."""

from __future__ import annotations

import argparse
import sys

from lab.netns import default_lab, lab_namespaces, owner_alive, sweep_leftovers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("up", help="create the default lab (spk, rtr1, rtr2) and leave it up")
    sub.add_parser("sweep", help="delete labs left by finished runs")
    sub.add_parser("list", help="list lab namespaces")
    sub.add_parser("leftovers", help="list labs of finished runs; exit 1 if there are any")
    args = parser.parse_args(argv)
    if args.cmd == "up":
        lab = default_lab()
        lab.detach()
        print(lab.describe())
        print("remove it with: python -m lab sweep")
    elif args.cmd == "sweep":
        for ns in sweep_leftovers():
            print(f"deleted {ns}")
    elif args.cmd == "leftovers":
        dead = [ns for ns in lab_namespaces() if not owner_alive(ns)]
        print("\n".join(dead))
        return 1 if dead else 0
    else:
        print("\n".join(lab_namespaces()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
