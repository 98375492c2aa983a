"""The gate's logging: :mod:`confkit.logs` (journald with structured fields under systemd, else one JSON
object per line on stderr, with the device id in every record; secrets redacted). Kept for its imports."""

from __future__ import annotations

from confkit.logs import CONTEXT_KEYS, JsonFormatter, log_context, setup_logging, truncate

__all__ = ["CONTEXT_KEYS", "JsonFormatter", "log_context", "setup_logging", "truncate"]
