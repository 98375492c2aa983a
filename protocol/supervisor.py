"""Supervisors who may force-admit a refused ticket on a handheld, with a PIN or their own card.

Gates get only a salted PBKDF2 hash of each PIN and the card's UID hash (:func:`protocol.cards.card_key`),
in the signed check-in rules; a forced admission is journalled with who forced it and why it had
been refused.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import Any

from protocol.errors import MalformedError

PIN_ITERATIONS = 60_000  # ~30 ms on a Raspberry Pi 4: cheap to check once, slow to guess offline
_PIN = re.compile(r"^[0-9]{4,12}\Z")
_HASH = re.compile(r"^pbkdf2-sha256\$([0-9]{4,7})\$([0-9a-f]{32})\$([0-9a-f]{64})\Z")
_KEY = re.compile(r"^[0-9a-f]{32}\Z")


def check_pin(pin: str) -> str:
    if not isinstance(pin, str) or not _PIN.match(pin):
        raise MalformedError("a supervisor PIN is 4 to 12 digits")
    return pin


def hash_pin(pin: str, *, iterations: int = PIN_ITERATIONS, salt: bytes | None = None) -> str:
    check_pin(pin)
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", pin.encode(), salt, iterations)
    return f"pbkdf2-sha256${iterations}${salt.hex()}${digest.hex()}"


def pin_matches(pin_hash: str, pin: str) -> bool:
    m = _HASH.match(pin_hash)
    if m is None or not isinstance(pin, str) or not _PIN.match(pin):
        return False
    digest = hashlib.pbkdf2_hmac("sha256", pin.encode(), bytes.fromhex(m[2]), int(m[1]))
    return hmac.compare_digest(digest.hex(), m[3])


@dataclass(frozen=True, slots=True)
class Supervisor:
    supervisor_id: int
    name: str
    pin_hash: str | None = None
    card_key: str | None = None

    def to_wire(self) -> dict[str, Any]:
        return {"id": self.supervisor_id, "name": self.name, "pin": self.pin_hash, "card": self.card_key}

    @classmethod
    def from_wire(cls, data: Any) -> Supervisor:
        try:
            sid, name, pin, card = data["id"], data["name"], data.get("pin"), data.get("card")
        except (KeyError, TypeError, AttributeError) as exc:
            raise MalformedError("supervisor entry is malformed") from exc
        if (type(sid) is not int or not isinstance(name, str) or not 1 <= len(name) <= 64
                or (pin is not None and (not isinstance(pin, str) or not _HASH.match(pin)))
                or (card is not None and (not isinstance(card, str) or not _KEY.match(card)))):
            raise MalformedError("supervisor entry is malformed")
        return cls(sid, name, pin, card)
