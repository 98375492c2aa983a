"""Hand a ticket to the demo gate (``scripts/demo.sh``) the way a patron would.

    scan.sh <token>             the serial barcode scanner reads it (one line, as a real scanner sends)
    scan.sh --camera <token>    a phone showing the QR is held up to the camera for two seconds
    scan.sh --nfc <token>       an NFC tag carrying the token in an NDEF text record is tapped
    scan.sh --card <uid hex>    a member card / annual pass with only its UID is tapped
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import segno

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "var" / "demo"


def serial(token: str) -> None:
    with open(DEMO / "scanner", "wb", buffering=0) as port:
        port.write(token.encode() + b"\r\n")


def camera(token: str) -> None:
    image = DEMO / "camera" / f"phone-{time.monotonic_ns()}.png"
    tmp = image.with_suffix(".part")
    segno.make_qr(token, error="m").save(str(tmp), kind="png", scale=6, border=4)
    tmp.rename(image)
    time.sleep(2.0)  # held in view; the gate reports it once
    image.unlink(missing_ok=True)


def tap(*emulator_args: str) -> None:
    port = (DEMO / "rfid-port").read_text().strip()
    card = subprocess.Popen([sys.executable, "-m", "tests.nfc_emulator", port, *emulator_args], cwd=ROOT,
                            stdout=subprocess.DEVNULL)
    try:
        time.sleep(4.0)  # the simulated reader polls about once a second
    finally:
        card.terminate()
        card.wait(5)


def main(argv: list[str]) -> int:
    if not (DEMO / "scanner").exists():
        print("no demo gate is running: start scripts/demo.sh first", file=sys.stderr)
        return 1
    if len(argv) == 1:
        serial(argv[0])
    elif len(argv) == 2 and argv[0] == "--camera":
        camera(argv[1])
    elif len(argv) == 2 and argv[0] == "--nfc":
        tap("8899aabbccddeeff", argv[1])
    elif len(argv) == 2 and argv[0] == "--card":
        uid = argv[1].replace(":", "").lower()
        if len(uid) != 16 or any(c not in "0123456789abcdef" for c in uid):
            print("the simulated card is a FeliCa tag: give its 8-byte IDm as 16 hex digits", file=sys.stderr)
            return 2
        tap(uid)
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
