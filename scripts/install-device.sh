#!/usr/bin/env bash
# Install one role of the venue system on a Debian / Raspberry Pi OS machine from nothing, as a systemd
# service (docs/operations.md, "Running as services"). Safe to re-run: packages, the user and the venv are
# brought up to date, the unit is replaced, the operator's config, env and bootstrap files are kept.
#
#   sudo scripts/install-device.sh gate|kiosk|printer|hub [--dry-run] [--prefix DIR] [--no-broker]
#
#   --dry-run     print every step, change nothing
#   --prefix DIR  write the files (unit, config skeleton, bootstrap, udev rules) under DIR instead of /, e.g. to
#                 build an image; the steps that act on the running system (apt-get, users, venv, systemctl)
#                 are printed and skipped
#   --no-broker   hub: the MQTT broker runs elsewhere (default: Mosquitto is installed on the hub machine)
set -euo pipefail

usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-2}"; }

ROLE="" DRY=0 PREFIX="" BROKER=1
while [ $# -gt 0 ]; do
    case "$1" in
        gate|kiosk|printer|hub) ROLE=$1 ;;
        --dry-run) DRY=1 ;;
        --prefix) [ $# -ge 2 ] || usage; PREFIX=$2; shift ;;
        --prefix=*) PREFIX=${1#--prefix=} ;;
        --no-broker) BROKER=0 ;;
        -h|--help) usage 0 ;;
        *) echo "install-device: unknown argument $1" >&2; usage ;;
    esac
    shift
done
[ -n "$ROLE" ] || usage

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)   # the checkout this script sits in
ROOT=""
if [ -n "$PREFIX" ]; then
    mkdir_cmd=(mkdir -p "$PREFIX")
    [ "$DRY" -eq 1 ] || "${mkdir_cmd[@]}"
    ROOT=$(cd "$PREFIX" 2>/dev/null && pwd || echo "${PREFIX%/}")
fi
SYSTEM=1; [ -n "$ROOT" ] && SYSTEM=0                    # act on the running system (only without --prefix)
if [ "$SYSTEM" -eq 1 ] && [ "$DRY" -eq 0 ] && [ "$(id -u)" -ne 0 ]; then
    echo "install-device: run as root (sudo $0 $ROLE), or try --dry-run / --prefix DIR" >&2
    exit 1
fi

USER_NAME="venue-$ROLE"
OPT=/opt/venue
VENV=$OPT/venv
ETC=/etc/venue
STATE=/var/lib/venue/$ROLE
UNIT="venue-$ROLE.service"

say() { printf 'install-device: %s\n' "$*"; }
# a step on the running system: printed; run unless --dry-run or --prefix
system() {
    local shown; shown=$(printf ' %q' "$@")
    if [ "$DRY" -eq 1 ]; then printf '+%s\n' "$shown"
    elif [ "$SYSTEM" -eq 0 ]; then printf 'skipped (--prefix):%s\n' "$shown"
    else printf '+%s\n' "$shown"; "$@"; fi
}
# write stdin to ROOT/PATH with MODE and OWNER (root:GROUP); KEEP=1: an existing file is left as it is
put() {
    local path=$1 mode=$2 group=$3 keep=$4 dest="$ROOT$1" tmp
    if [ "$keep" -eq 1 ] && [ -e "$dest" ]; then cat >/dev/null; say "kept $dest (exists)"; return; fi
    if [ "$DRY" -eq 1 ]; then cat >/dev/null; printf '+ write %s (mode %s, root:%s)\n' "$dest" "$mode" "$group"; return; fi
    mkdir -p "$(dirname "$dest")"
    tmp=$(mktemp "$dest.XXXXXX")
    cat >"$tmp"
    chmod "$mode" "$tmp"
    if [ "$SYSTEM" -eq 1 ]; then chown "root:$group" "$tmp"; fi
    mv -f "$tmp" "$dest"
    say "wrote $dest"
}
apt_has() { apt-cache show "$1" >/dev/null 2>&1; }

