"""``python -m kiosk_agent --config kiosk.toml`` (console script ``venue-kiosk``).

Serves the touchscreen UI on ``[ui] host:port``; point a browser in kiosk mode at it, e.g.
``chromium --kiosk --app=http://127.0.0.1:8080/``.

``--bootstrap bootstrap.toml``: a provisioned kiosk. It enrols first (kind ``kiosk``) if it has no identity
yet (:mod:`confkit.enrolment`), then runs with the identity's device id and broker login (heartbeat on) and
serves the hub's config, commands and key updates (:mod:`kiosk_agent.enrolled`); the config file gives the
local settings (UI, ID-card reader, printer id, the kiosk's hub login). Exit code 75 means "restart me"
(the hub's ``restart`` command); 3: enrolment rejected; 4: a kiosk.db from a newer release.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

import uvicorn

from confkit.cli import EXIT_CONFIG, daemon_parser, load_or_report
from confkit.logs import redactor, setup_logging
from confkit.service import service_notifier
from confkit.storeschema import EXIT_STORE, StoreSchemaError
from kiosk_agent import ConfigError
from kiosk_agent.app import create_app
from kiosk_agent.config import KioskConfig, load_config
from kiosk_agent.enrolled import Enrolment

log = logging.getLogger("kiosk_agent")


def enrol(bootstrap: Path) -> Path | int:
    """The identity directory (enrolling first if there is none yet), or the exit code to end with."""
    from confkit.enrolment import Bootstrap, EnrollmentRejected, Identity, ProvisioningError, load_or_enroll
    from kiosk_agent import __version__

    try:
        boot = Bootstrap.load(bootstrap)
        redactor().add(boot)  # the claim password
        if boot.kind != "kiosk":
            log.error("%s: kind %r: a kiosk enrols with kind = \"kiosk\"", bootstrap, boot.kind)
            return 2
        with service_notifier().extending_start("starting: enrolment (a new device waits for approval)"):
            identity_dir = load_or_enroll(bootstrap, default_version=__version__)
        redactor().add(Identity.load(identity_dir))  # the device's own broker password
    except EnrollmentRejected as exc:
        log.error("enrolment rejected by the hub: %s", exc.reason)
        return 3
    except ProvisioningError as exc:
        log.error("%s", exc)
        return 2
    return identity_dir


def serve(cfg: KioskConfig, enrolment: Enrolment | None) -> int:
    config = uvicorn.Config(create_app(cfg, enrolment), host=cfg.ui.host, port=cfg.ui.port, log_level="warning",
                            log_config=None, timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    notifier = service_notifier()

    async def run() -> None:
        # systemd READY=1 once uvicorn listens (its lifespan, with the hub client, has run); STOPPING=1 on exit
        notifier.ready_when({"ui listening": lambda: server.started},
                            lambda: f"ui on http://{cfg.ui.host}:{cfg.ui.port}, printer {cfg.printer_id}",
                            stopping=lambda: server.should_exit)
        restart = None
        if enrolment is not None:  # the hub's `restart`: end the server, exit 75, the service manager restarts us
            async def on_stop() -> None:
                await enrolment.stop.wait()
                server.should_exit = True
            restart = asyncio.create_task(on_stop(), name="restart-watch")
        try:
            await server.serve()
        finally:
            if restart is not None:
                restart.cancel()

    with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:  # as server.run(): uvloop if installed
        runner.run(notifier.serving(run()))
    return enrolment.agent.exit_code if enrolment is not None and enrolment.agent is not None else 0


def main(argv: list[str] | None = None) -> int:
    parser = daemon_parser("venue-kiosk", "Self-service ticket-collection kiosk agent.")
    parser.add_argument("--bootstrap", type=Path, default=None,
                        help="bootstrap TOML of a provisioned kiosk: enrol if needed, then run on its identity")
    args = parser.parse_args(argv)
    cfg = load_or_report(load_config, args.config, ConfigError)
    if cfg is None:
        return EXIT_CONFIG
    if args.validate_config:
        print(f"config ok: {args.config or '(defaults)'} kiosk {cfg.device_id} printer {cfg.printer_id}")
        return 0
    text = logging.Formatter(f"%(asctime)s %(levelname)s [{cfg.device_id}] %(name)s: %(message)s")
    setup_logging(cfg.device_id, logging.DEBUG if args.debug else logging.INFO, identifier="venue-kiosk",
                  target=args.log_target, formatter=text, secrets=[cfg], quiet=("httpx",))
    if args.bootstrap is None:
        return serve(cfg, None)
    identity_dir = enrol(args.bootstrap)
    if isinstance(identity_dir, int):
        return identity_dir
    from confkit.enrolment import Identity
    from kiosk_agent.enrolled import stored_config, with_identity
    from kiosk_agent.store import KioskStore

    cfg = with_identity(cfg, Identity.load(identity_dir))
    try:
        store = KioskStore.open(cfg.data_dir)
    except StoreSchemaError as exc:  # kiosk.db of a newer release (a rollback): refuse, never drop its data
        log.critical("%s", exc)
        return EXIT_STORE
    with store:
        return serve(stored_config(cfg, store), Enrolment(identity_dir, store, asyncio.Event()))


if __name__ == "__main__":
    sys.exit(main())
