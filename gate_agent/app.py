"""Wiring: config -> device key -> store -> keyring -> actuator -> emergency (restored open first) ->
checker -> scanner task + link task."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nacl.signing

from gate_agent import ConfigError
from gate_agent.actuator import Actuator, LoggingActuator
from gate_agent.checkin import Checker, OverridePolicy, Station
from gate_agent.config import GateConfig
from gate_agent.emergency_io import make_release, start_triggers
from gate_agent.hubkeys import HubKeysFollower
from gate_agent.link import Link, LinkOptions
from gate_agent.online import OnlineChecker, OnlineOptions
from gate_agent.rfid import make_reader as make_rfid_reader
from gate_agent.scanner import Scanner
from gate_agent.store import Store
from gate_agent.turnstile import GpioTurnstile
from protocol.errors import MalformedError
from protocol.keys import Keyring
from protocol.provisioning import key_fingerprint
from provisioning.device import KEY_FILE, IdentityError, device_key, device_key_at, public_key_b64

if TYPE_CHECKING:
    from gate_agent.camera import QrCamera

log = logging.getLogger(__name__)


def load_keyring(path: Path) -> Keyring:
    """The hub's public keys with their purposes, as ``python -m hub export-keys`` writes them:
    ``{"1": {"key": "<base64>", "purposes": ["ticket"]}, "2": {"key": ..., "purposes": ["control"]}}``; the
    legacy form ``{"1": "<base64>"}`` (a single-key hub) means all purposes."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or not data:
            raise ValueError("not a non-empty JSON object")
        return Keyring.from_b64(data)
    except (OSError, ValueError, MalformedError) as exc:
        raise ConfigError(f"hub_keys_file: cannot load hub public keys from {path}: {exc}") from exc


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


def make_camera(cfg: GateConfig, checker: Checker) -> QrCamera | None:
    if not cfg.camera.enabled:
        return None
    from gate_agent.camera import CameraOptions, MultipleCodes, QrCamera  # OpenCV, numpy: ~40 MB, when used

    cam = cfg.camera

    async def on_code(text: str) -> object:
        return await checker.scan(text, "qr")

    async def on_multiple(outcome: MultipleCodes) -> None:  # shown to the patron; nothing is decided
        print(f"[{cfg.device_id}] ✘ ONE_TICKET_AT_A_TIME — {outcome.text_zh} / {outcome.text_en}", flush=True)

    return QrCamera(CameraOptions(cam.source, cam.fps, cam.debounce_s, cam.width, cam.height, cam.loop), on_code,
                    on_multiple=on_multiple)


def make_actuator(cfg: GateConfig, pin_factory: object = None, *, sim: bool = False) -> Actuator:
    """``pin_factory``: gpiozero's for the turnstile (None: the default, the real pins on a Pi);
    ``sim``: the turnstile on a MockFactory with a simulated patron (see :mod:`gate_agent.sim`)."""
    if cfg.actuator.kind == "turnstile" and sim:
        from gate_agent.sim import sim_turnstile

        return sim_turnstile(cfg)
    if cfg.actuator.kind == "turnstile":
        return GpioTurnstile(cfg.turnstile, device_id=cfg.device_id, pin_factory=pin_factory)
    return LoggingActuator(cfg.device_id, sound=cfg.kind == "handheld")


