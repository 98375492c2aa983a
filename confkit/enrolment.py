"""Device enrollment by claim: a new device asks the hub to join and stores the identity it is given.

The device side of enrolment, shared by every device kind (gate, handheld, kiosk, printer): part of
the device runtime, so a daemon depends on it and on :mod:`protocol` only. The command line is
:mod:`provisioning.device` (a re-export of this module)::

    $ python -m provisioning.device enroll --bootstrap bootstrap.toml --identity-dir /var/lib/gate/identity
    $ python -m provisioning.device fingerprint --bootstrap bootstrap.toml   # for the device's label

The device holds only a *bootstrap* config (broker address, the shared claim login that may use the
provisioning topics only, the hub's public keys, its serial and kind). It makes its own Ed25519 key
(``device.key``, mode 0600, created once), publishes a signed :class:`EnrollmentRequest` on
``provision/request/<serial>`` and re-sends it every ``resend_s`` until a reply signed by the hub
arrives on ``provision/reply/<reply_to>``. An approval carries its device id, site, group/channel,
broker login and a password sealed to the device key; it is stored as ``identity.json`` (mode 0600,
written atomically). A daemon runs on it, e.g. ``python -m gate_agent --bootstrap bootstrap.toml``, serving
the hub's config, commands and key updates through :class:`confkit.device_agent.DeviceAgent`.

When it starts enrolling the device prints (stdout) and logs its key fingerprint
(:func:`protocol.provisioning.key_fingerprint`, e.g. ``AB12-CD34-EF56-7890``; public): ops approve it
with ``provision approve <serial> --fingerprint <it>``, so a claim by another key for the same serial
cannot be approved by mistake.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import importlib.metadata
import json
import logging
import os
import secrets
import sys
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiomqtt
import nacl.signing
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from protocol.envelope import open_envelope
from protocol.errors import ProtocolError
from protocol.keys import Keyring
from protocol.provisioning import (
    KIND_REPLY,
    DeviceKind,
    EnrollmentRequest,
    ProvisioningTopics,
    ReplyPayload,
    key_fingerprint,
    open_secret,
)

log = logging.getLogger(__name__)

KEY_FILE = "device.key"
IDENTITY_FILE = "identity.json"


class ProvisioningError(Exception):
    """Root of every error raised by the device side of enrolment."""


class BootstrapError(ProvisioningError, ValueError):
    """The bootstrap file is missing or invalid; the message names the bad key."""


class IdentityError(ProvisioningError, ValueError):
    """The identity or device key file is missing, unreadable or invalid."""


class EnrollmentRejected(ProvisioningError, PermissionError):
    """The hub refused this device; ``reason`` is the hub's."""

    def __init__(self, serial: str, reason: str | None) -> None:
        super().__init__(f"enrollment of {serial} rejected by the hub: {reason or 'no reason given'}")
        self.reason = reason


