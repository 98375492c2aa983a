"""A Type 3 (FeliCa) tag emulated by nfcpy's own card mode over its ``udp`` driver, in its own process.

    python -m tests.nfc_emulator PORT IDM_HEX [TEXT] [URI]

Prints ``emulator ready`` once the frontend is open, then answers readers on udp:localhost:PORT
until killed. With TEXT (and URI) the tag holds an NDEF message with a text (and URI) record;
without, an empty NDEF message (a plain member card). See /work/shared/hw-recipes/r2_nfcpy_udp.py.
"""

from __future__ import annotations

import signal
import struct
import sys
from typing import Any

import ndef
import nfc


def _memory(records: list[Any]) -> bytearray:
    msg = b"".join(ndef.message_encoder(records)) if records else b""
    area = bytearray(msg) + bytearray((-len(msg)) % 16 + 16 * 4)
    attr = bytearray(16)
    attr[0], attr[1], attr[2] = 0x10, 1, 1  # version 1.0, blocks per read, per write
    attr[3:5] = struct.pack(">H", len(area) // 16)  # nmaxb
    attr[10] = 1  # read/write
    attr[11:14] = struct.pack(">I", len(msg))[1:]  # NDEF length, 24 bit
    attr[14:16] = struct.pack(">H", sum(attr[:14]))
    return attr + area


def emulate(port: int, idm: bytes, records: list[Any]) -> None:
    mem = _memory(records)

    def on_startup(target: Any) -> Any:
        target.brty = "212F"
        target.sensf_res = b"\x01" + idm + bytes.fromhex("01E0000000FFFF00") + b"\x12\xfc"
        return target

    def on_connect(tag: Any) -> bool:
        def read(block: int, *_: Any) -> bytes | None:
            return bytes(mem[block * 16:(block + 1) * 16]) if block < len(mem) // 16 else None

        tag.add_service(0x0009, read, lambda *a: False)
        tag.add_service(0x000B, read, lambda *a: False)
        return True

    clf = nfc.ContactlessFrontend(f"udp:localhost:{port}")
    print("emulator ready", port, flush=True)
    try:
        while True:  # a long listen window: every re-listen re-binds the socket and loses frames
            clf.connect(card={"on-startup": on_startup, "on-connect": on_connect,
                              "on-release": lambda tag: True, "timeout": 3600})
    finally:
        clf.close()


def main(argv: list[str]) -> None:
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    port, idm = int(argv[0]), bytes.fromhex(argv[1])
    records: list[Any] = []
    if len(argv) > 2:
        records.append(ndef.TextRecord(argv[2]))
    if len(argv) > 3:
        records.append(ndef.UriRecord(argv[3]))
    emulate(port, idm, records)


if __name__ == "__main__":
    main(sys.argv[1:])
