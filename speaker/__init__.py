"""The speaker: a Trio runtime announcing service IP pools over BGP, guarded by BFD."""

from __future__ import annotations

__version__ = "0.1.0"