class EnrollmentTimeout(ProvisioningError, TimeoutError):
    """No valid reply from the hub within the time allowed."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BootstrapBroker(_Model):
    host: str = Field("127.0.0.1", description="broker host name or address")
    port: int = Field(1883, ge=1, le=65535, description="broker port")
    tls: bool = Field(False, description="connect with TLS")
    ca_file: Path | None = Field(None, description="CA certificate of the broker (TLS); None: the system's CAs")
    username: str = Field(description="the shared claim login: may use the provisioning topics only")
    password: SecretStr = Field(description="the claim password; never logged")
    prefix: str = Field("venue", min_length=1, description="topic prefix shared with the hub")


class Bootstrap(_Model):
    """What a device knows before it is enrolled (a TOML file)."""

    serial: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="the device's serial number")
    kind: DeviceKind = Field("gate", description="device kind")
    hardware_model: str = Field("unknown", max_length=100, description="hardware model, shown to ops")
    software_version: str = Field("", max_length=40,
                                  description="software version; empty: the daemon's (else the installed package's)")
    identity_dir: Path = Field(Path("var/identity"), description="where device.key and identity.json live")
    hub_keys: dict[str, str | dict[str, Any]] = Field(
        description='the hub public keys with their purposes (python -m hub export-keys): '
                    '{"1": {"key": "<base64 Ed25519>", "purposes": ["ticket"]}, "2": {..., "purposes": ["control"]}}; '
                    'legacy {"1": "<base64>"}: all purposes')
    resend_s: float = Field(5.0, gt=0, description="re-send the request this often until answered")
    broker: BootstrapBroker

    @classmethod
    def load(cls, path: Path, **overrides: Any) -> Bootstrap:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
            return cls.model_validate({**data, **overrides})
        except OSError as exc:
            raise BootstrapError(f"bootstrap file {path} cannot be read: {exc}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise BootstrapError(f"bootstrap file {path} is not valid TOML: {exc}") from exc
        except ValidationError as exc:
            bad = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise BootstrapError(f"bootstrap file {path}: {bad}") from exc


class Identity(_Model):
    """What an enrolled device is: stored in ``identity.json`` (mode 0600)."""

    device_id: str
    serial: str
    kind: DeviceKind
    site: str | None = None
    group_id: int | None = None
    channel_id: int | None = None
    broker_host: str
    broker_port: int
    broker_tls: bool = False
    broker_ca_file: str | None = None
    prefix: str = "venue"
    username: str
    password: SecretStr
    hub_keys: dict[str, str | dict[str, Any]]
    hub_keys_version: int = 0

    def keyring(self) -> Keyring:
        return Keyring.from_b64(self.hub_keys)

    def save(self, directory: Path) -> Path:
        data = self.model_dump(mode="json")
        data["password"] = self.password.get_secret_value()
        return write_private(directory / IDENTITY_FILE, json.dumps(data, indent=2).encode())

    @classmethod
    def load(cls, directory: Path) -> Identity:
        path = directory / IDENTITY_FILE
        try:
            return cls.model_validate_json(path.read_bytes())
        except (OSError, ValidationError) as exc:
            raise IdentityError(f"identity file {path} cannot be used: {exc}") from exc

    @classmethod
    def exists(cls, directory: Path) -> bool:
        return (directory / IDENTITY_FILE).is_file()


def write_private(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` with mode 0600, atomically (a temporary file, fsync, rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def device_key_at(path: Path) -> nacl.signing.SigningKey:
    """The device's Ed25519 key in the file ``path`` (a base64 seed): created once (mode 0600), then
    reused. Raises IdentityError, naming the file, if it cannot be created or read or holds no key."""
    if not path.exists():
        try:
            write_private(path, base64.b64encode(bytes(nacl.signing.SigningKey.generate())) + b"\n")
        except OSError as exc:
            raise IdentityError(f"device key file {path} cannot be created: {exc}") from exc
        log.info("device key created in %s", path)
    try:
        key = nacl.signing.SigningKey(base64.b64decode(path.read_text().strip(), validate=True))
    except OSError as exc:
        raise IdentityError(f"device key file {path} cannot be read: {exc}") from exc
    except (ValueError, TypeError) as exc:
        raise IdentityError(f"device key file {path} is not a base64 Ed25519 seed") from exc
    if path.stat().st_mode & 0o077:
        log.warning("device key file %s can be read by others (mode %o): chmod 600 it", path,
                    path.stat().st_mode & 0o777)
    return key


def device_key(directory: Path) -> nacl.signing.SigningKey:
    """The device's Ed25519 key in ``directory/device.key``: created once (mode 0600), then reused."""
    return device_key_at(directory / KEY_FILE)


def public_key_b64(key: nacl.signing.SigningKey) -> str:
    return base64.b64encode(bytes(key.verify_key)).decode()


def announce_fingerprint(serial: str, key: nacl.signing.SigningKey, *, out: Callable[[str], None] = print) -> str:
    """Print (stdout, for the label or screen) and log this device's key fingerprint; return it."""
    fp = key_fingerprint(public_key_b64(key))
    out(f"enrolment: serial {serial} key fingerprint {fp} (ops approve it with: provision approve {serial} "
        f"--fingerprint {fp} ...)")
    log.info("enrolment of serial %s: key fingerprint %s", serial, fp)
    return fp


