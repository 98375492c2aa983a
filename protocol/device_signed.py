"""What a device says about itself, signed with its own enrolled key: check-in event batches and
emergency states.

Wire form, like the hub's envelopes (:mod:`protocol.envelope`) but under another domain tag, so a device
signature can never pass for a hub one or the other way round:

    {"v":1,"kind":"checkin.events","device":"gate-7","sig":"<base64>"}\\n<JSON body>

The signature covers the domain tag, the kind, the device id and the body bytes on the wire, so a batch
signed by one device cannot be presented as another's, nor as another kind of message. The hub looks
the device's public key up in its own registry (never in the message) and verifies before it parses.

    >>> import nacl.signing
    >>> key = nacl.signing.SigningKey.generate()
    >>> wire = seal_device(KIND_EVENTS, {"n": 1}, "gate-7", key)
    >>> open_device(wire, KIND_EVENTS, "gate-7", key.verify_key)
    {'n': 1}
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

import nacl.exceptions
import nacl.signing

from protocol import PROTOCOL_VERSION
from protocol.errors import MalformedError, SignatureError
from protocol.topics import check_device_id

KIND_EVENTS = "checkin.events"
KIND_EMERGENCY_STATE = "emergency.state"
DEVICE_KINDS = frozenset({KIND_EVENTS, KIND_EMERGENCY_STATE})
_DOMAIN = b"device-signed/v1\x00"
MAX_HEADER = 512


def _signed_bytes(kind: str, device_id: str, body: bytes) -> bytes:
    return _DOMAIN + kind.encode() + b"\x00" + device_id.encode() + b"\x00" + body


def verify_key(public_key_b64: str) -> nacl.signing.VerifyKey:
    """The registry's base64 public key as a VerifyKey; MalformedError if it is not one."""
    try:
        raw = base64.b64decode(public_key_b64, validate=True)
        return nacl.signing.VerifyKey(raw)
    except (binascii.Error, ValueError, TypeError, nacl.exceptions.ValueError) as exc:
        raise MalformedError("device public key is not a base64 Ed25519 key") from exc


def seal_device(kind: str, payload: Any, device_id: str, key: nacl.signing.SigningKey) -> bytes:
    """``payload`` as JSON, signed by the device ``device_id`` with its own key."""
    if kind not in DEVICE_KINDS:
        raise ValueError(f"unknown device-signed kind {kind!r}")
    check_device_id(device_id)
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    sig = key.sign(_signed_bytes(kind, device_id, body)).signature
    header = {"v": PROTOCOL_VERSION, "kind": kind, "device": device_id, "sig": base64.b64encode(sig).decode()}
    return json.dumps(header, separators=(",", ":")).encode() + b"\n" + body


def _split(data: bytes) -> tuple[dict[str, Any], bytes]:
    head, sep, body = data.partition(b"\n")
    if not sep or len(head) > MAX_HEADER:
        raise MalformedError("not a device-signed message: no signature header line")
    try:
        header = json.loads(head)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedError("device-signed header is not JSON") from exc
    if not isinstance(header, dict) or not {"v", "kind", "device", "sig"} <= header.keys():
        raise MalformedError("device-signed header lacks v/kind/device/sig")
    if header["v"] != PROTOCOL_VERSION:
        raise MalformedError(f"device-signed version {header['v']!r} is not supported")
    if not isinstance(header["kind"], str) or not isinstance(header["device"], str):
        raise MalformedError("device-signed kind and device must be strings")
    return header, body


def is_device_signed(data: bytes) -> bool:
    """Does ``data`` look like a device-signed message (a header line naming a device)? Unverified."""
    try:
        _split(data)
    except MalformedError:
        return False
    return True


def peek_device(data: bytes) -> tuple[str, str]:
    """(kind, device id) from the header, unverified: for a log line or to find the key to verify with."""
    header, _ = _split(data)
    return header["kind"], header["device"]


def open_device(data: bytes, kind: str, device_id: str, key: nacl.signing.VerifyKey) -> Any:
    """Verify ``data`` as a ``kind`` message of ``device_id`` under its registered ``key``; return the
    decoded JSON body. Raises MalformedError (not this kind or device, not decodable) or SignatureError."""
    body = verified_body(data, kind, device_id, key)
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedError(f"signed {kind} body is not JSON") from exc


def verified_body(data: bytes, kind: str, device_id: str, key: nacl.signing.VerifyKey) -> bytes:
    """As :func:`open_device`, but the verified body bytes, undecoded (for ``Model.model_validate_json``,
    which parses and validates in one pass)."""
    header, body = _split(data)
    if header["kind"] != kind:
        raise MalformedError(f"expected a {kind} message, got {str(header['kind'])[:40]!r}")
    if header["device"] != device_id:
        raise SignatureError(f"message signed as device {str(header['device'])[:70]!r}, not {device_id!r}")
    try:
        sig = base64.b64decode(str(header["sig"]), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MalformedError("device signature is not base64") from exc
    try:
        key.verify(_signed_bytes(kind, device_id, body), sig)
    except (nacl.exceptions.BadSignatureError, ValueError) as exc:
        raise SignatureError(f"signature of {device_id}'s {kind} does not verify under its registered key") from exc
    return body


def peek_body(data: bytes) -> Any:
    """The JSON body of a device-signed message, unverified (for test doubles and log excerpts only)."""
    _header, body = _split(data)
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedError("device-signed body is not JSON") from exc
