"""Benchmarks: run with ``python -m bench.<name>`` (they use the netns lab, need root)."""

from __future__ import annotations
