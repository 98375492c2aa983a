#!/usr/bin/env bash
# The test command: installs what is missing, lints, type-checks, then runs the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
echo "== ruff"; .venv/bin/ruff check protocol confkit hub gate_agent provisioning kiosk_agent printer_agent tests bench scripts
echo "== mypy"; .venv/bin/mypy
# three workers: the suite mostly waits on real processes (hub, gates, Mosquitto, PostgreSQL, HAProxy)
echo "== pytest"; .venv/bin/pytest -q -p no:cacheprovider -n 3 --dist loadfile "$@"
