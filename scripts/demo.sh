#!/usr/bin/env bash
# The main job: install what is missing, start a broker, the hub and a simulated gate, sell tickets,
# and print how to scan them. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/python scripts/demo.py
