"""Signed envelopes for everything the hub sends that a device acts on.

Wire form: one JSON header line, a newline, then the body bytes exactly as signed.

    {"v":1,"kind":"whitelist.delta","kid":1,"enc":"json","sig":"<base64>"}\n<body>

The signature covers a domain tag, the kind, the encoding and the body bytes on the wire, so a
receiver verifies before it decompresses or parses anything (no zip bombs from strangers), and a
message of one kind cannot be replayed as another. ``enc`` is ``json`` or ``zlib+json``.
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from typing import Any

from protocol import PROTOCOL_VERSION
from protocol.errors import MalformedError
from protocol.keys import CONTROL, Keyring, Signer

_DOMAIN = b"envelope/v1\x00"
_MAX_INFLATED = 256 * 1024 * 1024


def _signed_bytes(kind: str, enc: str, body: bytes) -> bytes:
    return _DOMAIN + kind.encode() + b"\x00" + enc.encode() + b"\x00" + body


def seal(kind: str, payload: Any, signer: Signer, *, compress: bool = False) -> bytes:
    """Serialise ``payload`` as JSON, optionally zlib it, sign it, and return the wire bytes."""
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    enc = "json"
    if compress:
        body, enc = zlib.compress(body, 1), "zlib+json"
    sig = signer.sign(_signed_bytes(kind, enc, body))
    header = {"v": PROTOCOL_VERSION, "kind": kind, "kid": signer.kid, "enc": enc,
              "sig": base64.b64encode(sig).decode()}
    return json.dumps(header, separators=(",", ":")).encode() + b"\n" + body


def reseal(data: bytes, signer: Signer) -> bytes:
    """The hub's own stored envelope signed again with ``signer`` (the same kind, encoding and body
    bytes), unless it is signed by that key already. Not verified: only for what the hub itself stored, so
    a device that trusts only the current keys can still read what it missed across a key rotation."""
    header, body = _header(data)
    if header["kid"] == signer.kid:
        return data
    kind, enc = str(header["kind"]), str(header["enc"])
    sig = signer.sign(_signed_bytes(kind, enc, body))
    new = {**header, "kid": signer.kid, "sig": base64.b64encode(sig).decode()}
    return json.dumps(new, separators=(",", ":")).encode() + b"\n" + body


def peek_version(data: bytes) -> int | None:
    """The ``version`` in an envelope's JSON body, unverified (for a log line or to skip an old key list
    that no longer verifies); None if there is none."""
    try:
        header, body = _header(data)
        if header["enc"] != "json":
            return None
        value = json.loads(body).get("version")
    except (MalformedError, ValueError, AttributeError):
        return None
    return value if isinstance(value, int) else None


def peek_kid(data: bytes) -> int | None:
    """The envelope's key id, unverified (to tell "signed by a key I do not know" from a forgery)."""
    try:
        kid = _header(data)[0]["kid"]
    except MalformedError:
        return None
    return kid if isinstance(kid, int) else None


def peek_kind(data: bytes) -> str:
    """The envelope's kind, unverified (for dispatch only; always :func:`open_envelope` after)."""
    return str(_header(data)[0]["kind"])


def _header(data: bytes) -> tuple[dict[str, Any], bytes]:
    head, sep, body = data.partition(b"\n")
    if not sep:
        raise MalformedError("signed envelope has no header line")
    try:
        header = json.loads(head)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedError("signed envelope header is not JSON") from exc
    if not isinstance(header, dict) or not {"v", "kind", "kid", "enc", "sig"} <= header.keys():
        raise MalformedError("signed envelope header lacks v/kind/kid/enc/sig")
    if header["v"] != PROTOCOL_VERSION:
        raise MalformedError(f"signed envelope version {header['v']!r} is not supported")
    return header, body


def open_envelope(data: bytes, keyring: Keyring, *, kinds: set[str] | None = None) -> tuple[str, Any]:
    """Verify (under a key trusted for ``control``) and decode. Returns (kind, payload). Raises
    MalformedError or SignatureError."""
    header, body = _header(data)
    kind, enc = str(header["kind"]), str(header["enc"])
    if kinds is not None and kind not in kinds:
        raise MalformedError(f"unexpected envelope kind {kind!r}")
    if enc not in ("json", "zlib+json") or not isinstance(header["kid"], int):
        raise MalformedError(f"signed envelope has a bad encoding {enc!r} or key id")
    try:
        sig = base64.b64decode(str(header["sig"]), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MalformedError("signature is not base64") from exc
    keyring.verify(header["kid"], _signed_bytes(kind, enc, body), sig, purpose=CONTROL)
    try:
        if enc == "zlib+json":
            inflater = zlib.decompressobj()
            body = inflater.decompress(body, _MAX_INFLATED)
            if inflater.unconsumed_tail:
                raise MalformedError("signed envelope inflates beyond the size limit")
        return kind, json.loads(body)
    except (zlib.error, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedError(f"signed {kind} body does not decode") from exc
