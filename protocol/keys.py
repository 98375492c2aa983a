"""Ed25519 keys: the hub signs, devices verify against a keyring of trusted key ids.

A key id is a small integer (0-255) so that it fits in one byte of a ticket token. Rotation keeps
several ids in the keyring for an overlap window.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass, field
from pathlib import Path

import nacl.exceptions
import nacl.signing

from protocol.errors import MalformedError, SignatureError


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
        """Write the seed (base64, with the key id) to ``path`` with mode 0600."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(f"{self.kid}:{_b64(bytes(self.key))}\n")
        os.chmod(path, 0o600)

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
        if path.exists():
            return cls.load(path)
        signer = cls.generate(kid)
        signer.save(path)
        return signer


class Keyring:
    """The set of hub public keys a device trusts, by key id."""

    def __init__(self, keys: dict[int, nacl.signing.VerifyKey] | None = None) -> None:
        self._keys: dict[int, nacl.signing.VerifyKey] = dict(keys or {})

    @classmethod
    def from_b64(cls, keys: dict[int, str]) -> Keyring:
        try:
            return cls({int(k): nacl.signing.VerifyKey(base64.b64decode(v)) for k, v in keys.items()})
        except (ValueError, TypeError, nacl.exceptions.CryptoError) as exc:
            raise MalformedError("a hub public key is not 32 bytes of base64") from exc

    @classmethod
    def of(cls, *signers: Signer) -> Keyring:
        return cls({s.kid: s.key.verify_key for s in signers})

    def to_b64(self) -> dict[int, str]:
        return {k: _b64(bytes(v)) for k, v in self._keys.items()}

    def replace(self, other: Keyring) -> None:
        """Trust exactly ``other``'s keys from now on, in place (every holder of this keyring sees it)."""
        self._keys = dict(other._keys)

    def kids(self) -> list[int]:
        return sorted(self._keys)

    def verify(self, kid: int, message: bytes, signature: bytes) -> None:
        """Raise :class:`SignatureError` unless ``signature`` over ``message`` verifies under ``kid``."""
        key = self._keys.get(kid)
        if key is None:
            raise SignatureError(f"unknown key id {kid}")
        try:
            key.verify(message, signature)
        except (nacl.exceptions.BadSignatureError, ValueError, TypeError) as exc:
            raise SignatureError(f"bad signature under key id {kid}") from exc