# --- 1. packages ------------------------------------------------------------------------------------------------
pkgs=(python3 python3-venv ca-certificates)
groups=()
case "$ROLE" in
    gate)
        pkgs+=(libzbar0 libusb-1.0-0)          # pyzbar's QR decoder (camera); libusb for nfcpy's USB readers
        apt_has python3-lgpio && pkgs+=(python3-lgpio)   # Raspberry Pi OS: gpiozero's pin factory (lgpio)
        groups=(gpio dialout video plugdev) ;;
    printer)
        pkgs+=(libusb-1.0-0 fonts-noto-cjk)   # python-escpos over USB; Chinese text drawn as raster
        groups=(lp dialout plugdev) ;;
    kiosk)
        if apt_has chromium; then pkgs+=(chromium); elif apt_has chromium-browser; then pkgs+=(chromium-browser)
        else pkgs+=(chromium); fi           # the touchscreen browser (started by the desktop session)
        groups=(dialout) ;;
    hub)
        [ "$BROKER" -eq 1 ] && pkgs+=(mosquitto mosquitto-clients)   # the venue broker next to the hub
        groups=() ;;
esac
say "role $ROLE: packages ${pkgs[*]}"
system apt-get update -q
system env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${pkgs[@]}"

# --- 2. the service user and its device groups ------------------------------------------------------------------
for g in "${groups[@]}"; do
    # the unit's SupplementaryGroups= fails the start if a group does not exist (no gpio group off a Pi)
    if [ "$SYSTEM" -eq 1 ] && [ "$DRY" -eq 0 ] && getent group "$g" >/dev/null; then continue; fi
    system groupadd --system -f "$g"
done
if [ "$SYSTEM" -eq 1 ] && [ "$DRY" -eq 0 ] && getent passwd "$USER_NAME" >/dev/null; then
    say "user $USER_NAME exists"
else
    system useradd --system --user-group --home-dir "$STATE" --no-create-home --shell /usr/sbin/nologin \
        --comment "venue $ROLE service" "$USER_NAME"
fi
if [ ${#groups[@]} -gt 0 ]; then
    system usermod -a -G "$(IFS=,; echo "${groups[*]}")" "$USER_NAME"
fi

# --- 3. the venv with the project -------------------------------------------------------------------------------
venv_args=()
# Raspberry Pi OS ships lgpio as a Debian package only: the gate's venv sees the system's site-packages
[ "$ROLE" = gate ] && venv_args+=(--system-site-packages)
if [ "$SYSTEM" -eq 1 ] && [ "$DRY" -eq 0 ] && [ -x "$VENV/bin/python" ]; then
    say "venv $VENV exists"
else
    system python3 -m venv "${venv_args[@]}" "$VENV"
fi
system "$VENV/bin/python" -m pip install -q --upgrade pip
system "$VENV/bin/python" -m pip install -q "$SRC"
if [ "$DRY" -eq 1 ]; then printf '+ copy %s/docs to %s%s/docs\n' "$SRC" "$ROOT" "$OPT"
else mkdir -p "$ROOT$OPT/docs" && cp -r "$SRC/docs/." "$ROOT$OPT/docs/"; fi

# --- 4. the unit ------------------------------------------------------------------------------------------------
put "/etc/systemd/system/$UNIT" 0644 root 0 <"$SRC/deploy/systemd/$UNIT"

# --- 5. config skeleton, secrets file, bootstrap -----------------------------------------------------------------
case "$ROLE" in
    gate)
        sed -e "s|^data_dir = \"var/gate-a1\" *|data_dir = \"$STATE\"            |" \
            -e "s|^hub_keys_file = \"var/hub/keys.json\"|hub_keys_file = \"$ETC/hub-keys.json\"|" \
            "$SRC/docs/examples/gate.toml" | put "$ETC/gate.toml" 0640 "$USER_NAME" 1
        serial=""
        [ -r /proc/device-tree/serial-number ] && serial=$(tr -d '\0' </proc/device-tree/serial-number)
        put "$ETC/gate-bootstrap.toml" 0640 "$USER_NAME" 1 <<EOF
# Enrolment of this gate (docs/provisioning.md). The agent runs with --bootstrap this file (the unit's
# VENUE_GATE_ARGS); at its first start it makes its key, logs its fingerprint and waits for ops to approve it:
#   provision approve <serial> --fingerprint <from the log> --device-id gate-a1 --group 1 --channel 1
serial = "${serial:-CHANGE-ME}"          # the device's serial number (label)
kind = "gate"                            # gate | handheld
hardware_model = "rpi-tripod"
identity_dir = "$STATE/identity"
# python -m hub --config hub.toml export-keys: each hub key with its purposes (docs/security.md "Keys")
hub_keys = { "1" = { key = "<ticket key, base64>", purposes = ["ticket"] }, "2" = { key = "<control key, base64>", purposes = ["control"] } }

[broker]
host = "broker.venue"
port = 8883
tls = true
ca_file = "$ETC/ca.pem"
username = "claim"
password = "<claim password>"
EOF
        put "$ETC/gate.env" 0600 root 1 <<'EOF'
# Read by systemd (as root) before venue-gate starts; never readable by the gate's user.
# A config-file gate (registered with `venue-gate --show-key`, no enrolment): uncomment
# VENUE_GATE_ARGS=
# GATE__ONLINE__PASSWORD=
# GATE__MQTT__PASSWORD=
EOF
        put /etc/udev/rules.d/70-venue-gate.rules 0644 root 0 <<'EOF'
# USB NFC readers for nfcpy (gate_agent/rfid.py): Sony RC-S380, RC-S380/S, ACS ACR122U, SCM SCL3711
SUBSYSTEM=="usb", ATTRS{idVendor}=="054c", ATTRS{idProduct}=="06c1", GROUP="plugdev", MODE="0660"
SUBSYSTEM=="usb", ATTRS{idVendor}=="054c", ATTRS{idProduct}=="06c3", GROUP="plugdev", MODE="0660"
SUBSYSTEM=="usb", ATTRS{idVendor}=="072f", ATTRS{idProduct}=="2200", GROUP="plugdev", MODE="0660"
SUBSYSTEM=="usb", ATTRS{idVendor}=="04e6", ATTRS{idProduct}=="5591", GROUP="plugdev", MODE="0660"
EOF
        put /etc/modprobe.d/venue-nfc.conf 0644 root 0 <<'EOF'
# the kernel's NFC drivers would claim the USB readers nfcpy drives from user space
blacklist pn533_usb
blacklist port100
EOF
        ;;
    hub)
        sed -e "s|sqlite:///var/hub/hub.db|sqlite:///$STATE/hub.db|" \
            -e "s|\"var/hub/signing.key\"|\"$STATE/signing.key\"|" \
            -e "s|\"var/hub/control.key\"|\"$STATE/control.key\"|" \
            "$SRC/docs/examples/hub.toml" | put "$ETC/hub.toml" 0640 "$USER_NAME" 1
        put "$ETC/hub.env" 0600 root 1 <<'EOF'
