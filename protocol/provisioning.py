"""Provisioning: enrollment by claim, signed device config, remote commands, hub key rotation.

Topics (under the prefix; see :class:`ProvisioningTopics`):

    {prefix}/provision/request/{serial}        device (claim credential) -> hub: EnrollmentRequest
    {prefix}/provision/reply/{reply_to}        hub -> device: signed "provision.reply" envelope
    {prefix}/device/{id}/config                hub -> device, retained: signed "device.config" envelope
    {prefix}/device/{id}/config_ack            device -> hub: ConfigAck
    {prefix}/device/{id}/command               hub -> device: signed "device.command" envelope
    {prefix}/device/{id}/command_result        device -> hub: CommandResult
    {prefix}/hub/keys                          hub -> every device, retained: signed "hub.keys" envelope

Secrets in a reply or a command (broker passwords) are sealed to the device's own key with NaCl's
SealedBox (the device's Ed25519 key converted to Curve25519), so only that device can open them,
whoever else may see the message; the envelope around them is signed by the hub.

A device key is shown to people as its **fingerprint** (:func:`key_fingerprint`): the first 64 bits of
SHA-256 over the raw 32-byte Ed25519 public key, upper-case hex in four groups, ``AB12-CD34-EF56-7890``.
The device prints it when it enrols (for its label or screen); the hub and ``provision`` show it and
require it to approve or reject a request, so ops pick the device in front of them, not a look-alike.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import nacl.bindings
import nacl.exceptions
import nacl.public
import nacl.signing
from pydantic import BaseModel, ConfigDict, Field

from protocol.bounds import MAX_COUNT, JsonObject, OptId, UnixTime
from protocol.errors import MalformedError, SignatureError
from protocol.keys import Keyring
from protocol.messages import DeviceId, EventId

KIND_REPLY = "provision.reply"
KIND_CONFIG = "device.config"
KIND_COMMAND = "device.command"
KIND_KEYS = "hub.keys"

Serial = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
DeviceKind = Literal["gate", "handheld", "kiosk", "printer"]
CommandName = Literal["resync_whitelist", "restart", "diagnostics", "rotate_credentials"]
_B64_KEY = re.compile(r"^[A-Za-z0-9+/]{43}=$")
FINGERPRINT_EXAMPLE = "AB12-CD34-EF56-7890"
_FP_SEPARATORS = re.compile(r"[\s:_-]+")
_FP_HEX = re.compile(r"^[0-9A-F]{16}$")


def key_fingerprint(public_key_b64: str) -> str:
    """The short, readable fingerprint of a device's Ed25519 public key (base64), e.g. ``AB12-CD34-EF56-7890``:
    the first 8 bytes of SHA-256 over the raw key, upper-case hex in groups of four. The one definition
    the device, the hub and the ``provision`` CLI share."""
    digest = hashlib.sha256(base64.b64decode(public_key_b64, validate=True)).hexdigest()[:16].upper()
    return "-".join(digest[i:i + 4] for i in range(0, 16, 4))


def normalize_fingerprint(text: str) -> str:
    """``"ab12 cd34:ef56-7890"`` -> ``"AB12-CD34-EF56-7890"``; raises MalformedError for anything else."""
    raw = _FP_SEPARATORS.sub("", text.strip()).upper()
    if not _FP_HEX.match(raw):
        raise MalformedError(f"{text[:40]!r} is not a key fingerprint: expected 16 hex digits like "
                             f"{FINGERPRINT_EXAMPLE}")
    return "-".join(raw[i:i + 4] for i in range(0, 16, 4))


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EnrollmentRequest(_Message):
    """A new device asks to join. ``signature`` (base64, Ed25519 by the device's new key over
    :meth:`signed_bytes`) proves it holds the private key of ``public_key``."""

    v: Literal[1] = 1
    serial: Serial
    kind: DeviceKind
    hardware_model: str = Field(max_length=100)
    software_version: str = Field(max_length=40)
    public_key: str = Field(pattern=_B64_KEY.pattern, description="device Ed25519 public key, base64")
    reply_to: str = Field(pattern=r"^[0-9a-f]{32}$", description="random; the reply comes on provision/reply/<it>")
    nonce: EventId = Field(description="random; echoed in the reply, so an old reply cannot be replayed")
    at: UnixTime
    signature: str = Field("", max_length=200, description="base64 Ed25519 signature over signed_bytes()")

    def signed_bytes(self) -> bytes:
        body = self.model_dump(exclude={"signature"})
        return b"enrollment/v1\x00" + json.dumps(body, sort_keys=True, separators=(",", ":")).encode()

    @property
    def fingerprint(self) -> str:
        """:func:`key_fingerprint` of ``public_key``."""
        return key_fingerprint(self.public_key)

    def sign(self, key: nacl.signing.SigningKey) -> EnrollmentRequest:
        sig = base64.b64encode(key.sign(self.signed_bytes()).signature).decode()
        return self.model_copy(update={"signature": sig})

    def verify(self) -> None:
        """Raise SignatureError unless the request is signed by the key it carries."""
        try:
            key = nacl.signing.VerifyKey(base64.b64decode(self.public_key))
            key.verify(self.signed_bytes(), base64.b64decode(self.signature))
        except (nacl.exceptions.CryptoError, ValueError) as exc:
            raise SignatureError(f"enrollment request of {self.serial} is not signed by its own key") from exc


class ConfigAck(_Message):
    v: Literal[1] = 1
    device_id: DeviceId
    version: int = Field(ge=0, le=MAX_COUNT)
    applied: bool
    error: str | None = Field(None, max_length=500)
    at: UnixTime


class CommandResult(_Message):
    v: Literal[1] = 1
    device_id: DeviceId
    command_id: EventId
    ok: bool
    result: JsonObject = Field(default_factory=dict)
    error: str | None = Field(None, max_length=500)
    at: UnixTime


class BrokerAccess(_Message):
    host: str
    port: int = Field(ge=1, le=65535)
    tls: bool = False
    username: str = Field(description="the device's own broker login (its device id)")


class ReplyPayload(_Message):
    """Body of a signed ``provision.reply`` envelope."""

    serial: Serial
    nonce: EventId = Field(description="the request's nonce: a reply to another request is refused")
    status: Literal["approved", "rejected"]
    reason: str | None = Field(None, max_length=200, description="why it was rejected")
    device_id: DeviceId | None = None
    kind: DeviceKind | None = None
    site: str | None = Field(None, max_length=100)
    group_id: OptId = None
    channel_id: OptId = None
    broker: BrokerAccess | None = None
    sealed: str | None = Field(None, description='seal_secret({"password": ...}) to the device key')
    at: float


class ConfigPayload(_Message):
    """Body of a signed, retained ``device.config`` envelope: the whole assigned configuration."""

    device_id: DeviceId
    version: int = Field(ge=1, le=MAX_COUNT, description="grows with every change; a device applies only a newer one")
    issued_at: float
    config: dict[str, Any] = Field(description="settings for the device (channel, pins, policies, printer...)")


class CommandPayload(_Message):
    """Body of a signed ``device.command`` envelope. A device runs each command id once, and never
    after ``expires_at``; ``rotate_credentials`` carries the new password sealed in ``args.sealed``."""

    device_id: DeviceId
    command_id: EventId
    name: CommandName
    issued_at: float
    expires_at: float
    args: dict[str, Any] = Field(default_factory=dict)


class KeyEntry(_Message):
    """One trusted hub key: its public key and what it may sign (``ticket`` tokens, ``control`` envelopes)."""

    key: str = Field(pattern=_B64_KEY.pattern, description="base64 Ed25519 public key")
    purposes: list[Literal["ticket", "control"]] = Field(min_length=1, max_length=2)


class KeysPayload(_Message):
    """Body of a signed, retained ``hub.keys`` envelope: the hub keys devices must trust from now on, each
    with its purposes. Signed by a key the device already trusts for ``control``; applied only if
    ``version`` is newer. A bare base64 string (legacy, single-key hub) means all purposes."""

    version: int = Field(ge=1)
    keys: dict[Annotated[str, Field(pattern=r"^(25[0-5]|2[0-4][0-9]|1?[0-9]{1,2})$")], KeyEntry | str] = Field(
        min_length=1, max_length=256,
        description='key id -> {"key": base64, "purposes": ["ticket"|"control"]}, e.g. {"1": ..., "2": ...}')
    issued_at: float

    def keyring(self) -> Keyring:
        """The keys as a :class:`Keyring` (raises MalformedError)."""
        return Keyring.from_b64(self.model_dump()["keys"])


@dataclass(frozen=True)
class ProvisioningTopics:
    prefix: str = "venue"

    def request(self, serial: str) -> str:
        return f"{self.prefix}/provision/request/{serial}"

    def all_requests(self) -> str:
        return f"{self.prefix}/provision/request/+"

    def reply(self, reply_to: str) -> str:
        return f"{self.prefix}/provision/reply/{reply_to}"

    def config(self, device_id: str) -> str:
        return f"{self.prefix}/device/{device_id}/config"

    def config_ack(self, device_id: str) -> str:
        return f"{self.prefix}/device/{device_id}/config_ack"

    def command(self, device_id: str) -> str:
        return f"{self.prefix}/device/{device_id}/command"

    def command_result(self, device_id: str) -> str:
        return f"{self.prefix}/device/{device_id}/command_result"

    def hub_keys(self) -> str:
        return f"{self.prefix}/hub/keys"


def seal_secret(secret: dict[str, Any], device_public_key_b64: str) -> str:
    """Encrypt ``secret`` (JSON) so that only the holder of the device's Ed25519 private key can read it."""
    ed_pk = base64.b64decode(device_public_key_b64)
    curve_pk = nacl.public.PublicKey(nacl.bindings.crypto_sign_ed25519_pk_to_curve25519(ed_pk))
    box = nacl.public.SealedBox(curve_pk)
    return base64.b64encode(box.encrypt(json.dumps(secret).encode())).decode()


def open_secret(sealed_b64: str, device_key: nacl.signing.SigningKey) -> dict[str, Any]:
    """Decrypt what :func:`seal_secret` sealed to this device. Raises MalformedError."""
    try:
        curve_sk = nacl.public.PrivateKey(nacl.bindings.crypto_sign_ed25519_sk_to_curve25519(
            bytes(device_key) + bytes(device_key.verify_key)))
        data = nacl.public.SealedBox(curve_sk).decrypt(base64.b64decode(sealed_b64))
        out = json.loads(data)
    except (nacl.exceptions.CryptoError, ValueError) as exc:
        raise MalformedError("sealed secret does not open with this device's key") from exc
    if not isinstance(out, dict):
        raise MalformedError("sealed secret is not a JSON object")
    return out
