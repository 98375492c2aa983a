#!/usr/bin/env bash
# Hand a ticket to the demo gate started by scripts/demo.sh: serial scanner (default), --camera, --nfc, --card.
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python scripts/show_to_gate.py "$@"
