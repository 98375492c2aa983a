"""The serial scanner over a real socat pty pair: lines, garbage, and an unplugged port."""

from __future__ import annotations

import asyncio
from pathlib import Path

import serial

from gate_agent.checkin import Checker, Station
from gate_agent.scanner import MAX_LINE, LineSplitter, Scanner, decode_line
from gate_agent.store import Store
from protocol.keys import Keyring, Signer
from protocol.reasons import Reason
from tests.gate_helpers import NOW, eventually, token
from tests.support.serial_pty import PtyPair
from tests.test_gate_checkin import RecordingActuator


def test_line_splitter_cuts_overlong_lines_once_and_keeps_going() -> None:
    sp = LineSplitter()
    assert sp.feed(b"ab") == []
    assert sp.feed(b"c\r\nde\n\n") == [b"abc\r", b"de", b""]
    long = sp.feed(b"x" * 300) + sp.feed(b"x" * 300) + sp.feed(b"x" * 300 + b"\nnext\n")
    assert [len(x) for x in long] == [MAX_LINE + 1, 4] and long[1] == b"next"
    assert decode_line(b"\r") is None and decode_line(b"  ") is None
    assert decode_line(b"\xff\xfeA\r") == "\ufffd\ufffdA"


def write(dev: str, data: bytes) -> None:
    with serial.Serial(dev, 9600, timeout=1) as port:
        port.write(data)
        port.flush()


async def test_scanner_reads_codes_survives_junk_and_a_port_that_comes_back(
        tmp_path: Path, signer: Signer, keyring: Keyring) -> None:
    socat = PtyPair(tmp_path)
    socat.start()
    lines: list[str] = []

    async def on_line(text: str) -> None:
        lines.append(text)
        if text == "boom":
            raise RuntimeError("a handler bug must not stop the reader")

    scanner = Scanner(str(socat.device), on_line, reopen_delay=0.2)
    task = asyncio.create_task(scanner.run())
    try:
        await asyncio.wait_for(scanner.connected.wait(), 5)
        code = token(signer, 7)
        await asyncio.to_thread(write, str(socat.host), code.encode() + b"\r\n\r\n\n" + b"\x00\xff\xfe junk\n"
                                + b"boom\n" + b"Z" * 2000 + b"\n" + "票-é\n".encode())
        await eventually(lambda: len(lines) == 5, what="5 lines")
        assert lines[0] == code and lines[1] == "\x00\ufffd\ufffd junk" and lines[2] == "boom"
        assert len(lines[3]) == MAX_LINE + 1 and lines[4] == "票-é"
        # unplug: socat dies, the link path disappears; the scanner retries until it is back
        socat.stop()
        await eventually(lambda: not scanner.connected.is_set(), what="scanner notices the unplug")
        assert not socat.device.exists()
        await asyncio.sleep(0.5)
        socat.start()
        await asyncio.wait_for(scanner.connected.wait(), 5)
        await asyncio.to_thread(write, str(socat.host), b"after-replug\n")
        await eventually(lambda: lines[-1:] == ["after-replug"], what="reading resumed")
        assert not task.done()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        socat.stop()


async def test_garbage_from_the_scanner_is_journalled_as_malformed(tmp_path: Path, signer: Signer,
                                                                  keyring: Keyring) -> None:
    socat = PtyPair(tmp_path)
    socat.start()
    with Store.open(tmp_path / "g") as store:
        checker = Checker(Station("gate-1", 1, 1), store, keyring, RecordingActuator(), clock=lambda: NOW)
        scanner = Scanner(str(socat.device), checker.scan, reopen_delay=0.2)
        task = asyncio.create_task(scanner.run())
        try:
            await asyncio.wait_for(scanner.connected.wait(), 5)
            await asyncio.to_thread(write, str(socat.host), b"\x00\x01\x02\xff\r\n\n" + b"Q" * 600 + b"\n"
                                    + token(signer, 3).encode() + b"\n")
            await eventually(lambda: len(store.journal()) == 3, what="3 journalled scans")
            reasons = [e["reason"] for e in store.journal()]
            assert reasons == [Reason.MALFORMED, Reason.MALFORMED, Reason.UNKNOWN]
            assert store.journal()[1]["excerpt"] == "Q" * 40
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            socat.stop()
