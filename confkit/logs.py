"""The logging set-up of every daemon: journald with structured fields under systemd, else stderr.

    setup_logging("gate-a1", identifier="venue-gate", secrets=[cfg])   # cfg: its SecretStr values are redacted
    log.info("admitted", extra={"ticket_id": 7, "reason": "admitted"})
    with log_context(ticket_id=7): ...                                  # the same fields for a block

**Where.** ``target="auto"`` (the default; env ``VENUE_LOG_TARGET`` or ``--log-target``): the journal
when systemd connected stderr to it (``JOURNAL_STREAM`` names stderr's device and inode) or when
``VENUE_JOURNAL_SOCKET`` names a journal socket; otherwise stderr in the daemon's usual format (one
JSON object per line for the gate, printer and hub; plain text for the kiosk).

**Journal fields.** Each record goes over journald's native protocol (``/run/systemd/journal/socket``,
through the maintained pure-Python ``logging-journald`` transport: no libsystemd build on the devices)
as ``MESSAGE``, ``PRIORITY``, ``SYSLOG_IDENTIFIER``, ``LOGGER``, ``CODE_FILE``/``CODE_LINE``/``CODE_FUNC``
and, when known, ``DEVICE_ID``, ``TICKET_ID``, ``EVENT_ID``, ``REASON``, ``TOPIC``, ``SEQ``, ``PAYLOAD``:
``journalctl -u venue-gate DEVICE_ID=gate-a1 TICKET_ID=7 -o verbose``.

**Secrets.** A :class:`Redactor` filter on every handler rewrites the message, the context fields and the
traceback of every record: the daemon's own secret values (its config's ``SecretStr`` fields, e.g. the
MQTT password) and anything that looks like one (``password=...``, ``"token": "..."``, ``Bearer ...``,
``Authorization: ...``, ``user:password@`` in URLs) become ``***``.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import re
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, SecretBytes, SecretStr

CONTEXT_KEYS = ("device_id", "ticket_id", "event_id", "reason", "topic", "payload", "seq")
JOURNAL_SOCKET = Path("/run/systemd/journal/socket")
Target = Literal["auto", "journal", "stderr"]
MASK = "***"

_context: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("venue_log_context", default=None)


@contextlib.contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Add ``fields`` (``ticket_id``, ``event_id``, ``reason``...) to every record logged in this block
    (this task's context); a record's own ``extra=`` wins."""
    token = _context.set({**(_context.get() or {}), **fields})
    try:
        yield
    finally:
        _context.reset(token)


class ContextFilter(logging.Filter):
    """Fills the context fields of a record: the daemon's device id, then :func:`log_context`."""

    def __init__(self, device_id: str | None = None) -> None:
        super().__init__()
        self.device_id = device_id

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in (_context.get() or {}).items():
            if record.__dict__.get(key) is None:
                setattr(record, key, value)
        if self.device_id is not None and record.__dict__.get("device_id") is None:
            record.device_id = self.device_id
        return True


# key=value, "key": "value", Authorization headers, bearer tokens, URL user:password@
_SECRET_WORDS = r"(?:password|passwd|pwd|secret|client_secret|token|access_token|refresh_token|api_?key|otp|pin)"
_PATTERNS = [
    (re.compile(r"(?i)(\bauthorization\b[\"']?\s*[:=]\s*[\"']?)(?:(?:bearer|basic|token)\s+)?[^\s\"',;}]+"),
     r"\g<1>" + MASK),
    (re.compile(r"(?i)(\b(?:bearer|basic)\s+)[A-Za-z0-9._~+/=-]{6,}"), r"\g<1>" + MASK),
    (re.compile(rf"(?i)([\"']{_SECRET_WORDS}[\"']\s*:\s*[\"'])[^\"']*([\"'])"), r"\g<1>" + MASK + r"\g<2>"),
    (re.compile(rf"(?i)(\b{_SECRET_WORDS}\s*=\s*[\"']?)[^\s\"'&,;)}}]+"), r"\g<1>" + MASK),
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@]+:)[^@\s/]+@"), r"\g<1>" + MASK + "@"),
]


class Redactor(logging.Filter):
    """Rewrites every record so no secret reaches a log: known values and secret-looking assignments."""

    def __init__(self, secrets: Iterable[object] = ()) -> None:
        super().__init__()
        self._values: set[str] = set()
        self.add(*secrets)

    def add(self, *secrets: object) -> None:
        """Redact these from now on: strings, ``SecretStr``, or pydantic models (their secret fields)."""
        for secret in secrets:
            for value in secret_values(secret):
                if len(value) >= 4:  # a 1-3 character "secret" would mask ordinary words
                    self._values.add(value)

    def redact(self, text: str) -> str:
        for value in sorted(self._values, key=len, reverse=True):
            if value in text:
                text = text.replace(value, MASK)
        for pattern, replacement in _PATTERNS:
            text = pattern.sub(replacement, text)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_venue_redacted", False):  # the same record reaches several handlers
            return True
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: keep what there is
            message = str(record.msg)
        record.msg, record.args = self.redact(message), None
        for key in CONTEXT_KEYS:
            value = record.__dict__.get(key)
            if isinstance(value, str):
                setattr(record, key, self.redact(value))
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        record._venue_redacted = True
        return True


