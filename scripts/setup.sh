#!/usr/bin/env bash
# Idempotent setup on Debian bookworm as root: the lab's daemons and tools from
# Debian's packages, and a venv at .venv with the project and its test/dev extras.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
for pair in gobgpd:gobgpd gobgp:gobgpd /usr/lib/frr/bfdd:frr vtysh:frr bird:bird2 \
            birdc:bird2 tshark:tshark dumpcap:tshark nft:nftables tc:iproute2 ip:iproute2 \
            stress-ng:stress-ng ps:procps ping:iputils-ping iptables:iptables systemd-analyze:systemd \
            promtool:prometheus; do
    cmd=${pair%%:*} pkg=${pair##*:}
    if ! command -v "$cmd" >/dev/null 2>&1 && [ ! -x "$cmd" ]; then need_apt+=("$pkg"); fi
done
if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then need_apt+=(python3-venv); fi
if [ ${#need_apt[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "setup: need root to install: ${need_apt[*]}" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    # tshark asks whether non-root users may capture; answer for it.
    echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends $(printf '%s\n' "${need_apt[@]}" | sort -u) >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
stamp=.venv/.installed-$(sha1sum pyproject.toml | cut -c1-12)
if [ ! -f "$stamp" ]; then
    # pip's output goes to a log; shown only if the install fails.
    if ! { .venv/bin/pip install -q --upgrade pip && .venv/bin/pip install -q -e '.[dev]'; } \
        >.venv/install.log 2>&1; then
        cat .venv/install.log >&2
        exit 1
    fi
    rm -f .venv/.installed-*
    touch "$stamp"
fi
