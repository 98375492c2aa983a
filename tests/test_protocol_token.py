"""Ticket tokens: compact, text-safe, and rejected when altered or invented."""

from __future__ import annotations

import base64

import pytest

from protocol.errors import MalformedError, SignatureError
from protocol.keys import Keyring, Signer
from protocol.token import TOKEN_LENGTH, TicketToken, decode_token, encode_token

TOKEN = TicketToken(ticket_id=123456, performance_id=42, ticket_type_id=3,
                    valid_from=1_790_000_000, valid_until=1_790_010_000, persons=4)


def test_token_round_trips_and_fits_a_small_qr(signer: Signer, keyring: Keyring) -> None:
    text = encode_token(TOKEN, signer)
    assert len(text) == TOKEN_LENGTH <= 120
    assert text.isascii() and all(c.isalnum() or c in "-_" for c in text)
    got = decode_token(text, keyring)
    assert got == TicketToken(123456, 42, 3, 1_790_000_000, 1_790_010_000, 4, kid=signer.kid)


def test_scanner_line_endings_are_tolerated(signer: Signer, keyring: Keyring) -> None:
    assert decode_token(encode_token(TOKEN, signer) + "\r\n", keyring).ticket_id == 123456


@pytest.mark.parametrize("position", [0, 5, 20, 40, 100, 113])
def test_every_altered_character_is_rejected(signer: Signer, keyring: Keyring, position: int) -> None:
    text = encode_token(TOKEN, signer)
    swapped = "A" if text[position] != "A" else "B"
    altered = text[:position] + swapped + text[position + 1:]
    with pytest.raises((SignatureError, MalformedError)):
        decode_token(altered, keyring)


def test_token_signed_by_another_key_is_forged(keyring: Keyring) -> None:
    impostor = Signer.generate(kid=1)
    with pytest.raises(SignatureError):
        decode_token(encode_token(TOKEN, impostor), keyring)


def test_token_naming_an_untrusted_key_id_is_forged(keyring: Keyring) -> None:
    with pytest.raises(SignatureError, match="unknown key id 9"):
        decode_token(encode_token(TOKEN, Signer.generate(kid=9)), keyring)


def test_an_invented_token_with_a_valid_layout_is_forged(keyring: Keyring) -> None:
    invented = base64.urlsafe_b64encode(TOKEN.payload() + bytes(64)).rstrip(b"=").decode()
    with pytest.raises(SignatureError):
        decode_token(invented, keyring)


@pytest.mark.parametrize("garbage", ["", "hello", "\x00\xff" * 57, "é" * 114, "A" * 300, "!" * 114])
def test_garbage_is_malformed(keyring: Keyring, garbage: str) -> None:
    with pytest.raises(MalformedError):
        decode_token(garbage, keyring)


def test_out_of_range_fields_cannot_be_encoded(signer: Signer) -> None:
    with pytest.raises(MalformedError):
        encode_token(TicketToken(1, 1, 1, 0, 1, persons=300), signer)


def test_rotation_keyring_accepts_both_keys(signer: Signer) -> None:
    new = Signer.generate(kid=2)
    ring = Keyring.of(signer, new)
    assert decode_token(encode_token(TOKEN, signer), ring).kid == 1
    assert decode_token(encode_token(TOKEN, new), ring).kid == 2
    assert Keyring.from_b64(ring.to_b64()).kids() == [1, 2]
