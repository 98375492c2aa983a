"""``python -m gate_agent --config gate.toml`` (console script ``venue-gate``).

``--bootstrap bootstrap.toml``: a provisioned device. It enrolls first if it has no identity yet
(:mod:`provisioning.device`), then runs with the identity's id, broker login, group and channel; the
config file then gives only the local settings (scanner, turnstile, data_dir...). Exit code 75 means
"restart me" (the hub's ``restart`` command); 3: enrollment rejected.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

from confkit.cli import EXIT_CONFIG, daemon_parser, load_or_report
from gate_agent import ConfigError
from gate_agent.app import load_keyring, run_gate
from gate_agent.config import load_config
from gate_agent.logs import setup_logging


def main(argv: list[str] | None = None) -> int:
    parser = daemon_parser("venue-gate", "Offline ticket check-in agent for a gate.")
    parser.add_argument("--bootstrap", type=Path, default=None,
                        help="bootstrap TOML of a provisioned device: enroll if needed, then run on its identity")
    parser.add_argument("--sim", action="store_true",
                        help="simulate the hardware: MockFactory turnstile with a patron, camera reading an image "
                             "folder, RFID over nfcpy's udp driver")
    args = parser.parse_args(argv)
    cfg = load_or_report(load_config, args.config, ConfigError,
                         check=(lambda c: load_keyring(c.hub_keys_file)) if args.validate_config else None)
    if cfg is None:
        return EXIT_CONFIG
    if args.validate_config:
        print(f"config ok: {args.config or '(defaults)'} device {cfg.device_id}")
        return 0
    setup_logging(cfg.device_id, logging.DEBUG if args.debug else logging.INFO)
    identity_dir = None
    if args.bootstrap is not None:
        from provisioning.device import EnrollmentRejected, ProvisioningError, load_or_enroll

        try:
            identity_dir = load_or_enroll(args.bootstrap)
        except EnrollmentRejected as exc:
            logging.getLogger("gate_agent").error("enrollment rejected by the hub: %s", exc.reason)
            return 3
        except ProvisioningError as exc:
            logging.getLogger("gate_agent").error("%s", exc)
            return 2
    try:
        return asyncio.run(run_gate(cfg, sim=args.sim, identity_dir=identity_dir))
    except ConfigError as exc:
        logging.getLogger("gate_agent").error("%s", exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())
