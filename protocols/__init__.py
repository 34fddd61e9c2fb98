"""Sans-IO protocol cores for BGP and BFD.

Nothing in this package performs I/O, reads a clock, sleeps, logs or draws random
numbers on its own: time and randomness are arguments, and results are returned as
values (packets to send, events, deadlines). ``tests/test_sans_io.py`` enforces this.
"""

from __future__ import annotations
