"""ExaBGP API process for the lab: append every line ExaBGP writes to it (JSON
messages) to the file named on the command line, a line at a time.

Run by ExaBGP itself (``process ... { run PYTHON lab/exabgp_sink.py FILE; }``), so it
is a plain script: it writes nothing back (ExaBGP would read that as commands) and
ends when ExaBGP closes its stdin.
"""

from __future__ import annotations

import sys


def main() -> None:
    with open(sys.argv[1], "a", buffering=1) as out:
        for line in sys.stdin:
            out.write(line)


if __name__ == "__main__":
    main()
