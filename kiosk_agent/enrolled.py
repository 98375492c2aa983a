"""An enrolled kiosk (``--bootstrap``): its config from the identity, and its host for the device agent.

:class:`KioskHost` is what :class:`confkit.device_agent.DeviceAgent` serves the hub's config, commands and
key updates through: the kiosk's :class:`~kiosk_agent.heartbeat.KioskLink`, :class:`~kiosk_agent.store.KioskStore`
and :class:`~kiosk_agent.config.KioskConfig`. The identity gives the device id and the broker login (the
heartbeat is on); the kiosk's hub login (``[hub] username/password``, a user with the ``kiosk`` role and the
kiosk's device id) stays in the config file or the hub config. A kiosk keeps no hub data: ``resync_whitelist``
has nothing to do (it answers ok, with a note).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confkit.device_agent import DeviceAgent, identity_mqtt, stored_hub_config
from confkit.device_agent import with_hub_config as _with_hub_config
from confkit.enrolment import Identity
from confkit.linked_host import LinkedHost
from kiosk_agent import ConfigError, __version__
from kiosk_agent.config import KioskConfig
from kiosk_agent.heartbeat import KioskLink
from kiosk_agent.store import KioskStore

log = logging.getLogger(__name__)


def with_hub_config(cfg: KioskConfig, settings: dict[str, Any]) -> KioskConfig:
    """``cfg`` with the hub's settings over it; raises ConfigError naming a bad or hub-owned key."""
    return _with_hub_config(KioskConfig, cfg, settings, ConfigError)


def with_identity(cfg: KioskConfig, identity: Identity) -> KioskConfig:
    """``cfg`` with the enrolled device's id and broker login, and the heartbeat on (it carries the agent)."""
    return cfg.model_copy(update={"device_id": identity.device_id, "mqtt": identity_mqtt(cfg.mqtt, identity),
                                  "heartbeat": True})


def stored_config(cfg: KioskConfig, store: KioskStore) -> KioskConfig:
    """``cfg`` with the last hub config applied on this device over it (a bad one is logged and skipped)."""
    return stored_hub_config(KioskConfig, cfg, store.get_meta, ConfigError)


class KioskHost(LinkedHost):
    """The kiosk as a :class:`confkit.device_agent.DeviceHost`."""

    software_version = __version__

    def __init__(self, cfg: KioskConfig, link: KioskLink, store: KioskStore,
                 diagnostics: Callable[[], dict[str, Any]]) -> None:
        super().__init__(cfg.data_dir, link, store)
        self.cfg, self.link, self._diagnostics = cfg, link, diagnostics

    def validate_config(self, settings: dict[str, Any]) -> None:
        with_hub_config(self.cfg, settings)

    async def resync(self) -> dict[str, Any]:
        return {"note": "nothing to resync: a kiosk keeps no hub data (the hub answers every lookup)"}

    def diagnostics(self) -> dict[str, Any]:
        return self._diagnostics()


@dataclass
class Enrolment:
    """What an enrolled kiosk's app needs: its identity, its store (open for the daemon's life) and the
    event the hub's ``restart`` sets; ``agent`` once the app started it (its ``exit_code``)."""

    identity_dir: Path
    store: KioskStore
    stop: asyncio.Event
    agent: DeviceAgent | None = None


def kiosk_device_agent(identity_dir: Path, link: KioskLink, store: KioskStore, cfg: KioskConfig,
                       diagnostics: Callable[[], dict[str, Any]], stop: asyncio.Event) -> DeviceAgent:
    """The device agent of an enrolled kiosk; :meth:`~confkit.device_agent.DeviceAgent.start` it before the
    link runs. The kiosk verifies nothing with the hub keys itself: they are kept current for the agent."""
    return DeviceAgent(identity_dir, KioskHost(cfg, link, store, diagnostics), Identity.load(identity_dir).keyring(),
                       stop)
