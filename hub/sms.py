"""Sending one-time codes by SMS: the :class:`SmsGateway` interface and the development file gateway.

    gateway = FileGateway(Path("var/hub/sms.txt"))
    gateway.send("13800000000", "Your code ... 123456", code="123456")   # appends "13800000000\t123456"

A gateway never logs the code; the hub logs only that a code was sent (and to which phone, masked).
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Protocol

from hub.config import SmsSettings

log = logging.getLogger(__name__)


def mask_phone(phone: str) -> str:
    return phone[:3] + "*" * max(len(phone) - 7, 0) + phone[-4:] if len(phone) > 7 else "*" * len(phone)


class SmsGateway(Protocol):
    def send(self, phone: str, text: str, *, code: str) -> None:
        """Send ``text`` (which contains ``code``) to ``phone``; raise OSError when it cannot."""


class FileGateway:
    """Development gateway: appends ``phone<TAB>code`` lines to a file (tests read the code there)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def send(self, phone: str, text: str, *, code: str) -> None:
        del text
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # 0600: it holds phone numbers and live codes (an existing file is tightened too)
        with self._lock, os.fdopen(os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), "a",
                                   encoding="utf-8") as out:
            os.fchmod(out.fileno(), 0o600)
            out.write(f"{phone}\t{code}\n")
        log.info("one-time code sent to %s (development file gateway)", mask_phone(phone))


def make_gateway(settings: SmsSettings) -> SmsGateway:
    return FileGateway(settings.path)
