"""The kiosk's ID-card reader through a socat pty pair: the frame, the check digit, unplug and replug."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from kiosk_agent.idcard import BadRead, FrameParser, IdCard, check_digit, encode_frame, id_number_problem
from kiosk_agent.idreader import IdReader
from tests.support.serial_pty import PtyPair

VALID = "11010519491231002X"  # the GB 11643 standard's own example
NAME = "张三"


def write(pty: PtyPair, data: bytes) -> None:
    with open(pty.host, "wb", buffering=0) as fh:
        fh.write(data)


def test_check_digit_of_known_numbers() -> None:
    assert check_digit(VALID[:17]) == "X"
    assert id_number_problem(VALID) is None
    assert id_number_problem("110105194912310021") == "id number check digit is wrong"
    assert id_number_problem("110105194913310021") == "id number has an invalid birth date"
    assert id_number_problem("11010519491231002") == "id number has the wrong form"


def test_parser_survives_noise_and_split_frames() -> None:
    parser = FrameParser()
    frame = encode_frame(VALID, NAME)
    out = parser.feed(b"\xff\xfegarbage" + frame[:7])
    assert out == [BadRead("bytes outside a frame")]
    assert parser.feed(frame[7:]) == [IdCard(VALID, NAME)]
    assert parser.feed(b"\x02" + b"x" * 300 + b"\x03") == [BadRead("frame longer than 256 bytes"),
                                                            BadRead("bytes outside a frame")]
    assert parser.feed(encode_frame(VALID, NAME, checksum=0)) == [BadRead("bad checksum")]
    assert parser.feed(frame) == [IdCard(VALID, NAME)]


@pytest.fixture
def pty(tmp_path: Path) -> Iterator[PtyPair]:
    pair = PtyPair(tmp_path / "pty", "idreader")
    pair.start()
    yield pair
    pair.stop()


async def _next(reads: asyncio.Queue[IdCard | BadRead]) -> IdCard | BadRead:
    return await asyncio.wait_for(reads.get(), 5.0)


async def test_reader_over_a_pty(pty: PtyPair) -> None:
    reads: asyncio.Queue[IdCard | BadRead] = asyncio.Queue()

    async def on_read(read: IdCard | BadRead) -> None:
        await reads.put(read)

    reader = IdReader(str(pty.device), on_read, reopen_delay=0.1)
    task = asyncio.create_task(reader.run())
    try:
        await asyncio.wait_for(reader.connected.wait(), 5)
        # a valid frame
        write(pty, encode_frame(VALID, NAME))
        assert await _next(reads) == IdCard(VALID, NAME)
        # split across writes, the way a reader's UART chunks it
        frame = encode_frame("44030519900101123" + check_digit("44030519900101123"), "李四")
        write(pty, frame[:5])
        await asyncio.sleep(0.1)
        write(pty, frame[5:17])
        await asyncio.sleep(0.1)
        write(pty, frame[17:])
        card = await _next(reads)
        assert isinstance(card, IdCard) and card.name == "李四" and card.masked().endswith(card.id_number[-1])
        # a bad checksum, a bad check digit, garbage: refused, and the reader reads on
        write(pty, encode_frame(VALID, NAME, checksum=0x55))
        assert await _next(reads) == BadRead("bad checksum")
        write(pty, encode_frame("110105194912310021", NAME))
        assert await _next(reads) == BadRead("id number check digit is wrong")
        write(pty, b"\x00\xff\xfe random noise \x03")
        assert await _next(reads) == BadRead("bytes outside a frame")
        write(pty, encode_frame(VALID, "王五"))
        assert await _next(reads) == IdCard(VALID, "王五")
        assert reader.health() == "ok"
        # unplug: the port disappears; the reader keeps trying and comes back when it is replugged
        pty.stop()
        for _ in range(100):  # polled: the reader exposes no "lost" event
            if reader.health() != "ok":
                break
            await asyncio.sleep(0.05)
        assert reader.health() == "missing"
        assert not task.done()
        await asyncio.sleep(0.3)
        pty.start()
        await asyncio.wait_for(reader.connected.wait(), 5)
        write(pty, encode_frame(VALID, NAME))
        assert await _next(reads) == IdCard(VALID, NAME)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
