"""Command line: serve the hub, validate its config, create users, export the public keys.

    python -m hub --config hub.toml                      # serve HTTP + MQTT bridge
    python -m hub --config hub.toml --validate-config    # exit 0, or print the bad key and exit 2
    python -m hub --config hub.toml create-user NAME --role admin   # password on stdin
    python -m hub --config hub.toml export-keys --out keys.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import json
import logging
import signal
import socket
import sys
from collections.abc import Generator
from pathlib import Path

import uvicorn

from confkit.logs import redactor
from confkit.service import service_notifier
from hub.config import Settings, load_settings
from hub.errors import ConfigError, HubError
from hub.logs import setup_logging
from hub.services import auth
from hub.services.context import Principal

log = logging.getLogger("hub")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="venue-hub", description="The venue hub (HTTP API + MQTT bridge).")
    p.add_argument("--config", type=Path, default=None, help="TOML config file (env HUB__* overrides it)")
    p.add_argument("--validate-config", action="store_true", help="check the config and exit")
    p.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ...")
    p.add_argument("--log-target", choices=("auto", "journal", "stderr"), default=None,
                   help="journal: journald with structured fields; auto (default, env VENUE_LOG_TARGET): the journal "
                        "when systemd connected stderr to it")
    sub = p.add_subparsers(dest="command")
    cu = sub.add_parser("create-user", help="create a user; the password is read from stdin")
    cu.add_argument("name")
    cu.add_argument("--role", required=True, choices=auth.ROLES)
    cu.add_argument("--device-id", default=None, help="a device's own login (handheld, kiosk): the only device "
                                                      "id its online checks are recorded under")
    ek = sub.add_parser("export-keys", help="write the hub's public keys as JSON for the gates")
    ek.add_argument("--out", type=Path, default=None, help="file to write (default: stdout)")
    return p


class _Server(uvicorn.Server):
    """uvicorn's server, ending the live streams (``GET /api/v1/live/stream``) first when it stops.

    uvicorn stops accepting, then waits up to ``timeout_graceful_shutdown`` for open responses before it runs
    the lifespan shutdown; an event stream never finishes by itself, so it would be cancelled after the
    timeout (an ERROR, a cut-off chunked body). Closing the feed first sends every stream ``end: stopping``
    and lets it finish; the lifespan's own ``feed.close()`` is then a no-op."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        """As uvicorn's, but a SIGTERM that stopped the hub gracefully is not raised again afterwards: the
        hub exits 0 (uvicorn re-raises it, and the process would die of it with -15)."""
        with super().capture_signals():
            yield
            self._captured_signals = [s for s in self._captured_signals if s != signal.SIGTERM]

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        app = self.config.app
        feed = getattr(getattr(app, "state", None), "live", None)
        if feed is not None:
            feed.close()
        await super().shutdown(sockets)


async def _serve(settings: Settings) -> None:
    from hub.app import create_app

    app = create_app(settings)
    http = settings.http
    config = uvicorn.Config(app, host=http.host, port=http.port, log_config=None,
                            http="httptools", lifespan="on", access_log=False,
                            # X-Forwarded-For only from the load balancers named in [http] trusted_proxies
                            proxy_headers=bool(http.trusted_proxies),
                            forwarded_allow_ips=",".join(http.trusted_proxies) or "",
                            ssl_certfile=http.tls_cert_file, ssl_keyfile=http.tls_key_file,  # None: plain HTTP
                            # handhelds hold TLS keep-alive connections: a stop must not wait on them
                            timeout_graceful_shutdown=2)
    server = _Server(config)
    serving = asyncio.create_task(server.serve())
    # systemd READY=1 once HTTP listens: uvicorn sets `started` after the lifespan startup (database migrated and
    # open, keys loaded) and the bind, before which it serves nothing; STOPPING=1 when it begins to shut down
    service_notifier().ready_when(
        {"http listening": lambda: server.started},
        lambda: f"{http.scheme.upper()} on {http.host}:{http.port}, MQTT bridge "
                f"{'connected' if app.state.bridge.connected.is_set() else 'connecting'}",
        stopping=lambda: server.should_exit)
    while not server.started and not serving.done():  # noqa: ASYNC110 - uvicorn exposes a flag only
        await asyncio.sleep(0.05)
    if server.started:
        bridge_up = asyncio.create_task(app.state.bridge.connected.wait())
        await asyncio.wait([bridge_up, serving], return_when=asyncio.FIRST_COMPLETED)
        if bridge_up.done():
            log.info("hub ready: %s on %s:%s, MQTT bridge on %s:%s%s", http.scheme.upper(), http.host, http.port,
                     settings.mqtt.host, settings.mqtt.port, " (TLS)" if settings.mqtt.tls else "")
        bridge_up.cancel()
    await serving


def _create_user(settings: Settings, name: str, role: str, device_id: str | None = None) -> None:
    from hub.app import build_context

    password = getpass.getpass("password: ") if sys.stdin.isatty() else sys.stdin.readline().rstrip("\n")
    ctx = build_context(settings)
    try:
        auth.create_user(ctx, Principal(None, "cli", "admin"), name, password, role, device_id)
    finally:
        ctx.db.dispose()
    print(f"created user {name} with role {role}")


def _export_keys(settings: Settings, out: Path | None) -> None:
    from hub.app import build_context

    ctx = build_context(settings)  # both keys (made atomically if missing) and the newest rotated list
    try:
        text = json.dumps(ctx.keyring.to_entries()) + "\n"
    finally:
        ctx.db.dispose()
    if out is None:
        sys.stdout.write(text)
    else:
        out.write_text(text)
        print(f"wrote the hub public keys to {out}")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    setup_logging(getattr(logging, str(args.log_level).upper(), logging.INFO), args.log_target)
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    redactor().add(settings)  # its passwords (admin, broker admin, ...) never reach a log
    if args.validate_config:
        print("config ok")
        return 0
    try:
        if args.command == "create-user":
            _create_user(settings, args.name, args.role, args.device_id)
        elif args.command == "export-keys":
            _export_keys(settings, args.out)
        else:
            # The standard event loop, not uvloop: under uvloop a broker restart can leave paho's socket
            # registered on a closed poll handle ("UVPoll closed"), the disconnect is never noticed and the
            # bridge stops publishing for good (seen in tests/test_e2e_rules.py under load).
            asyncio.run(service_notifier().serving(_serve(settings)))  # + the systemd watchdog on this loop
    except HubError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
