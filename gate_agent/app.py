"""Wiring: config -> device key -> store -> keyring -> actuator -> emergency (restored open first) ->
checker -> scanner task + link task."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nacl.signing

from confkit.enrolment import KEY_FILE, IdentityError, device_key, device_key_at, public_key_b64
from confkit.keys import load_keyring as load_hub_keys
from confkit.service import service_notifier
from confkit.supervise import Supervisor
from gate_agent import ConfigError
from gate_agent.checkin import Checker, OverridePolicy, Station
from gate_agent.config import GateConfig
from gate_agent.emergency_io import make_release
from gate_agent.hardware import make_parts
from gate_agent.hubkeys import HubKeysFollower
from gate_agent.link import Link, LinkOptions
from gate_agent.online import OnlineChecker, OnlineOptions
from gate_agent.store import Store
from gate_agent.turnstile import GpioTurnstile
from protocol.keys import Keyring
from protocol.provisioning import key_fingerprint

log = logging.getLogger(__name__)


def load_keyring(path: Path) -> Keyring:
    """The hub's public keys (:func:`confkit.keys.load_keyring`); raises the gate's :class:`ConfigError`."""
    return load_hub_keys(path, ConfigError)


def load_device_key(cfg: GateConfig, identity_dir: Path | None = None) -> nacl.signing.SigningKey:
    """This device's own Ed25519 key, which signs its event batches and emergency states: the enrolled one
    in ``identity_dir`` (the key the hub registered at enrolment: it must be there), else
    ``cfg.device_key_path``, created (mode 0600) if missing. Raises ConfigError naming the file if it
    cannot be created or read."""
    if identity_dir is not None:
        if not (identity_dir / KEY_FILE).exists():  # a new key would be one the hub never registered
            raise ConfigError(f"identity_dir: device key file {identity_dir / KEY_FILE} is missing: the hub knows "
                              f"this device by the key it enrolled with; enroll it again")
        try:
            return device_key(identity_dir)
        except IdentityError as exc:
            raise ConfigError(f"identity_dir: {exc}") from exc
    try:
        return device_key_at(cfg.device_key_path)
    except IdentityError as exc:
        raise ConfigError(f"device_key_file: {exc}") from exc


def device_key_record(cfg: GateConfig, key: nacl.signing.SigningKey) -> dict[str, Any]:
    """What ops register at the hub for this device (``python -m gate_agent --show-key``); public only."""
    public = public_key_b64(key)
    return {"device_id": cfg.device_id, "kind": cfg.kind, "group_id": cfg.group_id, "channel_id": cfg.channel_id,
            "public_key": public, "fingerprint": key_fingerprint(public)}


def link_options(cfg: GateConfig) -> LinkOptions:
    return LinkOptions(
        device_id=cfg.device_id, group_id=cfg.group_id, channel_id=cfg.channel_id, kind=cfg.kind,
        host=cfg.mqtt.host, port=cfg.mqtt.port, prefix=cfg.mqtt.prefix, username=cfg.mqtt.username,
        password=cfg.mqtt.password.get_secret_value(), keepalive=cfg.mqtt.keepalive,
        status_interval=cfg.status_interval, tls=cfg.mqtt.tls,
        tls_ca=str(cfg.mqtt.ca_file) if cfg.mqtt.ca_file else None,
    )


def make_online(cfg: GateConfig) -> OnlineChecker | None:
    if not cfg.online.enabled:
        return None
    return OnlineChecker(OnlineOptions(
        url=cfg.online.url, username=cfg.online.username, password=cfg.online.password.get_secret_value(),
        device_id=cfg.device_id, channel_id=cfg.channel_id, timeout=cfg.online.timeout_s,
        ca_file=str(cfg.online.ca_file) if cfg.online.ca_file else None))


async def run_gate(cfg: GateConfig, stop: asyncio.Event | None = None, *, pin_factory: object = None,
                   identity_dir: Path | None = None) -> int:
    """Run until ``stop`` is set (or SIGTERM/SIGINT), then announce offline and return the exit code
    (0, or :data:`confkit.device_agent.EXIT_RESTART` after the hub's ``restart`` command).

    The drivers follow ``cfg.hardware`` (:func:`gate_agent.hardware.make_parts`; ``--sim`` is
    :func:`gate_agent.sim.sim_config`); ``pin_factory``: a gpiozero pin factory to use instead (a test's
    ``MockFactory`` whose pins it drives).
    ``identity_dir``: an enrolled device (:mod:`confkit.enrolment`): its id, group, channel, broker
    login and hub keys replace the config's, and it serves the hub's config, commands and key updates.
    """
    agent = None
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if identity_dir is not None:
        from confkit.enrolment import Identity
        from gate_agent.enrolled import with_identity

        identity = Identity.load(identity_dir)
        cfg, keyring = with_identity(cfg, identity), identity.keyring()
    else:
        keyring = load_keyring(cfg.hub_keys_file)
    own_key = load_device_key(cfg, identity_dir)
    log.info("device %s key fingerprint %s", cfg.device_id, key_fingerprint(public_key_b64(own_key)))
    with Store.open(cfg.data_dir) as store:
        if identity_dir is not None:
            from gate_agent.enrolled import stored_config

            cfg = stored_config(cfg, store)
        parts = make_parts(cfg, pin_factory=pin_factory)
        actuator = parts.actuator
        emergency = make_release(cfg, store, keyring, actuator)
        if emergency is not None:
            await emergency.restore()  # an evacuation in progress: stand open before anything else starts
        health: dict[str, Callable[[], str]] = {}  # part -> its state, reported in every heartbeat
        tasks = Supervisor(cfg.device_id)  # a task that dies is "failed" in the health, and restarted
        link = Link(link_options(cfg), store, keyring, device_key=own_key,
                    health=lambda: {**{k: f() for k, f in health.items()}, **tasks.failed()})
        tasks.on_change = link.status_changed
        if emergency is not None:
            link.serve_emergency(emergency.on_command, emergency.state)
            emergency.bind(link.publish_emergency)
        if identity_dir is not None:
            from gate_agent.enrolled import gate_device_agent

            agent = gate_device_agent(identity_dir, link, store, keyring, cfg, stop)
            agent.start()
        else:  # a config-file gate follows the hub's signed key list too (gate_agent.hubkeys)
            HubKeysFollower(link, keyring, cfg.data_dir, cfg.hub_keys_file, cfg.mqtt.prefix).start()
        station = Station(cfg.device_id, cfg.group_id, cfg.channel_id, cfg.direction)
        online = make_online(cfg)
        override = OverridePolicy(cfg.override_enabled, cfg.override.window_s, cfg.override.max_failures,
                                  cfg.override.lockout_s)
        checker = Checker(station, store, keyring, actuator, on_event=link.wake, online=online, emergency=emergency,
                          override=override)
        from gate_agent.metrics import GateMetrics  # prometheus-client: ~3 MB RSS, only where it runs

        metrics = GateMetrics.start(cfg, store, link, checker)  # [metrics] port; closes when this task ends
        turnstile = checker.actuator if isinstance(checker.actuator, GpioTurnstile) else None
        if turnstile is not None:
            turnstile.bind(checker.report)
            await turnstile.start()
            health["turnstile"] = turnstile.health
        triggers, panel = parts.start_emergency_inputs(emergency) if emergency else (None, None)
        if triggers is not None:
            health["emergency_inputs"] = triggers.health
        scanner, camera, rfid = parts.readers(checker)
        health["scanner"] = scanner.health
        if camera is not None:
            health["camera"] = camera.health
        if online is not None:
            health["online"] = online.health
            online.warm_up()  # log in to the hub before the first scan needs it
        if rfid is not None:
            health["rfid"] = rfid.health
        log.info("store open: whitelist seq %s, %d entries, %d events waiting for the hub",
                 store.whitelist_seq, store.entry_count(), store.outbox_count())
        log.info("checking %ss at channel %s; supervisor override %s", cfg.direction, cfg.channel_id,
                 "on" if override.enabled else "off")
        async with tasks:
            if panel is not None:
                tasks.spawn("sim-emergency", panel.run)
            tasks.spawn("link", link.run)
            tasks.spawn("scanner", scanner.run, forever=cfg.scanner.url != "stdin")  # stdin: ends at EOF
            if camera is not None:
                tasks.spawn("camera", camera.run, forever=cfg.camera.loop)  # a file or folder ends
            if rfid is not None:
                tasks.spawn("rfid", rfid.run)
            service_notifier().ready_when(  # systemd READY=1 once it can decide (docs/operations.md, "Readiness")
                {"whitelist": lambda: store.whitelist_seq >= 0,
                 "broker or offline mode": lambda: link.connected.is_set() or link.tried.is_set()},
                lambda: f"whitelist seq {store.whitelist_seq}, {'online' if link.connected.is_set() else 'offline'}")
            ready = asyncio.create_task(scanner.connected.wait())
            stopping = asyncio.create_task(stop.wait())
            await asyncio.wait({ready, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if ready.done():
                log.info("gate ready")
            ready.cancel()
            await stopping
            log.info("stopping")
            service_notifier().stopping()
            if metrics is not None:
                await metrics.aclose()
            if triggers is not None:
                triggers.close()
            await tasks.cancel("sim-emergency")
            if emergency is not None:
                await emergency.aclose()
            for name in ("scanner", "camera", "rfid"):
                await tasks.cancel(name)
            if turnstile is not None:
                await turnstile.aclose()  # locks; annulments of unfinished releases go to the outbox
            await link.stop()
            await tasks.cancel("link")
        if online is not None:
            await online.aclose()
        if agent is not None:
            agent.close()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.remove_signal_handler(sig)
    log.info("stopped")
    return agent.exit_code if agent is not None else 0
