"""``python -m kiosk_agent --config kiosk.toml`` (console script ``venue-kiosk``).

Serves the touchscreen UI on ``[ui] host:port``; point a browser in kiosk mode at it, e.g.
``chromium --kiosk --app=http://127.0.0.1:8080/``.
"""

from __future__ import annotations

import asyncio
import logging
import sys

import uvicorn

from confkit.cli import EXIT_CONFIG, daemon_parser, load_or_report
from confkit.logs import setup_logging
from confkit.service import service_notifier
from kiosk_agent import ConfigError
from kiosk_agent.app import create_app
from kiosk_agent.config import load_config


def main(argv: list[str] | None = None) -> int:
    args = daemon_parser("venue-kiosk", "Self-service ticket-collection kiosk agent.").parse_args(argv)
    cfg = load_or_report(load_config, args.config, ConfigError)
    if cfg is None:
        return EXIT_CONFIG
    if args.validate_config:
        print(f"config ok: {args.config or '(defaults)'} kiosk {cfg.device_id} printer {cfg.printer_id}")
        return 0
    text = logging.Formatter(f"%(asctime)s %(levelname)s [{cfg.device_id}] %(name)s: %(message)s")
    setup_logging(cfg.device_id, logging.DEBUG if args.debug else logging.INFO, identifier="venue-kiosk",
                  target=args.log_target, formatter=text, secrets=[cfg], quiet=("httpx",))
    config = uvicorn.Config(create_app(cfg), host=cfg.ui.host, port=cfg.ui.port, log_level="warning",
                            log_config=None, timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    notifier = service_notifier()

    async def serve() -> None:
        # systemd READY=1 once uvicorn listens (its lifespan, with the hub client, has run); STOPPING=1 on exit
        notifier.ready_when({"ui listening": lambda: server.started},
                            lambda: f"ui on http://{cfg.ui.host}:{cfg.ui.port}, printer {cfg.printer_id}",
                            stopping=lambda: server.should_exit)
        await server.serve()

    with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:  # as server.run(): uvloop if installed
        runner.run(notifier.serving(serve()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
