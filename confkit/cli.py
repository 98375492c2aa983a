"""The command line every device daemon shares: ``--config``, ``--validate-config``, ``--debug``.

    parser = daemon_parser("venue-kiosk", "Self-service ticket-collection kiosk agent.")
    args = parser.parse_args(argv)
    cfg = load_or_report(load_config, args.config, ConfigError)
    if cfg is None:
        return 2   # the error, naming the bad key, is already on stderr
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

C = TypeVar("C")

EXIT_CONFIG = 2  # a bad configuration file or environment


def daemon_parser(prog: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--config", type=Path, default=None, help="TOML configuration file (env overrides it)")
    parser.add_argument("--validate-config", action="store_true", help="check the configuration and exit")
    parser.add_argument("--debug", action="store_true", help="debug logging")
    parser.add_argument("--log-target", choices=("auto", "journal", "stderr"), default=None,
                        help="journal: journald with structured fields; auto (default, env VENUE_LOG_TARGET): the "
                             "journal when systemd connected stderr to it (confkit.logs)")
    return parser


def load_or_report(load: Callable[[Path | None], C], path: Path | None, error: type[Exception],
                   check: Callable[[C], object] | None = None) -> C | None:
    """The loaded config, or None after printing ``config error: ...`` (which names the bad key)."""
    try:
        cfg = load(path)
        if check is not None:
            check(cfg)
        return cfg
    except error as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return None
