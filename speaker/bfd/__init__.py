"""BFD runtime: the I/O side of the sans-IO core in ``protocols.bfd``."""

from __future__ import annotations
