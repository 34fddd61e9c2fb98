"""The interop lab: namespaces, real routing daemons, faults and captures.

Importable by tests and by ``bench/``. Everything it starts is tracked by PID and
stopped by PID; namespaces are deleted on close. See docs/development.md.
"""

from __future__ import annotations

from lab.netns import Host, Lab, Link, default_lab
from lab.proc import LabError, Process, wait_until

__all__ = ["Host", "Lab", "LabError", "Link", "Process", "default_lab", "wait_until"]
