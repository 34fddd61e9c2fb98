"""The speaker: a Trio runtime announcing service IP pools over BGP, guarded by BFD."""

from __future__ import annotations

from speaker import lazyimport

__version__ = "0.1.0"

# Before anything imports trio, which would load OpenSSL for features rarely used
# (speaker/lazyimport.py).
lazyimport.defer()