def tls_params(tls: bool, ca_file: str | Path | None) -> aiomqtt.TLSParameters | None:
    return aiomqtt.TLSParameters(ca_certs=str(ca_file) if ca_file else None) if tls else None


def check_reply(data: bytes, keyring: Keyring, request: EnrollmentRequest) -> ReplyPayload:
    """Verify a reply envelope against the hub keys and match it to ``request``. Raises ProtocolError."""
    _kind, body = open_envelope(data, keyring, kinds={KIND_REPLY})
    reply = ReplyPayload.model_validate(body)
    if reply.serial != request.serial or reply.nonce != request.nonce:
        raise IdentityError(f"reply for {reply.serial}/{reply.nonce[:8]} does not answer this request")
    return reply


def identity_from(reply: ReplyPayload, boot: Bootstrap, key: nacl.signing.SigningKey) -> Identity:
    """The identity an approval grants; raises EnrollmentRejected or IdentityError."""
    if reply.status == "rejected":
        raise EnrollmentRejected(reply.serial, reply.reason)
    if reply.device_id is None or reply.broker is None or reply.sealed is None:
        raise IdentityError("the approval lacks device_id, broker or sealed password")
    password = open_secret(reply.sealed, key).get("password")
    if not isinstance(password, str) or not password:
        raise IdentityError("the sealed secret holds no password")
    return Identity(
        device_id=reply.device_id, serial=boot.serial, kind=reply.kind or boot.kind, site=reply.site,
        group_id=reply.group_id, channel_id=reply.channel_id, broker_host=reply.broker.host,
        broker_port=reply.broker.port, broker_tls=reply.broker.tls,
        broker_ca_file=str(boot.broker.ca_file) if boot.broker.ca_file else None, prefix=boot.broker.prefix,
        username=reply.broker.username, password=SecretStr(password), hub_keys=dict(boot.hub_keys))


