#!/usr/bin/env bash
# Sets everything up (idempotent) and runs the lab's failover demo. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m lab.demo "$@"
