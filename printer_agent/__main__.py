"""``python -m printer_agent --config printer.toml`` (console script ``venue-printer``).

``python -m printer_agent preview --template ticket --field performance_name=茶馆 --token T --out t.png``
draws a ticket face without a printer; ``--escpos out.bin`` also writes the ESC/POS bytes.

``--bootstrap bootstrap.toml``: a provisioned printer. It enrolls first (kind ``printer``) if it has no
identity yet (:mod:`confkit.enrolment`), then runs with the identity's device id, broker login and hub
keys; the config file gives only the local settings (printer, data_dir, templates...). Exit code 75 means
"restart me" (the hub's ``restart`` command); 3: enrollment rejected.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from confkit.cli import EXIT_CONFIG, daemon_parser, load_or_report
from confkit.logs import redactor, setup_logging
from confkit.service import service_notifier
from confkit.storeschema import EXIT_STORE, StoreSchemaError
from confkit.supervise import EXIT_SOFTWARE, TaskFailed
from printer_agent import ConfigError, TemplateError
from printer_agent.app import run_printer
from printer_agent.config import load_config
from printer_agent.escpos_render import render_job
from printer_agent.preview import TicketData, render_face
from printer_agent.template import TEMPLATE_DIR, load_template


def preview(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="venue-printer preview", description="Draw a ticket face as a PNG.")
    parser.add_argument("--template", default="ticket", help="template name (file name without .toml)")
    parser.add_argument("--template-dir", type=Path, default=TEMPLATE_DIR, help="directory of the templates")
    parser.add_argument("--field", action="append", default=[], metavar="NAME=VALUE", help="a template field")
    parser.add_argument("--token", default="PREVIEW-TOKEN", help="the ticket token (the QR code)")
    parser.add_argument("--ticket-id", type=int, default=0, help="the ticket id (the barcode)")
    parser.add_argument("--job-id", default="preview", help="the job id ({job_id})")
    parser.add_argument("--out", type=Path, default=Path("ticket.png"), help="PNG file to write")
    parser.add_argument("--escpos", type=Path, default=None, help="also write the ESC/POS bytes here")
    args = parser.parse_args(argv)
    fields = {}
    for item in args.field:
        name, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--field {item!r}: expected NAME=VALUE")
        fields[name] = value
    data = TicketData(args.token, args.ticket_id, args.job_id, fields)
    try:
        tpl = load_template(args.template, args.template_dir)
        missing = tpl.placeholders() - data.values().keys()
        if missing:
            raise TemplateError(f"missing --field for {sorted(missing)}")
        render_face(tpl, data).save(args.out)
        if args.escpos is not None:
            args.escpos.write_bytes(render_job(tpl, data))
    except TemplateError as exc:
        print(f"{exc.code}: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["preview"]:
        return preview(argv[1:])
    parser = daemon_parser("venue-printer", "Ticket printer agent (ESC/POS over MQTT).")
    parser.add_argument("--bootstrap", type=Path, default=None,
                        help="bootstrap TOML of a provisioned printer: enroll if needed, then run on its identity")
    args = parser.parse_args(argv)
    cfg = load_or_report(load_config, args.config, ConfigError)
    if cfg is None:
        return EXIT_CONFIG
    if args.validate_config:
        print(f"config ok: {args.config or '(defaults)'} printer {cfg.device_id} ({cfg.printer.kind})")
        return 0
    setup_logging(cfg.device_id, logging.DEBUG if args.debug else logging.INFO, identifier="venue-printer",
                  target=args.log_target, secrets=[cfg])
    identity_dir = None
    if args.bootstrap is not None:
        from confkit.enrolment import Bootstrap, EnrollmentRejected, Identity, ProvisioningError, load_or_enroll
        from printer_agent import __version__

        try:
            boot = Bootstrap.load(args.bootstrap)
            redactor().add(boot)  # the claim password
            if boot.kind != "printer":
                logging.getLogger("printer_agent").error(
                    "%s: kind %r: a printer enrols with kind = \"printer\"", args.bootstrap, boot.kind)
                return 2
            with service_notifier().extending_start("starting: enrolment (a new device waits for approval)"):
                identity_dir = load_or_enroll(args.bootstrap, default_version=__version__)
            redactor().add(Identity.load(identity_dir))  # the device's own broker password
        except EnrollmentRejected as exc:
            logging.getLogger("printer_agent").error("enrollment rejected by the hub: %s", exc.reason)
            return 3
        except ProvisioningError as exc:
            logging.getLogger("printer_agent").error("%s", exc)
            return 2
    try:
        return asyncio.run(service_notifier().serving(run_printer(cfg, identity_dir=identity_dir)))
    except ConfigError as exc:
        logging.getLogger("printer_agent").error("%s", exc)
        return 2
    except StoreSchemaError as exc:  # printer.db of a newer release (a rollback): refuse, never drop its data
        logging.getLogger("printer_agent").critical("%s", exc)
        return EXIT_STORE
    except TaskFailed as exc:  # logged with its traceback already; the service manager restarts us
        logging.getLogger("printer_agent").critical("%s: exiting with %d", exc, EXIT_SOFTWARE)
        return EXIT_SOFTWARE


if __name__ == "__main__":
    sys.exit(main())
