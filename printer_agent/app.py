"""Wiring: config -> store, device, service, link; run until cancelled."""

from __future__ import annotations

import asyncio
import logging
import signal

from gate_agent import ConfigError as GateConfigError
from gate_agent.app import load_keyring
from printer_agent import ConfigError
from printer_agent.config import PrinterAgentConfig
from printer_agent.device import EscposDevice, Printer
from printer_agent.link import LinkOptions, PrinterLink
from printer_agent.service import PrintService
from printer_agent.store import JobStore

log = logging.getLogger(__name__)


def link_options(cfg: PrinterAgentConfig) -> LinkOptions:
    return LinkOptions.from_config(cfg.device_id, cfg.mqtt, cfg.status_interval)


async def run_printer(cfg: PrinterAgentConfig, *, device: Printer | None = None) -> int:
    try:
        keyring = load_keyring(cfg.hub_keys_file)
    except GateConfigError as exc:
        raise ConfigError(str(exc)) from exc
    with JobStore.open(cfg.data_dir, cfg.device_id) as store:
        service = PrintService(cfg.device_id, store, device or EscposDevice(cfg.printer), keyring,
                               template_dir=cfg.template_dir, profile=cfg.printer.profile, cjk=cfg.printer.cjk,
                               poll_interval=cfg.poll_interval)
        service.recover()
        link = PrinterLink(link_options(cfg), service)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, stop.set)
            except (NotImplementedError, RuntimeError) as exc:  # not the main thread (tests), or no Unix signals
                log.debug("printer agent: no %s handler (%s); stop it by cancelling run_printer", sig.name, exc)
        tasks = [asyncio.create_task(service.run()), asyncio.create_task(link.run())]
        log.info("printer agent %s started (%s printer)", cfg.device_id, cfg.printer.kind)
        try:
            waiter = asyncio.create_task(stop.wait())
            done, _ = await asyncio.wait([*tasks, waiter], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not waiter and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
            await link.stop()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    return 0