# Read by systemd (as root) before venue-hub starts; never readable by the hub's user.
HUB__ADMIN__PASSWORD=
# HUB__BROKER_ADMIN__PASSWORD=
EOF
        ;;
    kiosk)
        put "$ETC/kiosk.toml" 0640 "$USER_NAME" 1 <<EOF
# Kiosk agent configuration (kiosk_agent/config.py); env KIOSK__<KEY> overrides (KIOSK__HUB__PASSWORD=...).
# Check it: /opt/venue/venv/bin/venue-kiosk --config /etc/venue/kiosk.toml --validate-config
device_id = "kiosk-1"
printer_id = "printer-1"          # the ticket printer next to this kiosk
data_dir = "$STATE"               # kiosk.db: an enrolled kiosk's provisioning state (no personal data)

[hub]
url = "https://hub.venue:8000"
username = "kiosk-1"              # a hub user with the kiosk role; its password in /etc/venue/kiosk.env

[id_reader]
enabled = true
url = "/dev/ttyUSB0"

[ui]
host = "127.0.0.1"                # the browser runs on this machine: chromium --kiosk --app=http://127.0.0.1:8080/
port = 8080
EOF
        put "$ETC/kiosk-bootstrap.toml" 0640 "$USER_NAME" 1 <<EOF
# Enrolment of this kiosk (docs/provisioning.md), used when VENUE_KIOSK_ARGS=--bootstrap $ETC/kiosk-bootstrap.toml
# is set in $ETC/kiosk.env: the kiosk makes its key, logs its fingerprint and waits for ops to approve it
# (kind kiosk); its device id and broker login then come from the identity (the heartbeat is on).
serial = "CHANGE-ME"
kind = "kiosk"
hardware_model = "kiosk"
identity_dir = "$STATE/identity"
hub_keys = { "1" = { key = "<ticket key, base64>", purposes = ["ticket"] }, "2" = { key = "<control key, base64>", purposes = ["control"] } }

[broker]
host = "broker.venue"
port = 8883
tls = true
ca_file = "$ETC/ca.pem"
username = "claim"
password = "<claim password>"
EOF
        put "$ETC/kiosk.env" 0600 root 1 <<'EOF'