async def run_gate(cfg: GateConfig, stop: asyncio.Event | None = None, *, pin_factory: object = None,
                   sim: bool = False, identity_dir: Path | None = None) -> int:
    """Run until ``stop`` is set (or SIGTERM/SIGINT), then announce offline and return the exit code
    (0, or :data:`provisioning.agent.EXIT_RESTART` after the hub's ``restart`` command).

    ``sim`` (``--sim``): every part on its hardware-free backend, see :func:`gate_agent.sim.sim_config`.
    ``identity_dir``: an enrolled device (:mod:`provisioning.device`): its id, group, channel, broker
    login and hub keys replace the config's, and it serves the hub's config, commands and key updates.
    """
    agent = None
    if sim:
        from gate_agent.sim import sim_config

        cfg = sim_config(cfg)
        log.info("simulation: turnstile on gpiozero MockFactory, camera reads images in %s, RFID reader at %s",
                 cfg.camera.source, cfg.rfid.path)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if identity_dir is not None:
        from provisioning.agent import with_identity
        from provisioning.device import Identity

        identity = Identity.load(identity_dir)
        cfg, keyring = with_identity(cfg, identity), identity.keyring()
    else:
        keyring = load_keyring(cfg.hub_keys_file)
    own_key = load_device_key(cfg, identity_dir)
    log.info("device %s key fingerprint %s", cfg.device_id, key_fingerprint(public_key_b64(own_key)))
    with Store.open(cfg.data_dir) as store:
        if identity_dir is not None:
            from provisioning.agent import stored_config

            cfg = stored_config(cfg, store)
        actuator = make_actuator(cfg, pin_factory, sim=sim)
        emergency = make_release(cfg, store, keyring, actuator)
        if emergency is not None:
            await emergency.restore()  # an evacuation in progress: stand open before anything else starts
        health: dict[str, Callable[[], str]] = {}  # part -> its state, reported in every heartbeat
        link = Link(link_options(cfg), store, keyring, device_key=own_key,
                    health=lambda: {k: f() for k, f in health.items()})
        if emergency is not None:
            link.serve_emergency(emergency.on_command, emergency.state)
            emergency.bind(link.publish_emergency)
        if identity_dir is not None:
            from provisioning.agent import DeviceAgent

            agent = DeviceAgent(identity_dir, link, store, keyring, cfg, stop)
            agent.start()
        else:  # a config-file gate follows the hub's signed key list too (gate_agent.hubkeys)
            HubKeysFollower(link, keyring, cfg.data_dir, cfg.hub_keys_file, cfg.mqtt.prefix).start()
        station = Station(cfg.device_id, cfg.group_id, cfg.channel_id, cfg.direction)
        online = make_online(cfg)
        override = OverridePolicy(cfg.override_enabled, cfg.override.window_s, cfg.override.max_failures,
                                  cfg.override.lockout_s)
        checker = Checker(station, store, keyring, actuator, on_event=link.wake, online=online, emergency=emergency,
                          override=override)
        turnstile = checker.actuator if isinstance(checker.actuator, GpioTurnstile) else None
        if turnstile is not None:
            turnstile.bind(checker.report)
            await turnstile.start()
            health["turnstile"] = turnstile.health
        triggers, panel = start_triggers(cfg, emergency, pin_factory, sim=sim) if emergency else (None, None)
        if triggers is not None:
            health["emergency_inputs"] = triggers.health
        panel_task = asyncio.create_task(panel.run(), name="sim-emergency") if panel is not None else None
        scanner = Scanner(cfg.scanner.url, checker.scan, baudrate=cfg.scanner.baudrate)
        health["scanner"] = scanner.health
        camera = make_camera(cfg, checker)
        if camera is not None:
            health["camera"] = camera.health
        if online is not None:
            health["online"] = online.health
            online.warm_up()  # log in to the hub before the first scan needs it
        rfid = make_rfid_reader(cfg.rfid, checker) if cfg.rfid.enabled else None
        if rfid is not None:
            health["rfid"] = rfid.health
        log.info("store open: whitelist seq %s, %d entries, %d events waiting for the hub",
                 store.whitelist_seq, store.entry_count(), store.outbox_count())
        log.info("checking %ss at channel %s; supervisor override %s", cfg.direction, cfg.channel_id,
                 "on" if override.enabled else "off")
        link_task = asyncio.create_task(link.run(), name="link")
        scan_task = asyncio.create_task(scanner.run(), name="scanner")
        camera_task = asyncio.create_task(camera.run(), name="camera") if camera is not None else None
        rfid_task = asyncio.create_task(rfid.run(), name="rfid") if rfid is not None else None
        ready = asyncio.create_task(scanner.connected.wait())
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({ready, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if ready.done():
            log.info("gate ready")
        ready.cancel()
        await stopping
        log.info("stopping")
        if triggers is not None:
            triggers.close()
        if panel_task is not None:
            panel_task.cancel()
            await asyncio.gather(panel_task, return_exceptions=True)
        if emergency is not None:
            await emergency.aclose()
        scan_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await scan_task
        if camera_task is not None:
            camera_task.cancel()
            await asyncio.gather(camera_task, return_exceptions=True)
        if rfid_task is not None:
            rfid_task.cancel()
            await asyncio.gather(rfid_task, return_exceptions=True)
        if turnstile is not None:
            await turnstile.aclose()  # locks; annulments of unfinished releases go to the outbox
        await link.stop()
        link_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await link_task
        if online is not None:
            await online.aclose()
        if agent is not None:
            agent.close()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.remove_signal_handler(sig)
    log.info("stopped")
    return agent.exit_code if agent is not None else 0
