"""An enrolled gate (``--bootstrap``): its config from the identity, and its host for the device agent.

:class:`GateHost` is what :class:`confkit.device_agent.DeviceAgent` serves the hub's config, commands and
key updates through: the gate's :class:`~gate_agent.link.Link`, :class:`~gate_agent.store.Store` (its
``meta`` table) and :class:`~gate_agent.config.GateConfig`.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from confkit.device_agent import DeviceAgent, identity_mqtt, stored_hub_config
from confkit.device_agent import with_hub_config as _with_hub_config
from confkit.enrolment import Identity
from confkit.linked_host import LinkedHost
from gate_agent import ConfigError, __version__
from gate_agent.config import GateConfig
from gate_agent.link import Link
from gate_agent.store import Store
from protocol.keys import Keyring


def with_hub_config(cfg: GateConfig, settings: dict[str, Any]) -> GateConfig:
    """``cfg`` with the hub's settings over it; raises ConfigError naming a bad or hub-owned key."""
    return _with_hub_config(GateConfig, cfg, settings, ConfigError)


def with_identity(cfg: GateConfig, identity: Identity) -> GateConfig:
    """``cfg`` with the enrolled device's id, kind, group/channel and broker login."""
    update: dict[str, Any] = {"device_id": identity.device_id, "mqtt": identity_mqtt(cfg.mqtt, identity)}
    if identity.kind in ("gate", "handheld"):
        update["kind"] = identity.kind
    if identity.group_id is not None:
        update["group_id"] = identity.group_id
    if identity.channel_id is not None:
        update["channel_id"] = identity.channel_id
    return cfg.model_copy(update=update)


def stored_config(cfg: GateConfig, store: Store) -> GateConfig:
    """``cfg`` with the last hub config applied on this device over it (a bad one is logged and skipped)."""
    return stored_hub_config(GateConfig, cfg, store.get_meta, ConfigError)


class GateHost(LinkedHost):
    """The gate as a :class:`confkit.device_agent.DeviceHost`."""

    software_version = __version__

    def __init__(self, cfg: GateConfig, link: Link, store: Store) -> None:
        super().__init__(cfg.data_dir, link, store)
        self.cfg, self.link, self.store = cfg, link, store

    def validate_config(self, settings: dict[str, Any]) -> None:
        with_hub_config(self.cfg, settings)

    async def resync(self) -> dict[str, Any]:
        await self.link.resync()
        return {"requested": "snapshot", "had_seq": self.store.whitelist_seq}

    def diagnostics(self) -> dict[str, Any]:
        return {"outbox": self.store.outbox_count(), "whitelist_seq": self.store.whitelist_seq}


def gate_device_agent(identity_dir: Path, link: Link, store: Store, keyring: Keyring, cfg: GateConfig,
                   stop: asyncio.Event) -> DeviceAgent:
    """The device agent of an enrolled gate; :meth:`~confkit.device_agent.DeviceAgent.start` it before the
    link runs."""
    return DeviceAgent(identity_dir, GateHost(cfg, link, store), keyring, stop)
