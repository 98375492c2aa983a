"""libfaketime for a real gate process whose clock must cross the venue's midnight (Debian package
``faketime``, installed by scripts/setup.sh)."""

from __future__ import annotations

import os

import pytest

_LIBFAKETIME = ("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
                "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1", "/usr/lib/faketime/libfaketime.so.1")


def libfaketime() -> str:
    for path in _LIBFAKETIME:
        if os.path.exists(path):
            return path
    pytest.fail("libfaketime is not installed: run scripts/setup.sh (apt-get install faketime)")