# Read by systemd (as root) before venue-kiosk starts; never readable by the kiosk's user.
KIOSK__HUB__PASSWORD=
# An enrolled kiosk (kiosk-bootstrap.toml):
# VENUE_KIOSK_ARGS=--bootstrap /etc/venue/kiosk-bootstrap.toml
EOF
        ;;
    printer)
        put "$ETC/printer.toml" 0640 "$USER_NAME" 1 <<EOF
# Printer agent configuration (printer_agent/config.py); env PRINTER__<KEY> overrides.
# Check it: /opt/venue/venv/bin/venue-printer --config /etc/venue/printer.toml --validate-config
device_id = "printer-1"
data_dir = "$STATE"
hub_keys_file = "$ETC/hub-keys.json"   # python -m hub --config hub.toml export-keys

[mqtt]
host = "broker.venue"
port = 8883
tls = true
ca_file = "$ETC/ca.pem"
username = "printer-1"                 # password: PRINTER__MQTT__PASSWORD in /etc/venue/printer.env

[printer]
kind = "network"                       # network | usb | serial | file (/dev/usb/lp0)
host = "192.0.2.10"
EOF
        put "$ETC/printer.env" 0600 root 1 <<'EOF'
# Read by systemd (as root) before venue-printer starts; never readable by the printer's user.
PRINTER__MQTT__PASSWORD=
EOF
        put /etc/udev/rules.d/70-venue-printer.rules 0644 root 0 <<'EOF'
# ESC/POS printers over USB (python-escpos, printer.kind = "usb"): Epson; add a line per other vendor id
SUBSYSTEM=="usb", ATTRS{idVendor}=="04b8", GROUP="plugdev", MODE="0660"
EOF
        ;;
esac

# --- 6. enable ---------------------------------------------------------------------------------------------------
if [ "$ROLE" = gate ] || [ "$ROLE" = printer ]; then
    system udevadm control --reload-rules
    system udevadm trigger --subsystem-match=usb
fi
system systemctl daemon-reload
system systemctl enable "$UNIT"

cat <<EOF

Next steps ($ROLE on $(uname -n)):
EOF
case "$ROLE" in
    gate) cat <<EOF
  1. Edit $ETC/gate.toml (scanner, actuator/turnstile pins, camera, rfid) and $ETC/gate-bootstrap.toml
     (serial, the hub's keys, the broker and the claim login); or, for a config-file gate, set
     VENUE_GATE_ARGS= in $ETC/gate.env, put the hub keys in $ETC/hub-keys.json and register its key:
     sudo -u $USER_NAME $VENV/bin/venue-gate --config $ETC/gate.toml --show-key
  2. Check: sudo -u $USER_NAME $VENV/bin/venue-gate --config $ETC/gate.toml --validate-config
  3. Start: systemctl start --no-block $UNIT   (it is "activating" until it can decide: enrolled, whitelist
     loaded, broker reached or offline). Approve it: provision list / provision approve ...
EOF
    ;;
    hub) cat <<EOF
  1. Edit $ETC/hub.toml ([http] host/TLS, [mqtt], [broker_admin]) and set HUB__ADMIN__PASSWORD in $ETC/hub.env.
  2. The broker: docs/broker-security.md (dynamic security, TLS listener)$([ "$BROKER" -eq 1 ] || echo " on its own machine").
  3. Start: systemctl start $UNIT, then export the keys for the devices:
     sudo -u $USER_NAME $VENV/bin/venue-hub --config $ETC/hub.toml export-keys --out /tmp/hub-keys.json
EOF
    ;;
    kiosk) cat <<EOF
  1. Edit $ETC/kiosk.toml (hub URL, printer id, ID-card reader) and KIOSK__HUB__PASSWORD in $ETC/kiosk.env.
  2. Start: systemctl start $UNIT; point the desktop session's browser at the UI:
     chromium --kiosk --app=http://127.0.0.1:8080/
EOF
    ;;
    printer) cat <<EOF
  1. Edit $ETC/printer.toml (printer kind and address, broker) and PRINTER__MQTT__PASSWORD in $ETC/printer.env;
     put the hub keys in $ETC/hub-keys.json.
  2. Start: systemctl start $UNIT
EOF
    ;;
esac
cat <<EOF
  Logs: journalctl -u $UNIT -f   (fields: journalctl -u $UNIT -o verbose; DEVICE_ID=... TICKET_ID=...)
EOF