def secret_values(obj: object, _depth: int = 0) -> Iterator[str]:
    """The secret strings in ``obj``: itself (str, ``SecretStr``) or a pydantic model's secret fields."""
    if _depth > 8 or obj is None:
        return
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, SecretStr):
        yield obj.get_secret_value()
    elif isinstance(obj, SecretBytes):
        yield obj.get_secret_value().decode("utf-8", "replace")
    elif isinstance(obj, BaseModel):
        for name in type(obj).model_fields:
            value = getattr(obj, name, None)
            if isinstance(value, SecretStr | SecretBytes | BaseModel):
                yield from secret_values(value, _depth + 1)
    elif isinstance(obj, list | tuple | set | frozenset):
        for item in obj:
            yield from secret_values(item, _depth + 1)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``time``, ``level``, ``logger``, ``device_id``, ``msg`` and the
    context fields that are set (the gate's and printer's stderr format)."""

    def __init__(self, device_id: str | None = None) -> None:
        super().__init__()
        self.device_id = device_id

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": round(record.created, 3),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(record.created)),
            "level": record.levelname.lower(),
            "logger": record.name,
            "device_id": record.__dict__.get("device_id") or self.device_id,
            "msg": record.getMessage(),
        }
        for key in CONTEXT_KEYS:
            value = record.__dict__.get(key)
            if value is not None and key not in out:
                out[key] = value
        if record.exc_info or record.exc_text:
            out["exc"] = record.exc_text or self.formatException(record.exc_info)  # type: ignore[arg-type]
        return json.dumps(out, ensure_ascii=False, default=str)


_PRIORITY = ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4), (logging.INFO, 6))


class JournalHandler(logging.Handler):
    """Sends each record to journald (native protocol) with the context fields as journal fields.
    A record that cannot be sent (journald gone) is written to stderr instead."""

    def __init__(self, identifier: str, socket_path: Path | str | None = None) -> None:
        from logging_journald import JournaldTransport

        super().__init__()
        self.identifier = identifier
        self.socket_path = Path(socket_path) if socket_path is not None else JOURNAL_SOCKET
        self.transport = JournaldTransport(self.socket_path)  # connects: OSError when there is no journal
        self.setFormatter(logging.Formatter("%(message)s"))

    @staticmethod
    def priority(levelno: int) -> int:
        return next((p for level, p in _PRIORITY if levelno >= level), 7)

    def fields(self, record: logging.LogRecord) -> list[tuple[str, Any]]:
        out: list[tuple[str, Any]] = [
            ("MESSAGE", self.format(record)),
            ("PRIORITY", self.priority(record.levelno)),
            ("SYSLOG_IDENTIFIER", self.identifier),
            ("LOGGER", record.name),
            ("CODE_FILE", record.pathname),
            ("CODE_LINE", record.lineno),
            ("CODE_FUNC", record.funcName),
        ]
        if record.threadName and record.threadName != "MainThread":
            out.append(("THREAD_NAME", record.threadName))
        for key in CONTEXT_KEYS:
            value = record.__dict__.get(key)
            if value is not None:
                out.append((key.upper(), value if isinstance(value, str | int | float) else str(value)))
        return out

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.transport.send(self.fields(record))
        except Exception:
            try:
                sys.stderr.write(f"(journal unavailable) {record.levelname} {record.name}: {self.format(record)}\n")
            except Exception:
                self.handleError(record)


def journal_stream_is_stderr(environ: dict[str, str] | None = None) -> bool:
    """systemd connected stderr to the journal (``JOURNAL_STREAM=<dev>:<inode>`` of stderr)."""
    value = (environ if environ is not None else os.environ).get("JOURNAL_STREAM", "")
    dev, _, ino = value.partition(":")
    if not (dev.isdigit() and ino.isdigit()):
        return False
    try:
        st = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return st.st_dev == int(dev) and st.st_ino == int(ino)


def choose_target(target: str | None = None, environ: dict[str, str] | None = None) -> Literal["journal", "stderr"]:
    """``journal`` or ``stderr`` for ``target`` (None: env ``VENUE_LOG_TARGET``, default ``auto``)."""
    env = environ if environ is not None else dict(os.environ)
    chosen = (target or env.get("VENUE_LOG_TARGET") or "auto").lower()
    if chosen == "journal":
        return "journal"
    if chosen == "stderr":
        return "stderr"
    return "journal" if env.get("VENUE_JOURNAL_SOCKET") or journal_stream_is_stderr(env) else "stderr"


_redactor = Redactor()


def redactor() -> Redactor:
    """The process's :class:`Redactor` (add a secret learned later, e.g. after enrolment)."""
    return _redactor


def setup_logging(device_id: str | None = None, level: int = logging.INFO, *, identifier: str | None = None,
                  target: str | None = None, formatter: logging.Formatter | None = None,
                  secrets: Iterable[object] = (), quiet: Iterable[str] = ("aiomqtt", "paho")) -> str:
    """Install the one root handler of this daemon; returns ``"journal"`` or ``"stderr"``.

    ``formatter``: the stderr format (default :class:`JsonFormatter`). ``secrets``: values or config models
    whose secret fields are redacted. ``quiet``: loggers held at WARNING."""
    identifier = identifier or os.path.basename(sys.argv[0] or "python") or "python"
    _redactor.add(*secrets)
    chosen = choose_target(target)
    handler: logging.Handler
    if chosen == "journal":
        path = os.environ.get("VENUE_JOURNAL_SOCKET") or JOURNAL_SOCKET
        try:
            handler = JournalHandler(identifier, path)
        except OSError as exc:
            print(f"logging: journal socket {path} unusable ({exc}); logging to stderr", file=sys.stderr)
            chosen = "stderr"
    if chosen == "stderr":
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(formatter or JsonFormatter(device_id))
    handler.addFilter(ContextFilter(device_id))
    handler.addFilter(_redactor)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in quiet:
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("nfc").setLevel(logging.INFO)  # nfcpy's debug lines print card UIDs: never log them
    return chosen


def truncate(data: bytes | str, limit: int = 120) -> str:
    """A safe, short rendering of an untrusted payload for logs."""
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    text = "".join(c if c.isprintable() else "?" for c in text[:limit])
    return text + ("…" if len(data) > limit else "")
