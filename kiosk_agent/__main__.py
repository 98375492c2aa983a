"""``python -m kiosk_agent --config kiosk.toml`` (console script ``venue-kiosk``).

Serves the touchscreen UI on ``[ui] host:port``; point a browser in kiosk mode at it, e.g.
``chromium --kiosk --app=http://127.0.0.1:8080/``.
"""

from __future__ import annotations

import logging
import sys

import uvicorn

from confkit.cli import EXIT_CONFIG, daemon_parser, load_or_report
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
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO,
                        format=f"%(asctime)s %(levelname)s [{cfg.device_id}] %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    server = uvicorn.Server(uvicorn.Config(create_app(cfg), host=cfg.ui.host, port=cfg.ui.port,
                                           log_level="warning", timeout_graceful_shutdown=2))
    server.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
