#!/usr/bin/env bash
# Scan a ticket token into the demo gate, as a serial barcode scanner would (one code per line).
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -eq 1 ] || { echo "usage: scripts/scan.sh <ticket token>   (tokens are printed by scripts/demo.sh)" >&2; exit 2; }
[ -e var/demo/scanner ] || { echo "no demo gate is running: start scripts/demo.sh first" >&2; exit 1; }
printf '%s\r\n' "$1" > var/demo/scanner
