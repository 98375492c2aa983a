"""The ID-card (身份证) reader's serial frame and the ID number's check digit: pure, no I/O.

One frame per card read::

    STX(0x02) | "ID" | 18-char ID number | US(0x1F) | holder name (UTF-8) | checksum | ETX(0x03)

``checksum`` is the XOR of every byte between STX and the checksum (``"ID"`` .. end of the name), written
as two upper- or lower-case hex ASCII characters. The ID number must have the GB 11643-1999 form (6-digit
area code, valid birth date YYYYMMDD, 3-digit sequence, check character 0-9 or X) and its check digit.

    >>> parser = FrameParser()
    >>> parser.feed(encode_frame("11010519491231002X", "张三"))
    [IdCard(id_number='11010519491231002X', name='张三')]
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

STX, ETX, US = 0x02, 0x03, 0x1F
MAGIC = b"ID"
MAX_FRAME = 256  # bytes between STX and ETX; more is garbage
_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"
_FORM = re.compile(r"^\d{17}[\dX]$")


@dataclass(frozen=True, slots=True)
class IdCard:
    """A card read whose frame and ID number are both valid."""

    id_number: str
    name: str

    def masked(self) -> str:
        """The ID number as it may appear in logs: the area code and the check character only."""
        return self.id_number[:6] + "*" * 11 + self.id_number[-1]


@dataclass(frozen=True, slots=True)
class BadRead:
    """A frame (or noise) that was refused, and why; the card should be placed again."""

    reason: str


def check_digit(first17: str) -> str:
    """The GB 11643 check character of the first 17 digits."""
    total = sum(int(c) * w for c, w in zip(first17, _WEIGHTS, strict=True))
    return _CHECK[total % 11]


def id_number_problem(number: str) -> str | None:
    """Why ``number`` is not a valid 18-character resident ID number, or None when it is."""
    if not _FORM.match(number):
        return "id number has the wrong form"
    try:
        born = date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        return "id number has an invalid birth date"
    if born.year < 1900:
        return "id number has an invalid birth date"
    if check_digit(number[:17]) != number[17]:
        return "id number check digit is wrong"
    return None


def xor(data: bytes) -> int:
    value = 0
    for b in data:
        value ^= b
    return value


def encode_frame(id_number: str, name: str, *, checksum: int | None = None) -> bytes:
    """The frame a reader sends for this card (``checksum`` overrides it, for tests)."""
    body = MAGIC + id_number.encode("ascii") + bytes([US]) + name.encode("utf-8")
    value = xor(body) if checksum is None else checksum
    return bytes([STX]) + body + f"{value:02X}".encode("ascii") + bytes([ETX])


def decode_frame(body: bytes) -> IdCard | BadRead:
    """Decode the bytes between STX and ETX."""
    if len(body) < len(MAGIC) + 18 + 1 + 2 or not body.startswith(MAGIC):
        return BadRead("frame too short or not an ID frame")
    payload, check = body[:-2], body[-2:]
    try:
        expected = int(check.decode("ascii"), 16)
    except (UnicodeDecodeError, ValueError):
        return BadRead("checksum is not hex")
    if xor(payload) != expected:
        return BadRead("bad checksum")
    number_raw, sep, name_raw = payload[len(MAGIC):].partition(bytes([US]))
    if not sep:
        return BadRead("no separator after the id number")
    try:
        number = number_raw.decode("ascii").upper()
        name = name_raw.decode("utf-8")
    except UnicodeDecodeError:
        return BadRead("frame is not valid text")
    problem = id_number_problem(number)
    if problem:
        return BadRead(problem)
    return IdCard(number, name.strip())


class FrameParser:
    """Turns the reader's byte stream into reads; bytes outside STX..ETX are reported once per run."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._in_frame = False
        self._noise = False

    def feed(self, data: bytes) -> list[IdCard | BadRead]:
        out: list[IdCard | BadRead] = []
        for b in data:
            if b == STX:
                if self._in_frame:
                    out.append(BadRead("frame interrupted by a new STX"))
                self._flush_noise(out)
                self._buf.clear()
                self._in_frame = True
            elif not self._in_frame:
                if b not in (0x0A, 0x0D):
                    self._noise = True
            elif b == ETX:
                out.append(decode_frame(bytes(self._buf)))
                self._buf.clear()
                self._in_frame = False
            elif len(self._buf) >= MAX_FRAME:
                out.append(BadRead(f"frame longer than {MAX_FRAME} bytes"))
                self._buf.clear()
                self._in_frame = False
            else:
                self._buf.append(b)
        if not self._in_frame:
            self._flush_noise(out)
        return out

    def _flush_noise(self, out: list[IdCard | BadRead]) -> None:
        if self._noise:
            out.append(BadRead("bytes outside a frame"))
            self._noise = False
