"""Benchmarks on the netns lab (root): ``python -m bench [--quick] [names...]`` runs the
suite and writes docs/performance.md; ``python -m bench.<name> [--quick]`` runs one.

Modules: dataplane (0), failover (1), bfd_detection (2), bgp_throughput (3),
footprint (4), bfd_scale (5, driver bfd_hold), start_reload (6), scale_product (7,
with the flooding peer hostile_peer); shared helpers in bench.common.
Results: bench/results/<date>-<name>[-quick].{json,md}.
"""

from __future__ import annotations
