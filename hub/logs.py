"""JSON-lines logging for the hub process."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from confkit.logs import setup_logging as setup


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {"at": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
                 "level": record.levelname, "logger": record.name, "msg": record.getMessage()}
        if record.exc_info or record.exc_text:  # exc_text: the traceback as confkit.logs.Redactor left it
            entry["exc"] = record.exc_text or self.formatException(record.exc_info)  # type: ignore[arg-type]
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(level: int = logging.INFO, target: str | None = None) -> str:
    """:func:`confkit.logs.setup_logging`: journald with structured fields under systemd, else these JSON
    lines on stderr; secrets redacted (add the settings' with ``confkit.logs.redactor().add(settings)``)."""
    return setup(None, level, identifier="venue-hub", target=target, formatter=JsonFormatter(),
                 quiet=("uvicorn.access",))
