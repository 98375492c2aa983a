"""Wiring: config -> store, device, service, link; run until cancelled (or the hub's ``restart``)."""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path

from confkit.keys import load_keyring
from confkit.service import service_notifier
from confkit.supervise import Supervisor
from printer_agent import ConfigError
from printer_agent.config import PrinterAgentConfig
from printer_agent.device import EscposDevice, Printer
from printer_agent.link import LinkOptions, PrinterLink
from printer_agent.metrics import PrinterMetrics
from printer_agent.service import PrintService
from printer_agent.store import JobStore

log = logging.getLogger(__name__)


def link_options(cfg: PrinterAgentConfig) -> LinkOptions:
    return LinkOptions.from_config(cfg.device_id, cfg.mqtt, cfg.status_interval)


async def run_printer(cfg: PrinterAgentConfig, *, device: Printer | None = None,
                      identity_dir: Path | None = None) -> int:
    """Run until SIGTERM/SIGINT; return the exit code (0, or :data:`confkit.device_agent.EXIT_RESTART` after
    the hub's ``restart`` command). ``identity_dir``: an enrolled printer (:mod:`confkit.enrolment`): its id,
    broker login and hub keys replace the config's, and it serves the hub's config, commands and key
    updates (:mod:`printer_agent.enrolled`)."""
    agent = None
    if identity_dir is not None:
        from confkit.enrolment import Identity
        from printer_agent.enrolled import with_identity

        identity = Identity.load(identity_dir)
        cfg, keyring = with_identity(cfg, identity), identity.keyring()
    else:
        keyring = load_keyring(cfg.hub_keys_file, ConfigError)
    with JobStore.open(cfg.data_dir, cfg.device_id) as store:
        if identity_dir is not None:
            from printer_agent.enrolled import stored_config

            cfg = stored_config(cfg, store)
        service = PrintService(cfg.device_id, store, device or EscposDevice(cfg.printer), keyring,
                               template_dir=cfg.template_dir, profile=cfg.printer.profile, cjk=cfg.printer.cjk,
                               poll_interval=cfg.poll_interval)
        service.recover()
        link = PrinterLink(link_options(cfg), service)
        stop = asyncio.Event()
        if identity_dir is not None:
            from printer_agent.enrolled import printer_device_agent

            agent = printer_device_agent(identity_dir, link, store, keyring, cfg, stop)  # service's keyring
            agent.start()
        metrics = PrinterMetrics.start(cfg, service, link)  # [metrics] port; None: 0
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, stop.set)
            except (NotImplementedError, RuntimeError) as exc:  # not the main thread (tests), or no Unix signals
                log.debug("printer agent: no %s handler (%s); stop it by cancelling run_printer", sig.name, exc)
        tasks = Supervisor(cfg.device_id, on_change=link.status_changed)  # a task that dies: "failed", restarted
        link.tasks_health = tasks.failed  # reported in the status
        log.info("printer agent %s started (%s printer)", cfg.device_id, cfg.printer.kind)
        service_notifier().ready_when(  # systemd READY=1: queue recovered, broker session up or offline mode
            {"broker or offline mode": lambda: link.connected.is_set() or link.tried.is_set()},
            lambda: f"{cfg.printer.kind} printer, {'online' if link.connected.is_set() else 'offline'}")
        try:
            async with tasks:
                tasks.spawn("print", service.run)
                tasks.spawn("link", link.run)
                await stop.wait()
                service_notifier().stopping()
                await link.stop()
        finally:
            if metrics is not None:
                await metrics.aclose()
            if agent is not None:
                agent.close()
    return agent.exit_code if agent is not None else 0
