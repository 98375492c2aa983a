"""An enrolled printer (``--bootstrap``): its config from the identity, and its host for the device agent.

:class:`PrinterHost` is what :class:`confkit.device_agent.DeviceAgent` serves the hub's config, commands and
key updates through: the printer's :class:`~printer_agent.link.PrinterLink`, :class:`~printer_agent.store.JobStore`
(its ``meta`` table) and :class:`~printer_agent.config.PrinterAgentConfig`. A printer holds no hub data but
its print jobs, so ``resync_whitelist`` has nothing to do (it answers ok, with a note).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from confkit.device_agent import DeviceAgent, identity_mqtt, stored_hub_config
from confkit.device_agent import with_hub_config as _with_hub_config
from confkit.enrolment import Identity
from confkit.linked_host import LinkedHost
from printer_agent import ConfigError, __version__
from printer_agent.config import PrinterAgentConfig
from printer_agent.link import PrinterLink
from printer_agent.store import JobStore
from protocol.keys import Keyring

log = logging.getLogger(__name__)


def with_hub_config(cfg: PrinterAgentConfig, settings: dict[str, Any]) -> PrinterAgentConfig:
    """``cfg`` with the hub's settings over it; raises ConfigError naming a bad or hub-owned key."""
    return _with_hub_config(PrinterAgentConfig, cfg, settings, ConfigError)


def with_identity(cfg: PrinterAgentConfig, identity: Identity) -> PrinterAgentConfig:
    """``cfg`` with the enrolled device's id and broker login."""
    return cfg.model_copy(update={"device_id": identity.device_id, "mqtt": identity_mqtt(cfg.mqtt, identity)})


def stored_config(cfg: PrinterAgentConfig, store: JobStore) -> PrinterAgentConfig:
    """``cfg`` with the last hub config applied on this device over it (a bad one is logged and skipped)."""
    return stored_hub_config(PrinterAgentConfig, cfg, store.get_meta, ConfigError)


class PrinterHost(LinkedHost):
    """The printer as a :class:`confkit.device_agent.DeviceHost`."""

    software_version = __version__

    def __init__(self, cfg: PrinterAgentConfig, link: PrinterLink, store: JobStore) -> None:
        super().__init__(cfg.data_dir, link, store)
        self.cfg, self.link, self.store = cfg, link, store

    def validate_config(self, settings: dict[str, Any]) -> None:
        with_hub_config(self.cfg, settings)

    async def resync(self) -> dict[str, Any]:
        return {"note": "nothing to resync: a printer keeps no hub data but its print jobs"}

    def diagnostics(self) -> dict[str, Any]:
        return {"queue": self.store.queue_depth(), "unsent_results": len(self.store.unsent_results()),
                "set_aside": self.store.set_aside_count()}


def printer_device_agent(identity_dir: Path, link: PrinterLink, store: JobStore, keyring: Keyring,
                         cfg: PrinterAgentConfig, stop: asyncio.Event) -> DeviceAgent:
    """The device agent of an enrolled printer; :meth:`~confkit.device_agent.DeviceAgent.start` it before the
    link runs. ``keyring``: the one the printer's :class:`~printer_agent.service.PrintService` verifies jobs
    with (replaced in place on a hub key update)."""
    return DeviceAgent(identity_dir, PrinterHost(cfg, link, store), keyring, stop)
