from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from protocol.keys import Keyring, Signer
from tests.support.broker import Mosquitto


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """A fresh Mosquitto for one test, always stopped afterwards."""
    mosq = Mosquitto(tmp_path / "mosquitto")
    mosq.start()
    try:
        yield mosq
    finally:
        mosq.stop()


@pytest.fixture
def signer() -> Signer:
    return Signer.generate(kid=1)


@pytest.fixture
def keyring(signer: Signer) -> Keyring:
    return Keyring.of(signer)
