"""Structured logs: one JSON object per line on stderr, with the device id in every record."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

_CONTEXT_KEYS = ("device_id", "ticket_id", "event_id", "reason", "topic", "payload", "seq")


class JsonFormatter(logging.Formatter):
    def __init__(self, device_id: str) -> None:
        super().__init__()
        self.device_id = device_id

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": round(record.created, 3),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(record.created)),
            "level": record.levelname.lower(),
            "logger": record.name,
            "device_id": self.device_id,
            "msg": record.getMessage(),
        }
        for key in _CONTEXT_KEYS:
            value = record.__dict__.get(key)
            if value is not None:
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


def setup_logging(device_id: str, level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(device_id))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("aiomqtt", "paho"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("nfc").setLevel(logging.INFO)  # nfcpy's debug lines print card UIDs: never log them


def truncate(data: bytes | str, limit: int = 120) -> str:
    """A safe, short rendering of an untrusted payload for logs."""
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    text = "".join(c if c.isprintable() else "?" for c in text[:limit])
    return text + ("…" if len(data) > limit else "")
