from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from protocol.keys import Keyring, Signer
from tests.support.broker import Mosquitto
from tests.support.processes import GateProcess, HubProcess
from tests.support.scenario import Show, seed_show
from tests.support.secure_broker import SecureMosquitto

# The suite runs with the machine on UTC (processes it starts inherit it) while venues are in
# Asia/Shanghai: a "day" taken from the machine's clock instead of the venue's shows up as a failure.
os.environ["TZ"] = "UTC"
time.tzset()


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
def secure_broker(tmp_path: Path) -> Iterator[SecureMosquitto]:
    """A fresh Mosquitto with dynamic security (no anonymous access) and a TLS listener; always stopped."""
    mosq = SecureMosquitto(tmp_path / "secure-mosquitto")
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


@pytest.fixture
def hub_process(broker: Mosquitto, tmp_path: Path) -> Iterator[HubProcess]:
    """``python -m hub`` on the test's broker, logged in as admin; always stopped afterwards."""
    proc = HubProcess(tmp_path / "hub", broker.port)
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()
        proc.api.close()


@pytest.fixture
def show(hub_process: HubProcess) -> Show:
    """A performance on sale now, with adult and staff ticket types and one channel for adults."""
    return seed_show(hub_process)


@pytest.fixture
def gates() -> Iterator[list[GateProcess]]:
    """Gate processes a test starts (append each): every one is stopped afterwards."""
    started: list[GateProcess] = []
    try:
        yield started
    finally:
        for gate in started:
            gate.stop_all()
