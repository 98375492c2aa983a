#!/usr/bin/env bash
# Install what this project needs on a fresh Debian/Ubuntu machine: system packages where missing,
# a virtual environment in .venv, and the project with its development tools. Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
command -v mosquitto_passwd >/dev/null 2>&1 || need+=(mosquitto-clients)
command -v socat >/dev/null 2>&1 || need+=(socat)
ldconfig -p 2>/dev/null | grep -q libzbar.so.0 || need+=(libzbar0)   # pyzbar's QR decoder
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)   # the hub-on-PostgreSQL test starts its own server
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
command -v chromium >/dev/null 2>&1 || need+=(chromium)   # the console's browser tests (Playwright)
fc-list :lang=zh 2>/dev/null | grep -q . || need+=(fonts-noto-cjk)   # Chinese text in ticket previews
command -v pdftotext >/dev/null 2>&1 || need+=(poppler-utils)   # the export tests read the PDF back
ls /usr/lib/*/faketime/libfaketime.so.1 >/dev/null 2>&1 || need+=(faketime)   # gate tests cross the venue's midnight
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || need+=(haproxy)   # the load balancer before several hubs (deploy/haproxy)
if [ ${#need[@]} -gt 0 ]; then
    echo "setup: installing system packages: ${need[*]}"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${need[@]}"
    # Debian starts a system broker on 1883; this project runs its own brokers on their own ports.
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv with $($PY --version)"
    $PY -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
echo "setup: installing the project and its pinned dependencies into .venv"
.venv/bin/python -m pip install -q -e '.[dev]' 2>&1 | grep -v "is ignored: it is neither" || true
.venv/bin/python -c 'import hub, gate_agent, protocol, aiomqtt, nacl, fastapi, sqlalchemy' \
    || { echo "setup: the project did not import; see the pip output above" >&2; exit 1; }
# Optional: emupos (an ESC/POS printer emulator, Python >= 3.13) in .venv313 for the printer tests.
if [ ! -x .venv313/bin/emupos ]; then
    PY313=""
    for cand in $(command -v python3.13 2>/dev/null) $HOME/.pyenv/versions/3.13*/bin/python3.13 \
                /usr/local/bin/python3.13 /usr/bin/python3.13; do
        # a pyenv shim exists but fails when 3.13 is not the selected version: use what really runs
        if [ -x "$cand" ] && "$cand" -c 'import sys; assert sys.version_info >= (3, 13)' >/dev/null 2>&1; then
            PY313=$cand; break
        fi
    done
    if [ -n "$PY313" ]; then
        echo "setup: creating .venv313 with emupos (optional, for tests/test_printer_emupos.py)"
        { "$PY313" -m venv .venv313 && .venv313/bin/pip install -q emupos; } >/dev/null 2>&1 \
            || echo "setup: emupos not installed (optional; the printer emulator tests will skip)"
    fi
fi
echo "setup: done"
