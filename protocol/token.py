"""Ticket tokens: what a QR code, a serial scanner line or an NFC NDEF text record carries.

Layout (21 bytes, big-endian) followed by a 64-byte Ed25519 signature, the whole in base64url
without padding: 114 characters, ASCII only, so zbar's byte-mode guessing cannot alter it.

    version u8 | key id u8 | ticket u32 | performance u32 | ticket type u16 |
    valid from u32 (unix s) | valid until u32 (unix s) | persons u8

The signature covers a domain tag plus the 21 bytes, so no other signed object can pose as a token.
"""

from __future__ import annotations

import base64
import binascii
import re
import struct
from dataclasses import dataclass

from protocol.errors import MalformedError
from protocol.keys import TICKET, Keyring, Signer

TOKEN_VERSION = 1
_LAYOUT = struct.Struct(">BBIIHIIB")
_SIG_LEN = 64
_RAW_LEN = _LAYOUT.size + _SIG_LEN
TOKEN_LENGTH = 114  # characters of base64url for 85 bytes, without padding
_DOMAIN = b"ticket-token/v1\x00"
_ALPHABET = re.compile(r"^[A-Za-z0-9_-]+$")


@dataclass(frozen=True, slots=True)
class TicketToken:
    ticket_id: int
    performance_id: int
    ticket_type_id: int
    valid_from: int
    valid_until: int
    persons: int = 1
    kid: int = 0

    def payload(self) -> bytes:
        try:
            return _LAYOUT.pack(
                TOKEN_VERSION, self.kid, self.ticket_id, self.performance_id, self.ticket_type_id,
                self.valid_from, self.valid_until, self.persons,
            )
        except struct.error as exc:
            raise MalformedError(f"ticket {self.ticket_id}: a field is out of range ({exc})") from exc


def encode_token(token: TicketToken, signer: Signer) -> str:
    """Sign ``token`` with ``signer`` (its key id is written into the token) and return the text."""
    body = TicketToken(
        token.ticket_id, token.performance_id, token.ticket_type_id,
        token.valid_from, token.valid_until, token.persons, signer.kid,
    ).payload()
    raw = body + signer.sign(_DOMAIN + body)
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def parse_token(text: str) -> tuple[TicketToken, bytes, bytes]:
    """Parse without verifying. Returns (token, signed message, signature). Raises MalformedError."""
    text = text.strip()
    if len(text) != TOKEN_LENGTH or not _ALPHABET.match(text):
        raise MalformedError(f"not a ticket token ({len(text)} characters)")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise MalformedError("ticket token is not base64url") from exc
    if len(raw) != _RAW_LEN:
        raise MalformedError("ticket token has the wrong length")
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") != text:
        # the last character carries 2 data bits; other spellings of it must not pass as this token
        raise MalformedError("ticket token is not in canonical base64url")
    body, sig = raw[: _LAYOUT.size], raw[_LAYOUT.size :]
    version, kid, ticket, perf, ttype, vfrom, vuntil, persons = _LAYOUT.unpack(body)
    if version != TOKEN_VERSION:
        raise MalformedError(f"ticket token version {version} is not supported")
    token = TicketToken(ticket, perf, ttype, vfrom, vuntil, persons, kid)
    return token, _DOMAIN + body, sig


def decode_token(text: str, keyring: Keyring) -> TicketToken:
    """Parse and verify under a key trusted for ``ticket``. Raises MalformedError (garbage) or
    SignatureError (altered, invented, or signed by a key that may not sign tickets)."""
    token, message, sig = parse_token(text)
    keyring.verify(token.kid, message, sig, purpose=TICKET)
    return token
