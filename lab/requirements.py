"""What the lab needs from the machine, and a one-line reason when it is missing."""

from __future__ import annotations

import os
import shutil

# command -> Debian package that provides it
TOOLS = {
    "ip": "iproute2",
    "tc": "iproute2",
    "nft": "nftables",
    "gobgpd": "gobgpd",
    "gobgp": "gobgpd",
    "/usr/lib/frr/zebra": "frr",
    "/usr/lib/frr/bfdd": "frr",
    "/usr/lib/frr/bgpd": "frr",
    "vtysh": "frr",
    "bird": "bird2",
    "birdc": "bird2",
    "dumpcap": "tshark",
    "tshark": "tshark",
    "ping": "iputils-ping",
    "iptables": "iptables",
    "stress-ng": "stress-ng",
}
ALIASES = {
    "frr": ("/usr/lib/frr/zebra", "/usr/lib/frr/bfdd", "/usr/lib/frr/bgpd", "vtysh"),
    "gobgp": ("gobgpd", "gobgp"),
    "bird": ("bird", "birdc"),
    "capture": ("dumpcap", "tshark"),
    "netns": ("ip", "tc", "nft", "iptables"),
}


def missing(*needs: str) -> str | None:
    """None if everything needed is here, else why not (one line)."""
    if os.geteuid() != 0:
        return "lab needs root (network namespaces, nftables, daemons)"
    absent = []
    for need in ("netns", *needs):
        for tool in ALIASES.get(need, (need,)):
            found = os.access(tool, os.X_OK) if tool.startswith("/") else shutil.which(tool)
            if not found:
                absent.append(f"{tool} (apt-get install {TOOLS.get(tool, '?')})")
    if absent:
        return "lab tools missing: " + ", ".join(absent)
    return None
