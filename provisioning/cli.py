"""``provision``: the ops command line for device provisioning, over the hub's HTTP API.

    $ export PROVISION_PASSWORD=...           # or type it at the prompt; it is never printed
    $ provision --hub http://hub:8000 --user ops list
    $ provision --user ops approve TS-0007 --fingerprint AB12-CD34-EF56-7890 --device-id gate-7 --site main \
          --group 1 --channel 2            # the fingerprint the device prints (label or screen)
    $ provision --user ops command gate-7 diagnostics --wait 30
    $ provision ca init /etc/venue/tls && provision ca server-cert /etc/venue/tls --host broker.venue --host 10.0.0.2

Exit codes: 0 done, 1 the hub refused or the command failed, 2 usage, login or connection error.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx

from protocol.errors import MalformedError
from protocol.provisioning import normalize_fingerprint

PASSWORD_ENV = "PROVISION_PASSWORD"


class CliError(Exception):
    """A failure shown to the operator as one line; ``code`` is the exit code."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


class Hub:
    """The hub's provisioning API, logged in as one user."""

    def __init__(self, url: str, user: str, password: str, *, timeout: float = 10.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.url = url.rstrip("/")
        self.http = httpx.Client(base_url=self.url + "/api/v1", timeout=timeout, transport=transport)
        response = self._send("POST", "/auth/login", json={"username": user, "password": password})
        if response.status_code == 401:
            raise CliError("log in failed: check --user and PROVISION_PASSWORD", 2)
        self._check(response)
        self.http.headers["Authorization"] = f"Bearer {response.json()['token']}"

    def close(self) -> None:
        self.http.close()

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self.http.request(method, path, **kwargs)
        except httpx.ConnectError as exc:
            raise CliError(f"hub not reachable at {self.url}", 2) from exc
        except httpx.HTTPError as exc:
            raise CliError(f"hub at {self.url}: {type(exc).__name__}: {exc}", 2) from exc

    @staticmethod
    def _check(response: httpx.Response) -> None:
        if response.status_code < 300:
            return
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        if isinstance(detail, list):  # a validation error: name the fields
            detail = "; ".join(f"{'.'.join(map(str, d.get('loc', [])))}: {d.get('msg')}" for d in detail)
        if response.status_code == 401:
            raise CliError("log in failed: check --user and PROVISION_PASSWORD", 2)
        if response.status_code == 403:
            raise CliError(f"forbidden: this needs the ops role (hub keys: admin) — {detail}")
        raise CliError(f"hub refused ({response.status_code}): {detail}")

    def call(self, method: str, path: str, body: Any = None) -> Any:
        response = self._send(method, "/provisioning" + path, json=body)
        self._check(response)
        return response.json()


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_settings(pairs: Sequence[str]) -> dict[str, Any]:
    """``["a=1", "turnstile.pulse_ms=300", "name=x"]`` -> ``{"a": 1, "turnstile": {"pulse_ms": 300}, "name": "x"}``."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise CliError(f"expected key=value, got {pair!r}", 2)
        *parents, leaf = key.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise CliError(f"{key}: {part} is both a value and a section", 2)
        node[leaf] = _value(raw)
    return out


def _table(rows: list[dict[str, Any]], columns: Sequence[str]) -> str:
    cells = [[("" if r.get(c) is None else str(r.get(c))) for c in columns] for r in rows]
    widths = [max([len(c), *(len(row[i]) for row in cells)]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


def _wait(hub: Hub, command: dict[str, Any], seconds: float, out: Callable[[str], None]) -> int:
    deadline = time.monotonic() + seconds
    while command["state"] == "pending" and time.monotonic() < deadline:
        time.sleep(0.3)
        command = hub.call("GET", f"/commands/{command['command_id']}")
    out(json.dumps(command, indent=2))
    return 0 if command["state"] == "ok" else 1


def run(args: argparse.Namespace, hub: Hub, out: Callable[[str], None]) -> int:
    cmd = args.cmd
    if cmd == "list":
        requests = hub.call("GET", "/requests")
        devices = hub.call("GET", "/devices")
        out(f"pending requests ({len(requests)}):")
        for r in requests:
            r["contested"] = "CONTESTED" if r.get("contested") else ""
        if requests:
            out(_table(requests, ("serial", "fingerprint", "kind", "hardware_model", "software_version", "status",
                                  "contested")))
        for serial in sorted({r["serial"] for r in requests if r["contested"]}):
            out(f"serial {serial} is CONTESTED: several keys claim it; approve only the fingerprint the device "
                "itself shows (the other keys are then rejected)")
        out(f"\ndevices ({len(devices)}):")
        for d in devices:
            d["drift"] = "DRIFT" if d["config_drift"] else ""
            d["config"] = f"{d['acked_version']}/{d['config_version']}"
        if devices:
            out(_table(devices, ("device_id", "serial", "kind", "site", "group_id", "channel_id", "fire_input",
                                 "fingerprint", "status", "online", "config", "drift", "birth", "software_version")))
        return 0
    if cmd == "approve":
        body: dict[str, Any] = {"fingerprint": args.fingerprint, "device_id": args.device_id, "site": args.site,
                                "group_id": args.group, "channel_id": args.channel, "kind": args.kind,
                                "fire_input": args.fire_input or None}
        device = hub.call("POST", f"/requests/{args.serial}/approve", {k: v for k, v in body.items() if v is not None})
        out(f"approved {args.serial} (key {args.fingerprint}) as {device['device_id']} (site {device['site']})")
        return 0
    if cmd == "register":
        return _register(args, hub, out)
    if cmd == "move":
        change: dict[str, Any] = {"group_id": args.group, "channel_id": args.channel, "site": args.site,
                                  "fire_input": None if args.fire_input is None else args.fire_input == "yes"}
        change = {k: v for k, v in change.items() if v is not None}
        if not change:
            raise CliError("move needs --group, --channel, --site or --fire-input", 2)
        d = hub.call("PATCH", f"/devices/{args.device_id}", change)
        out(f"{d['device_id']}: group {d['group_id']} channel {d['channel_id']} site {d['site']} "
            f"fire input {'yes' if d['fire_input'] else 'no'}")
        return 0
    if cmd == "security":
        query = f"?limit={args.limit}" + (f"&device_id={args.device_id}" if args.device_id else "")
        events = hub.call("GET", f"/security-events{query}")
        for e in events:
            e["at"] = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e["at"]))
        out(_table(events, ("at", "device_id", "what", "detail")) if events else "no security events")
        return 0
    if cmd == "reject":
        hub.call("POST", f"/requests/{args.serial}/reject", {"fingerprint": args.fingerprint, "reason": args.reason})
        out(f"rejected {args.serial} (key {args.fingerprint})")
        return 0
    if cmd == "revoke":
        hub.call("POST", f"/devices/{args.device_id}/revoke", {"reason": args.reason})
        out(f"revoked {args.device_id}")
        return 0
    if cmd == "rotate":
        started = hub.call("POST", f"/devices/{args.device_id}/rotate", {})
        out(f"credential rotation sent: command {started['command_id']}")
        if args.wait:
            return _wait(hub, hub.call("GET", f"/commands/{started['command_id']}"), args.wait, out)
        return 0
    if cmd == "config":
        settings = parse_settings(args.settings)
        if args.file is not None:
            settings = {**json.loads(args.file.read_text(encoding="utf-8")), **settings}
        result = hub.call("PUT", f"/devices/{args.device_id}/config", {"config": settings})
        out(f"{args.device_id}: config version {result['config_version']} sent")
        return 0
    if cmd == "command":
        command = hub.call("POST", f"/devices/{args.device_id}/command", {"name": args.name, "timeout_s": args.timeout})
        out(f"command {command['command_id']} ({args.name}) sent to {args.device_id}")
        return _wait(hub, command, args.wait, out) if args.wait else 0
    if cmd == "keys":
        if args.action == "rotate":
            result = hub.call("POST", "/keys/rotate", {"purpose": args.purpose})
            out(f"new {args.purpose} key {result['kid']}")
        else:
            result = hub.call("POST", "/keys/retire", {"kid": args.kid})
        out(f"active key {result['active_kid']}, trusted {result['trusted']}")
        out(f"control key {result['active_kid']}, ticket key {result['ticket_kid']}; purposes {result['purposes']}")
        return 0
    raise CliError(f"unknown command {cmd}", 2)


def _register(args: argparse.Namespace, hub: Hub, out: Callable[[str], None]) -> int:
    text = Path(args.show_key[1:]).read_text(encoding="utf-8") if args.show_key.startswith("@") else args.show_key
    try:
        shown = json.loads(text)
        body = {"device_id": shown["device_id"], "kind": shown["kind"], "public_key": shown["public_key"],
                "site": args.site, "fire_input": args.fire_input,
                "group_id": args.group if args.group is not None else shown.get("group_id"),
                "channel_id": args.channel if args.channel is not None else shown.get("channel_id")}
    except (ValueError, KeyError, TypeError) as exc:
        raise CliError("register needs the JSON line `python -m gate_agent --show-key` prints "
                       f"(device_id, kind, public_key): {exc}", 2) from exc
    d = hub.call("POST", "/devices", body)
    out(f"registered {d['device_id']} ({d['kind']}, group {d['group_id']} channel {d['channel_id']}, key "
        f"{d['fingerprint']}); check the fingerprint against the one the device shows: {shown.get('fingerprint')}")
    return 0


def run_ca(args: argparse.Namespace, out: Callable[[str], None]) -> int:
    from provisioning.tls import make_ca, make_server_cert

    if args.action == "init":
        cert, key = make_ca(args.dir, args.name)
        out(f"CA certificate {cert} (give it to devices and the hub), key {key} (keep it offline)")
    else:
        cert, key = make_server_cert(args.dir, args.dir / "ca.crt", args.dir / "ca.key", args.host, name=args.name)
        out(f"server certificate {cert}, key {key} for {', '.join(args.host)}")
    return 0


def _secret_file(path: Path, what: str) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CliError(f"cannot read the {what} file {path}: {exc.strerror or exc}", 2) from exc
    secret = text.rstrip("\r\n")
    if not secret:
        raise CliError(f"the {what} file {path} is empty", 2)
    return secret


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600 from the start (a temporary file renamed over it)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def run_venue_bridge(args: argparse.Namespace, out: Callable[[str], None]) -> int:
    import asyncio

    from provisioning.broker import BrokerAdmin, BrokerAdminError
    from provisioning.tls import TlsClient
    from provisioning.venue_bridge import (
        BridgeConfigError,
        VenueBridge,
        bridge_conf_text,
        check_files,
        notification_topic,
    )

    try:
        bridge = VenueBridge(args.venue, args.central_host, args.central_port, args.username,
                             _secret_file(args.password_file, "password"), ca_file=args.ca, cert_file=args.cert,
                             key_file=args.key, prefix=args.prefix, restart_base=args.restart_timeout[0],
                             restart_cap=args.restart_timeout[1])
        check_files(bridge)
    except BridgeConfigError as exc:
        raise CliError(str(exc), 2) from exc
    if not args.out.parent.is_dir():
        raise CliError(f"--out {args.out}: directory {args.out.parent} does not exist", 2)
    if args.create_login:
        if not args.admin_user or args.admin_password_file is None:
            raise CliError("--create-login needs --admin-user and --admin-password-file (the central broker's "
                           "dynsec admin)", 2)
        admin_password = _secret_file(args.admin_password_file, "admin password")
        tls = None if args.admin_plain else TlsClient(ca_file=args.ca)
        host, port = args.admin_host or args.central_host, args.admin_port or args.central_port

        async def create() -> None:
            async with BrokerAdmin(host, port, args.admin_user, admin_password, prefix=args.prefix,
                                   tls=tls) as admin:
                await admin.add_venue_bridge(bridge.venue, bridge.username, bridge.password,
                                             notification_topic(bridge.prefix, bridge.venue))

        try:
            asyncio.run(create())
        except BrokerAdminError as exc:
            raise CliError(f"central broker {host}:{port}: {exc}") from exc
        out(f"central broker {host}:{port}: login {bridge.username} with role bridge-{bridge.venue} (publishes "
            f"device uplinks of {bridge.prefix!r}, subscribes their downlinks)")
    _write_private(args.out, bridge_conf_text(bridge))
    out(f"bridge of venue {bridge.venue} to {bridge.central_host}:{bridge.central_port} written to {args.out} "
        "(0600; it holds the password): include it in the venue broker's config after its listeners and "
        "restart the broker")
    return 0


FINGERPRINT_HELP = ("the key fingerprint the device prints when it enrols (its label or screen), "
                    "as in `provision list`, e.g. AB12-CD34-EF56-7890")


def _fingerprint(text: str) -> str:
    try:
        return normalize_fingerprint(text)
    except MalformedError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="provision", description="Device provisioning over the hub's API.")
    p.add_argument("--hub", default=os.environ.get("PROVISION_HUB", "http://127.0.0.1:8000"),
                   help="hub base URL (env PROVISION_HUB)")
    p.add_argument("--user", default=os.environ.get("PROVISION_USER", ""), help="ops user (env PROVISION_USER)")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="pending requests and devices (drift, online)")
    a = sub.add_parser("approve", help="approve a pending enrollment request (by serial and key fingerprint)")
    a.add_argument("serial")
    a.add_argument("--fingerprint", required=True, type=_fingerprint, help=FINGERPRINT_HELP)
    a.add_argument("--device-id", required=True)
    a.add_argument("--site", required=True)
    a.add_argument("--group", type=int)
    a.add_argument("--channel", type=int)
    a.add_argument("--kind", choices=["gate", "handheld", "kiosk", "printer"])
    a.add_argument("--fire-input", action="store_true", help="a fire-alarm contact is wired to it: its signed local "
                                                             "fire alarm may open every gate")
    g = sub.add_parser("register", help="register a config-file device by the JSON `python -m gate_agent "
                                        "--show-key` prints (its key, group and channel)")
    g.add_argument("show_key", help="that JSON line, or @FILE holding it")
    g.add_argument("--site", required=True)
    g.add_argument("--group", type=int, help="default: the group in the JSON")
    g.add_argument("--channel", type=int, help="default: the channel in the JSON")
    g.add_argument("--fire-input", action="store_true")
    mv = sub.add_parser("move", help="change a device's group/channel/site/fire input (the registry's word)")
    mv.add_argument("device_id")
    mv.add_argument("--group", type=int)
    mv.add_argument("--channel", type=int)
    mv.add_argument("--site")
    mv.add_argument("--fire-input", choices=["yes", "no"])
    se = sub.add_parser("security", help="security events: messages the registry contradicts or that do not verify")
    se.add_argument("--device-id")
    se.add_argument("--limit", type=int, default=50)
    r = sub.add_parser("reject", help="reject a pending enrollment request (by serial and key fingerprint)")
    r.add_argument("serial")
    r.add_argument("--fingerprint", required=True, type=_fingerprint, help=FINGERPRINT_HELP)
    r.add_argument("--reason", required=True)
    v = sub.add_parser("revoke", help="revoke a device: its broker login goes, its events are refused")
    v.add_argument("device_id")
    v.add_argument("--reason", required=True)
    o = sub.add_parser("rotate", help="rotate a device's broker password")
    o.add_argument("device_id")
    o.add_argument("--wait", type=float, default=0, help="wait up to this many seconds for the device's answer")
    c = sub.add_parser("config", help="config set ID key=value ...: send the device's whole config (a new version)")
    c.add_argument("action", choices=["set"])
    c.add_argument("device_id")
    c.add_argument("settings", nargs="*", help="key=value (value JSON if it parses; dotted keys nest)")
    c.add_argument("--file", type=Path, help="a JSON object; key=value pairs go over it")
    m = sub.add_parser("command", help="send a command to a device")
    m.add_argument("device_id")
    m.add_argument("name", choices=["resync_whitelist", "restart", "diagnostics"])
    m.add_argument("--wait", type=float, default=0, help="poll the result up to this many seconds")
    m.add_argument("--timeout", type=float, default=60.0, help="the device must not run it later than this")
    k = sub.add_parser("keys", help="hub signing keys (admin): rotate, or retire KID")
    k.add_argument("action", choices=["rotate", "retire"])
    k.add_argument("kid", type=int, nargs="?")
    k.add_argument("--purpose", choices=["control", "ticket"], default="control",
                   help="rotate: which key (control: every envelope; ticket: ticket tokens)")
    ca = sub.add_parser("ca", help="venue CA and the broker's server certificate (local files, no hub)")
    ca.add_argument("action", choices=["init", "server-cert"])
    ca.add_argument("dir", type=Path)
    ca.add_argument("--host", action="append", default=[], help="server-cert: DNS name or IP (repeat)")
    ca.add_argument("--name", default=None, help="CA common name / server file name")
    vb = sub.add_parser(
        "venue-bridge", formatter_class=argparse.RawDescriptionHelpFormatter,
        help="write a venue Mosquitto's bridge to the central broker (local files; no hub)",
        description="Write the venue broker's Mosquitto bridge configuration (mode 0600: it holds the venue's "
                    "central password). The venue broker keeps serving its devices while the link is down; the "
                    "bridge carries exactly the device topics of --prefix: device uplinks out, hub downlinks "
                    "in, QoS 1, persistent sessions, over TLS as the venue's own login. See "
                    "docs/venue-brokers.md.",
        epilog="example:\n  provision venue-bridge --venue east --central-host mqtt.centre --central-port 8883 \\\n"
               "      --ca central-ca.crt --username venue-east --password-file east.pw \\\n"
               "      --out /etc/mosquitto/conf.d/bridge-east.conf\n"
               "  add --create-login --admin-user admin --admin-password-file admin.pw to create that login on\n"
               "  a dynamic-security central broker first, with role bridge-<venue>: it may publish only the\n"
               "  device uplinks and subscribe only the downlinks of the prefix (nothing else, no $CONTROL).")
    vb.add_argument("--venue", required=True, help="venue name: a-z 0-9 -, up to 32 (bridge and role name)")
    vb.add_argument("--central-host", required=True, help="the central broker's DNS name or IPv4 address, "
                                                          "as its TLS certificate names it")
    vb.add_argument("--central-port", type=int, default=8883, help="its TLS listener (default 8883)")
    vb.add_argument("--ca", type=Path, required=True, help="CA (PEM) the central broker's certificate chains to")
    vb.add_argument("--cert", type=Path, help="client certificate (PEM), if the central broker asks for one")
    vb.add_argument("--key", type=Path, help="its private key (PEM)")
    vb.add_argument("--username", required=True, help="the venue's own login on the central broker")
    vb.add_argument("--password-file", type=Path, required=True, help="file holding that login's password")
    vb.add_argument("--prefix", default="venue", help="the hub's and devices' topic prefix (default venue)")
    vb.add_argument("--restart-timeout", type=int, nargs=2, default=[2, 30], metavar=("BASE", "CAP"),
                    help="seconds between reconnect attempts while the link is down: jittered backoff from BASE "
                         "up to CAP (default 2 30)")
    vb.add_argument("--out", type=Path, required=True, help="where to write, e.g. "
                                                            "/etc/mosquitto/conf.d/bridge-<venue>.conf")
    vb.add_argument("--create-login", action="store_true",
                    help="also create --username on the central broker (dynamic security) with role bridge-<venue>")
    vb.add_argument("--admin-user", default="", help="--create-login: the central broker's dynsec admin")
    vb.add_argument("--admin-password-file", type=Path, help="--create-login: file holding its password")
    vb.add_argument("--admin-host", default="", help="--create-login: default --central-host")
    vb.add_argument("--admin-port", type=int, default=0, help="--create-login: default --central-port")
    vb.add_argument("--admin-plain", action="store_true",
                    help="--create-login: the admin port is a plain (loopback) listener, not TLS with --ca")
    return p


def main(argv: list[str] | None = None, *, out: Callable[[str], None] = print) -> int:
    args = parser().parse_args(argv)
    try:
        if args.cmd == "ca":
            if args.action == "server-cert" and not args.host:
                raise CliError("server-cert needs at least one --host", 2)
            args.name = args.name or ("venue CA" if args.action == "init" else "server")
            return run_ca(args, out)
        if args.cmd == "venue-bridge":
            return run_venue_bridge(args, out)
        if args.cmd == "keys" and args.action == "retire" and args.kid is None:
            raise CliError("keys retire needs the key id to retire", 2)
        if args.cmd == "config" and not args.settings and args.file is None:
            raise CliError("config set needs key=value pairs or --file", 2)
        if not args.user:
            raise CliError("--user is required (or PROVISION_USER)", 2)
        password = os.environ.get(PASSWORD_ENV) or getpass.getpass(f"password of {args.user}: ")
        hub = Hub(args.hub, args.user, password)
        try:
            return run(args, hub, out)
        finally:
            hub.close()
    except CliError as exc:
        print(f"provision: {exc}", file=sys.stderr)
        return exc.code
    except (OSError, ValueError) as exc:
        print(f"provision: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
