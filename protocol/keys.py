"""Ed25519 keys: the hub signs, devices verify against a keyring of trusted key ids and their purposes.

A key id is a small integer (0-255) so that it fits in one byte of a ticket token. Rotation keeps
several ids in the keyring for an overlap window.

Each trusted key has **purposes**: ``ticket`` (it signs ticket tokens, the key used on every sale) and
``control`` (it signs every envelope the hub sends: emergency commands, device commands and configs,
whitelists, acks, print jobs, key lists, online-check answers). A device refuses a token signed by a key
without ``ticket`` and an envelope signed by a key without ``control``, so the ticket key cannot open a
gate and the control key cannot mint tickets.

The hub keys file (and the ``keys`` of a signed key list) is a JSON object::

    {"1": {"key": "<base64 Ed25519 public key>", "purposes": ["ticket"]},
     "2": {"key": "<base64>", "purposes": ["control"]}}

The legacy form ``{"1": "<base64>"}`` (one key per id, no purposes) still loads and means *all
purposes* (a single-key hub from before the split).
"""

from __future__ import annotations

import base64
import contextlib
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nacl.exceptions
import nacl.signing

from protocol.errors import MalformedError, SignatureError

TICKET = "ticket"
CONTROL = "control"
PURPOSES = frozenset({TICKET, CONTROL})
ALL_PURPOSES = PURPOSES  # what a legacy key (no purposes named) is trusted for
MAX_KID = 255


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@dataclass(frozen=True)
class Signer:
    """A private signing key with its key id. Never log or serialise ``key``."""

    kid: int
    key: nacl.signing.SigningKey = field(repr=False)

    @classmethod
    def generate(cls, kid: int = 1) -> Signer:
        return cls(kid=kid, key=nacl.signing.SigningKey.generate())

    def sign(self, message: bytes) -> bytes:
        """Return the 64-byte detached signature of ``message``."""
        return self.key.sign(message).signature

    @property
    def public_key_b64(self) -> str:
        return _b64(bytes(self.key.verify_key))

    def save(self, path: Path) -> None:
        """Write the seed (base64, with the key id) to ``path`` with mode 0600, atomically and never over an
        existing file: the whole file appears at once (temp file + ``os.link``), or FileExistsError."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # mkstemp: 0600
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(f"{self.kid}:{_b64(bytes(self.key))}\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o600)
            os.link(tmp, path)  # fails with FileExistsError if another process made it first
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    @classmethod
    def load(cls, path: Path) -> Signer:
        text = path.read_text().strip()
        try:
            kid_s, seed_b64 = text.split(":", 1)
            return cls(kid=int(kid_s), key=nacl.signing.SigningKey(base64.b64decode(seed_b64)))
        except (ValueError, TypeError) as exc:
            raise MalformedError(f"signing key file {path} is not '<kid>:<base64 seed>'") from exc

    @classmethod
    def load_or_create(cls, path: Path, kid: int = 1) -> Signer:
        """The key in ``path``; made if missing. Two processes starting at once get the same key: the
        first to create the file wins, the other loads it."""
        if not 0 <= kid <= MAX_KID:
            raise MalformedError(f"key id {kid} is outside 0-{MAX_KID}")
        if path.exists():
            return cls.load(path)
        signer = cls.generate(kid)
        try:
            signer.save(path)
        except FileExistsError:
            return cls.load(path)
        return signer


def parse_purposes(value: Any) -> frozenset[str]:
    if not isinstance(value, list | tuple | set | frozenset) or not value:
        raise MalformedError("key purposes must be a non-empty list of 'ticket'/'control'")
    out = frozenset(str(v) for v in value)
    if not out <= PURPOSES:
        raise MalformedError(f"unknown key purpose(s) {sorted(out - PURPOSES)}; known: {sorted(PURPOSES)}")
    return out


class Keyring:
    """The set of hub public keys a device trusts, by key id, each with its purposes."""

    def __init__(self, keys: Mapping[int, nacl.signing.VerifyKey] | None = None,
                 purposes: Mapping[int, Iterable[str]] | None = None) -> None:
        """``keys`` without an entry in ``purposes`` are trusted for all purposes (legacy)."""
        self._keys: dict[int, nacl.signing.VerifyKey] = dict(keys or {})
        given = purposes or {}
        self._purposes: dict[int, frozenset[str]] = {
            k: frozenset(given[k]) if k in given else ALL_PURPOSES for k in self._keys}

    @classmethod
    def from_b64(cls, keys: Mapping[Any, Any]) -> Keyring:
        """From a keys file / key list: ``{kid: "<b64>"}`` (legacy: all purposes) or
        ``{kid: {"key": "<b64>", "purposes": [...]}}``; the two may be mixed."""
        verify: dict[int, nacl.signing.VerifyKey] = {}
        purposes: dict[int, frozenset[str]] = {}
        try:
            for k, v in keys.items():
                kid = int(k)
                if not 0 <= kid <= MAX_KID:
                    raise MalformedError(f"key id {kid} is outside 0-{MAX_KID}")
                if isinstance(v, Mapping):
                    verify[kid] = nacl.signing.VerifyKey(base64.b64decode(str(v["key"]), validate=True))
                    purposes[kid] = parse_purposes(v.get("purposes"))
                else:
                    verify[kid] = nacl.signing.VerifyKey(base64.b64decode(str(v), validate=True))
        except (ValueError, TypeError, KeyError, nacl.exceptions.CryptoError) as exc:
            raise MalformedError("a hub public key is not 32 bytes of base64") from exc
        return cls(verify, purposes)

    @classmethod
    def of(cls, *signers: Signer, purposes: Iterable[str] | None = None) -> Keyring:
        """Trust ``signers`` for ``purposes`` (default: all purposes, as a single-key hub)."""
        p = ALL_PURPOSES if purposes is None else frozenset(purposes)
        return cls({s.kid: s.key.verify_key for s in signers}, {s.kid: p for s in signers})

    def merged(self, other: Keyring) -> Keyring:
        """A keyring trusting both (``other`` wins for a kid in both)."""
        return Keyring({**self._keys, **other._keys}, {**self._purposes, **other._purposes})

    def without(self, kid: int) -> Keyring:
        return Keyring({k: v for k, v in self._keys.items() if k != kid},
                       {k: v for k, v in self._purposes.items() if k != kid})

    def to_purposes(self) -> dict[str, list[str]]:
        """kid -> its purposes, for logs and answers (no key material)."""
        return {str(k): sorted(self._purposes[k]) for k in sorted(self._keys)}

    def to_b64(self) -> dict[int, str]:
        """kid -> base64 public key (no purposes; see :meth:`to_entries`)."""
        return {k: _b64(bytes(v)) for k, v in self._keys.items()}

    def to_entries(self) -> dict[str, dict[str, Any]]:
        """The keys file / key list form: ``{"1": {"key": "<b64>", "purposes": ["ticket"]}, ...}``."""
        return {str(k): {"key": _b64(bytes(self._keys[k])), "purposes": sorted(self._purposes[k])}
                for k in sorted(self._keys)}

    def replace(self, other: Keyring) -> None:
        """Trust exactly ``other``'s keys from now on, in place (every holder of this keyring sees it)."""
        self._keys = dict(other._keys)
        self._purposes = dict(other._purposes)

    def kids(self, purpose: str | None = None) -> list[int]:
        return sorted(k for k in self._keys if purpose is None or purpose in self._purposes[k])

    def purposes(self, kid: int) -> frozenset[str]:
        return self._purposes.get(kid, frozenset())

    def verify(self, kid: int, message: bytes, signature: bytes, purpose: str | None = None) -> None:
        """Raise :class:`SignatureError` unless ``signature`` over ``message`` verifies under ``kid`` and
        (when given) ``kid`` is trusted for ``purpose``."""
        key = self._keys.get(kid)
        if key is None:
            raise SignatureError(f"unknown key id {kid}")
        if purpose is not None and purpose not in self._purposes[kid]:
            raise SignatureError(f"key id {kid} is not trusted for {purpose} (only {sorted(self._purposes[kid])})")
        try:
            key.verify(message, signature)
        except (nacl.exceptions.BadSignatureError, ValueError, TypeError) as exc:
            raise SignatureError(f"bad signature under key id {kid}") from exc