def installed_version(distribution: str = "venue-gates") -> str:
    """The installed release of this software (package metadata); ``unknown`` if not installed."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def make_request(boot: Bootstrap, key: nacl.signing.SigningKey, now: float,
                 default_version: str | None = None) -> EnrollmentRequest:
    """The signed request; its software version: the bootstrap's, else ``default_version`` (the daemon's),
    else :func:`installed_version`."""
    version = boot.software_version or default_version or installed_version()
    return EnrollmentRequest(
        serial=boot.serial, kind=boot.kind, hardware_model=boot.hardware_model, software_version=version,
        public_key=public_key_b64(key), reply_to=secrets.token_hex(16), nonce=secrets.token_hex(16), at=now,
    ).sign(key)


async def enroll(boot: Bootstrap, *, clock: Callable[[], float] = time.time,
                 default_version: str | None = None) -> Identity:
    """Ask the hub to enroll this device and store the identity it grants; return it. ``default_version``:
    the software version reported if the bootstrap gives none (see :func:`make_request`).

    Raises EnrollmentRejected, EnrollmentTimeout, IdentityError, or aiomqtt.MqttError if the broker
    refuses the claim login. Bound its time with :func:`asyncio.timeout`."""
    key = device_key(boot.identity_dir)
    announce_fingerprint(boot.serial, key, out=lambda line: print(line, flush=True))
    keyring = Keyring.from_b64(boot.hub_keys)
    request = make_request(boot, key, clock(), default_version)
    topics = ProvisioningTopics(boot.broker.prefix)
    async with aiomqtt.Client(
        boot.broker.host, boot.broker.port, identifier=f"claim-{boot.serial}-{request.reply_to[:8]}",
        username=boot.broker.username, password=boot.broker.password.get_secret_value(),
        protocol=aiomqtt.ProtocolVersion.V5, tls_params=tls_params(boot.broker.tls, boot.broker.ca_file),
        timeout=10,
    ) as client:
        await client.subscribe(topics.reply(request.reply_to), qos=1)
        log.info("enrolling %s (%s): waiting for the hub's approval", boot.serial, boot.kind)
        reply = await _ask(client, topics.request(boot.serial), request, keyring, boot.resend_s)
    identity = identity_from(reply, boot, key)
    identity.save(boot.identity_dir)
    log.info("enrolled as %s (site %s, group %s, channel %s)", identity.device_id, identity.site,
             identity.group_id, identity.channel_id)
    return identity


async def _ask(client: aiomqtt.Client, topic: str, request: EnrollmentRequest, keyring: Keyring,
               resend_s: float) -> ReplyPayload:
    payload = request.model_dump_json().encode()
    messages = aiter(client.messages)
    loop = asyncio.get_running_loop()
    # One read stays pending across re-sends: cancelling a read on a timeout (wait_for) can drop the
    # hub's reply if it arrives at that very moment, and the device would then wait forever.
    pending: asyncio.Future[aiomqtt.Message] = asyncio.ensure_future(anext(messages))
    try:
        while True:
            await client.publish(topic, payload, qos=1)
            deadline = loop.time() + resend_s
            while (left := deadline - loop.time()) > 0:
                done, _ = await asyncio.wait({pending}, timeout=left)
                if not done:
                    break
                message = pending.result()
                pending = asyncio.ensure_future(anext(messages))
                data = message.payload if isinstance(message.payload, bytes) else str(message.payload).encode()
                try:
                    return check_reply(data, keyring, request)
                except (ProtocolError, ProvisioningError, ValidationError) as exc:
                    log.warning("refused a provisioning reply: %s", exc)
    finally:
        pending.cancel()


async def _enroll_within(boot: Bootstrap, seconds: float | None, default_version: str | None) -> Identity:
    async with asyncio.timeout(seconds):
        return await enroll(boot, default_version=default_version)


def load_or_enroll(bootstrap: Path, *, timeout: float | None = None, default_version: str | None = None,
                   **overrides: Any) -> Path:
    """Enroll (blocking) unless an identity exists; return the identity directory. Raises ProvisioningError.
    ``default_version``: the daemon's software version, reported unless the bootstrap gives one."""
    boot = Bootstrap.load(bootstrap, **overrides)
    if not Identity.exists(boot.identity_dir):
        try:
            asyncio.run(_enroll_within(boot, timeout, default_version))
        except TimeoutError as exc:
            raise EnrollmentTimeout(f"no reply from the hub within {timeout} s") from exc
        except aiomqtt.MqttError as exc:
            raise ProvisioningError(f"enrollment: broker refused the claim login or is unreachable: {exc}") from exc
    Identity.load(boot.identity_dir)
    return boot.identity_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m provisioning.device", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("enroll", help="enroll this device (if not enrolled yet) and store its identity")
    p.add_argument("--bootstrap", type=Path, required=True, help="bootstrap TOML file")
    p.add_argument("--identity-dir", type=Path, default=None, help="overrides identity_dir of the bootstrap")
    p.add_argument("--timeout", type=float, default=None, help="give up after this many seconds")
    f = sub.add_parser("fingerprint", help="print this device's key fingerprint (makes the key if it has none)")
    f.add_argument("--bootstrap", type=Path, required=True, help="bootstrap TOML file")
    f.add_argument("--identity-dir", type=Path, default=None, help="overrides identity_dir of the bootstrap")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.cmd == "fingerprint":
        try:
            boot = Bootstrap.load(args.bootstrap, **({"identity_dir": args.identity_dir} if args.identity_dir else {}))
            print(key_fingerprint(public_key_b64(device_key(boot.identity_dir))))
        except ProvisioningError as exc:
            print(f"fingerprint: {exc}", file=sys.stderr)
            return 2
        return 0
    try:
        extra = {"identity_dir": args.identity_dir} if args.identity_dir else {}
        directory = load_or_enroll(args.bootstrap, timeout=args.timeout, **extra)
        identity = Identity.load(directory)
    except EnrollmentRejected as exc:
        print(f"enrollment rejected: {exc.reason or 'no reason given'}", file=sys.stderr)
        return 3
    except ProvisioningError as exc:
        print(f"enrollment failed: {exc}", file=sys.stderr)
        return 2
    print(f"enrolled as {identity.device_id}; identity in {directory / IDENTITY_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
