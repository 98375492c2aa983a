"""One error root for the protocol package; subclasses also inherit the matching builtin."""

from __future__ import annotations


class ProtocolError(Exception):
    """Root of every error raised by :mod:`protocol`."""


class MalformedError(ProtocolError, ValueError):
    """The bytes or text are not a well-formed protocol object (garbage, truncated, wrong version)."""


class SignatureError(ProtocolError, ValueError):
    """The signature does not verify, or names a key this side does not trust."""


class StaleError(ProtocolError, ValueError):
    """A well-signed message that is older than, or equal to, what was already applied (a replay)."""
