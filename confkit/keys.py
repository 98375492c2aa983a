"""The hub's public keys, as every device daemon loads them from its ``hub_keys_file``.

    >>> keyring = load_keyring(cfg.hub_keys_file, ConfigError)   # the daemon's own ConfigError
"""

from __future__ import annotations

import json
from pathlib import Path

from protocol.errors import MalformedError
from protocol.keys import Keyring

__all__ = ["KeyringError", "load_keyring"]


class KeyringError(ValueError):
    """The hub keys file cannot be read (raised when the caller names no error type of its own)."""


def load_keyring(path: Path, error: type[Exception] = KeyringError) -> Keyring:
    """The hub's public keys with their purposes, as ``python -m hub export-keys`` writes them:
    ``{"1": {"key": "<base64>", "purposes": ["ticket"]}, "2": {"key": ..., "purposes": ["control"]}}``; the
    legacy form ``{"1": "<base64>"}`` (a single-key hub) means all purposes. Raises ``error`` (as
    :func:`confkit.load` does) naming the ``hub_keys_file`` key and the path."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or not data:
            raise ValueError("not a non-empty JSON object")
        return Keyring.from_b64(data)
    except (OSError, ValueError, MalformedError) as exc:
        raise error(f"hub_keys_file: cannot load hub public keys from {path}: {exc}") from exc
