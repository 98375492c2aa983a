"""``python -m gate_agent --config gate.toml`` (console script ``venue-gate``).

``--bootstrap bootstrap.toml``: a provisioned device. It enrolls first if it has no identity yet
(:mod:`confkit.enrolment`), then runs with the identity's id, broker login, group and channel; the
config file then gives only the local settings (scanner, turnstile, data_dir...). Exit code 75 means
"restart me" (the hub's ``restart`` command); 3: enrollment rejected; 4: ``gate.db`` was written by a newer
release (a rollback): upgrade the software, the store is left as it was. 70 (EX_SOFTWARE): a background task
failed that is not restarted in-process (:mod:`confkit.supervise`): the service manager restarts the gate.

``--show-key``: print this device's public key as one JSON line (``device_id``, ``kind``, ``group_id``,
``channel_id``, ``public_key``, ``fingerprint``), creating the key if it has none, and exit: what ops
register at the hub for a config-file gate. With ``--bootstrap``: the enrolled identity's key.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path

from confkit.cli import EXIT_CONFIG, daemon_parser, load_or_report
from confkit.logs import redactor, setup_logging
from confkit.service import service_notifier
from confkit.storeschema import EXIT_STORE, StoreSchemaError
from confkit.supervise import EXIT_SOFTWARE, TaskFailed
from gate_agent import ConfigError
from gate_agent.app import device_key_record, load_device_key, load_keyring, run_gate
from gate_agent.config import GateConfig, load_config


def main(argv: list[str] | None = None) -> int:
    parser = daemon_parser("venue-gate", "Offline ticket check-in agent for a gate.")
    parser.add_argument("--bootstrap", type=Path, default=None,
                        help="bootstrap TOML of a provisioned device: enroll if needed, then run on its identity")
    parser.add_argument("--sim", action="store_true",
                        help="simulate the hardware: MockFactory turnstile with a patron, camera reading an image "
                             "folder, RFID over nfcpy's udp driver")
    parser.add_argument("--show-key", action="store_true",
                        help="print this device's public key and fingerprint as JSON (for its registration at "
                             "the hub; creates the key if missing) and exit")
    args = parser.parse_args(argv)
    cfg = load_or_report(load_config, args.config, ConfigError,
                         check=(lambda c: load_keyring(c.hub_keys_file)) if args.validate_config else None)
    if cfg is None:
        return EXIT_CONFIG
    if args.validate_config:
        print(f"config ok: {args.config or '(defaults)'} device {cfg.device_id}")
        return 0
    if args.show_key:
        return show_key(cfg, args)
    setup_logging(cfg.device_id, logging.DEBUG if args.debug else logging.INFO, identifier="venue-gate",
                  target=args.log_target, secrets=[cfg])
    identity_dir = None
    if args.bootstrap is not None:
        from confkit.enrolment import Bootstrap, EnrollmentRejected, Identity, ProvisioningError, load_or_enroll
        from gate_agent import __version__

        try:
            redactor().add(Bootstrap.load(args.bootstrap))  # the claim password
            with service_notifier().extending_start("starting: enrolment (a new device waits for approval)"):
                identity_dir = load_or_enroll(args.bootstrap, default_version=__version__)
            redactor().add(Identity.load(identity_dir))  # the device's own broker password
        except EnrollmentRejected as exc:
            logging.getLogger("gate_agent").error("enrollment rejected by the hub: %s", exc.reason)
            return 3
        except ProvisioningError as exc:
            logging.getLogger("gate_agent").error("%s", exc)
            return 2
    try:
        if args.sim:  # a config transformation: every part on its hardware-free backend (gate_agent.hardware)
            from gate_agent.sim import sim_config

            cfg = sim_config(cfg)
        return asyncio.run(service_notifier().serving(run_gate(cfg, identity_dir=identity_dir)))
    except ConfigError as exc:
        logging.getLogger("gate_agent").error("%s", exc)
        return 2
    except StoreSchemaError as exc:  # gate.db of a newer release (a rollback): refuse, never drop its data
        logging.getLogger("gate_agent").critical("%s", exc)
        return EXIT_STORE
    except TaskFailed as exc:  # logged with its traceback already; the service manager restarts us
        logging.getLogger("gate_agent").critical("%s: exiting with %d", exc, EXIT_SOFTWARE)
        return EXIT_SOFTWARE


def show_key(cfg: GateConfig, args: argparse.Namespace) -> int:
    """``--show-key``: the JSON line ops paste into the hub's device registration; never the private key."""
    identity_dir = None
    try:
        if args.bootstrap is not None:
            from confkit.enrolment import Bootstrap, Identity, ProvisioningError
            from gate_agent.enrolled import with_identity

            try:
                boot = Bootstrap.load(args.bootstrap)
                if not Identity.exists(boot.identity_dir):
                    print(f"show-key: {boot.serial} is not enrolled yet (no identity in {boot.identity_dir}); its "
                          f"fingerprint: python -m provisioning.device fingerprint --bootstrap {args.bootstrap}",
                          file=sys.stderr)
                    return 2
                identity_dir = boot.identity_dir
                cfg = with_identity(cfg, Identity.load(identity_dir))
            except ProvisioningError as exc:
                print(f"show-key: {exc}", file=sys.stderr)
                return 2
        key = load_device_key(cfg, identity_dir)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    print(json.dumps(device_key_record(cfg, key)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
