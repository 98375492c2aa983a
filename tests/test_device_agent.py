"""The device agent is device-kind neutral: it runs against any :class:`confkit.device_agent.DeviceHost`.

Here the host is a small printer-like daemon written for the test (our own interface, no broker): its
config a pydantic model, its meta values a dict, its broker session a list of what was published. The
hub's messages are sealed with a real :class:`~protocol.keys.Signer`; the gate's host runs the same agent
against a real Mosquitto in :mod:`tests.test_provisioning_device`.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, SecretStr

from confkit.device_agent import EXIT_RESTART, META_COMMANDS, DeviceAgent, DeviceHost, Handler, with_hub_config
from confkit.enrolment import Identity, device_key, public_key_b64
from protocol.envelope import seal
from protocol.errors import SignatureError
from protocol.keys import Keyring, Signer
from protocol.provisioning import (
    KIND_COMMAND,
    KIND_CONFIG,
    KIND_KEYS,
    CommandPayload,
    CommandResult,
    ConfigAck,
    ConfigPayload,
    KeysPayload,
    ProvisioningTopics,
    seal_secret,
)

ME = "printer-3"
P = ProvisioningTopics()


class PrinterSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    device_id: str = ME
    poll_interval: float = 1.0
    paper: str = "58mm"


class BadSetting(ValueError):
    pass


class PrinterHost:
    """A printer daemon as the agent sees it."""

    software_version = "9.9.9"

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.birth: int | None = None
        self.config_version: int | None = None
        self.cfg = PrinterSettings()
        self.meta: dict[str, str] = {}
        self.handlers: dict[str, Handler] = {}
        self.key_topics: list[str] = []
        self.published: list[tuple[str, bytes]] = []
        self.logins: list[tuple[str, str]] = []
        self.keys_changes = 0
        self.unverified: list[tuple[str, Callable[[], bool]]] = []

    def validate_config(self, settings: dict[str, Any]) -> None:
        with_hub_config(PrinterSettings, self.cfg, settings, BadSetting)

    def get_meta(self, key: str) -> str | None:
        return self.meta.get(key)

    def set_meta(self, **values: str) -> None:
        self.meta.update(values)

    def serve(self, topic: str, handler: Handler) -> None:
        self.handlers[topic] = handler

    def serve_keys(self, topic: str, handler: Handler) -> None:
        self.key_topics.append(topic)
        self.handlers[topic] = handler

    async def publish(self, topic: str, payload: bytes) -> bool:
        self.published.append((topic, payload))
        return True

    def relogin(self, username: str, password: str) -> None:
        self.logins.append((username, password))

    async def resync(self) -> dict[str, Any]:
        return {"requested": "jobs"}

    async def keys_changed(self) -> None:
        self.keys_changes += 1

    def keys_unverified(self, reason: str, resolved: Callable[[], bool]) -> None:
        self.unverified.append((reason, resolved))

    def diagnostics(self) -> dict[str, Any]:
        return {"queue": 0}

    def acks(self) -> list[ConfigAck]:
        return [ConfigAck.model_validate_json(p) for t, p in self.published if t == P.config_ack(ME)]

    def results(self) -> list[CommandResult]:
        return [CommandResult.model_validate_json(p) for t, p in self.published if t == P.command_result(ME)]


def enrolled_printer(tmp_path: Path, signer: Signer) -> Path:
    directory = tmp_path / "identity"
    device_key(directory)
    Identity(device_id=ME, serial="PR-0003", kind="printer", broker_host="127.0.0.1", broker_port=1883,
             username=ME, password=SecretStr("pw-1"), hub_keys={str(signer.kid): signer.public_key_b64}).save(directory)
    return directory


def config(version: int, settings: dict[str, Any], signer: Signer, device: str = ME) -> bytes:
    body = ConfigPayload(device_id=device, version=version, issued_at=time.time(), config=settings)
    return seal(KIND_CONFIG, body.model_dump(mode="json"), signer)


def command(name: str, signer: Signer, *, command_id: str | None = None, ttl: float = 60,
            args: dict[str, Any] | None = None) -> tuple[str, bytes]:
    cid = command_id or uuid.uuid4().hex
    body = CommandPayload(device_id=ME, command_id=cid, name=name, issued_at=time.time(),  # type: ignore[arg-type]
                          expires_at=time.time() + ttl, args=args or {})
    return cid, seal(KIND_COMMAND, body.model_dump(mode="json"), signer)


@pytest.fixture
def signer() -> Signer:
    return Signer.generate(1)


def agent_on(tmp_path: Path, signer: Signer) -> tuple[DeviceAgent, PrinterHost, asyncio.Event]:
    host = PrinterHost(tmp_path)
    stop = asyncio.Event()
    checked: DeviceHost = host  # the test host implements the interface (mypy checks it)
    agent = DeviceAgent(enrolled_printer(tmp_path, signer), checked, Keyring.of(signer), stop)
    return agent, host, stop


async def test_a_printer_counts_births_and_serves_config_commands_and_keys(tmp_path: Path, signer: Signer) -> None:
    agent, host, _ = agent_on(tmp_path, signer)
    assert agent.start() == 1 and host.birth == 1 and host.config_version is None
    assert set(host.handlers) == {P.config(ME), P.command(ME), P.hub_keys()} and host.key_topics == [P.hub_keys()]
    agent.close()
    again = DeviceAgent(agent.identity_dir, host, agent.keyring, asyncio.Event())
    assert again.start() == 2 and host.meta["prov_birth"] == "2"
    again.close()


async def test_config_validated_by_the_host_hub_owned_keys_refused_older_ignored(
        tmp_path: Path, signer: Signer) -> None:
    agent, host, _ = agent_on(tmp_path, signer)
    agent.start()
    try:
        await agent.on_config(config(2, {"paper": "80mm"}, signer))
        assert [(a.version, a.applied) for a in host.acks()] == [(2, True)] and host.config_version == 2
        assert host.meta["prov_config"] == '{"paper":"80mm"}' and host.meta["prov_config_version"] == "2"
        await agent.on_config(config(1, {"paper": "58mm"}, signer))  # older: no ack, nothing changes
        await agent.on_config(config(3, {"paper": "x"}, signer, device="printer-9"))  # misaddressed
        assert len(host.acks()) == 1
        await agent.on_config(config(3, {"device_id": "printer-9"}, signer))  # a field of the model, yet hub-owned
        await agent.on_config(config(3, {"no_such_key": 1}, signer))  # the host's ConfigError
        assert [(a.version, a.applied) for a in host.acks()[1:]] == [(3, False), (3, False)]
        assert "device_id" in (host.acks()[1].error or "") and "no_such_key" in (host.acks()[2].error or "")
        assert host.config_version == 2 and host.meta["prov_config"] == '{"paper":"80mm"}'
        with pytest.raises(SignatureError):  # forged: refused before anything is read
            await agent.on_config(config(4, {"paper": "80mm"}, Signer.generate(1)))
    finally:
        agent.close()


async def test_commands_once_expired_refused_rotate_and_restart(tmp_path: Path, signer: Signer) -> None:
    agent, host, stop = agent_on(tmp_path, signer)
    agent.start()
    try:
        cid, diag = command("diagnostics", signer)
        await agent.on_command(diag)
        await agent.on_command(diag)  # the same id: not run again
        [result] = host.results()
        assert result.ok and result.result["software_version"] == "9.9.9" and result.result["queue"] == 0
        assert result.result["birth"] == 1 and "disk_free" in result.result
        _, expired = command("diagnostics", signer, ttl=-1)
        await agent.on_command(expired)
        assert host.results()[-1].error == "expired"
        _, resync = command("resync_whitelist", signer)
        await agent.on_command(resync)
        assert host.results()[-1].result == {"requested": "jobs"}
        _, rotate = command("rotate_credentials", signer,
                            args={"sealed": seal_secret({"password": "pw-2"}, public_key_b64(agent.key))})
        await agent.on_command(rotate)
        assert host.results()[-1].ok and host.logins == [(ME, "pw-2")]
        assert Identity.load(agent.identity_dir).password.get_secret_value() == "pw-2"
        assert not stop.is_set()
        restart_id, restart = command("restart", signer)
        await agent.on_command(restart)
        assert host.results()[-1].ok and stop.is_set() and agent.exit_code == EXIT_RESTART
        assert cid in host.meta[META_COMMANDS] and restart_id in host.meta[META_COMMANDS]
    finally:
        agent.close()


async def test_hub_keys_update_stored_in_the_identity_unverifiable_list_reported(
        tmp_path: Path, signer: Signer) -> None:
    agent, host, _ = agent_on(tmp_path, signer)
    agent.start()
    new = Signer.generate(2)
    try:
        body = KeysPayload(version=1, keys={"1": signer.public_key_b64, "2": new.public_key_b64}, issued_at=time.time())
        await agent.on_keys(seal(KIND_KEYS, body.model_dump(mode="json"), signer))
        assert agent.keyring.kids() == [1, 2] and host.keys_changes == 1
        assert Identity.load(agent.identity_dir).hub_keys_version == 1
        mallory = Signer.generate(3)
        forged = KeysPayload(version=5, keys={"3": mallory.public_key_b64}, issued_at=time.time())
        await agent.on_keys(seal(KIND_KEYS, forged.model_dump(mode="json"), mallory))
        [(reason, resolved)] = host.unverified
        assert "version 5" in reason and not resolved() and agent.keyring.kids() == [1, 2]
    finally:
        agent.close()
