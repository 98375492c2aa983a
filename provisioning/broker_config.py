"""Write a venue broker's ``mosquitto.conf`` and the dynamic-security plugin's initial JSON.

    >>> cfg = BrokerConfig(Path("/var/lib/venue/broker"), ca_file=ca, cert_file=crt, key_file=key)
    >>> write_broker_config(cfg, admin_password=secret)    # -> /var/lib/venue/broker/mosquitto.conf
    $ mosquitto -c /var/lib/venue/broker/mosquitto.conf

Two listeners: a plain one on loopback for services on the hub host, and a TLS one (venue CA) for
devices. No anonymous access; every login and ACL lives in ``dynamic-security.json``, which the
broker rewrites itself whenever :class:`provisioning.broker.BrokerAdmin` changes something. That
file is written here only if it does not exist yet (it is the live state afterwards), with the admin
password hashed as the plugin does (PBKDF2-SHA512), so it never appears on a command line.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provisioning.broker_acl import DEFAULT_ACL_ACCESS, ROLE_HUB, hub_acls

PLUGIN_CANDIDATES = (
    "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so",
    "/usr/lib/aarch64-linux-gnu/mosquitto_dynamic_security.so",
    "/usr/lib/arm-linux-gnueabihf/mosquitto_dynamic_security.so",
    "/usr/lib/mosquitto_dynamic_security.so",
    "/usr/local/lib/mosquitto_dynamic_security.so",
)
ADMIN_ROLE = "admin"
HASH_ITERATIONS = 101   # what Mosquitto 2.0's dynsec uses for the passwords it sets itself


def find_dynsec_plugin() -> Path:
    for candidate in PLUGIN_CANDIDATES:
        if os.path.exists(candidate):
            return Path(candidate)
    raise FileNotFoundError("mosquitto_dynamic_security.so not found: install mosquitto >= 2.0")


@dataclass(frozen=True, slots=True)
class BrokerConfig:
    """Where and how one venue broker runs. Paths are written into the config as absolute paths."""

    directory: Path                     # config, dynsec JSON, persistence and log live here
    admin_username: str = "admin"
    prefix: str = "venue"
    admin_is_hub: bool = True           # dev/small venues: the hub service logs in as the dynsec admin
    plain_port: int = 1883
    plain_bind: str = "127.0.0.1"       # local services only; devices use TLS
    tls_port: int | None = 8883
    tls_bind: str = "0.0.0.0"
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    require_client_cert: bool = False
    run_as: str | None = None           # mosquitto's ``user``; "root" in tests (the key must be readable)
    plugin: Path | None = None          # found by find_dynsec_plugin() when None
    log_types: tuple[str, ...] = ("error", "warning", "notice")

    def __post_init__(self) -> None:
        if self.tls_port is not None and None in (self.ca_file, self.cert_file, self.key_file):
            raise ValueError("a TLS listener needs ca_file, cert_file and key_file (or tls_port=None)")

    @property
    def conf_path(self) -> Path:
        return self.directory / "mosquitto.conf"

    @property
    def dynsec_path(self) -> Path:
        return self.directory / "dynamic-security.json"

    @property
    def log_path(self) -> Path:
        return self.directory / "mosquitto.log"


def hash_password(password: str, *, iterations: int = HASH_ITERATIONS) -> dict[str, Any]:
    """The ``password``/``salt``/``iterations`` fields of a dynsec client (PBKDF2-HMAC-SHA512)."""
    salt = secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, 64)
    return {"password": base64.b64encode(digest).decode(), "salt": base64.b64encode(salt).decode(),
            "iterations": iterations}


def dynsec_initial_config(admin_username: str, admin_password: str, *, prefix: str = "venue",
                          admin_is_hub: bool = True) -> dict[str, Any]:
    """What ``mosquitto_ctrl dynsec init`` writes, deny-by-default, plus the hub role if the admin is the hub."""
    admin_acls = [
        {"acltype": "publishClientSend", "topic": "$CONTROL/dynamic-security/#", "allow": True},
        {"acltype": "publishClientReceive", "topic": "$CONTROL/dynamic-security/#", "allow": True},
        {"acltype": "subscribePattern", "topic": "$CONTROL/dynamic-security/#", "allow": True},
    ]
    roles = [{"rolename": ADMIN_ROLE, "acls": admin_acls}]
    client_roles = [{"rolename": ADMIN_ROLE}]
    if admin_is_hub:
        roles.append({"rolename": ROLE_HUB, "acls": [a.to_json() for a in hub_acls(prefix)]})
        client_roles.append({"rolename": ROLE_HUB})
    admin = {"username": admin_username, "textname": "dynsec admin", "roles": client_roles,
             **hash_password(admin_password, iterations=10_000)}
    return {"clients": [admin], "groups": [], "roles": roles, "defaultACLAccess": dict(DEFAULT_ACL_ACCESS)}


def _private_write(path: Path, text: str) -> None:
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


# The largest MQTT packet the broker takes (Mosquitto disconnects a client that sends a bigger one). The
# biggest legitimate message is a group's signed whitelist snapshot: 276 kB for 100,000 tickets
# (bench/whitelist_sync.py), so 4 MiB leaves room for ~1.4 million; every other message is a few kB.
MAX_PACKET_BYTES = 4 * 1024 * 1024


def broker_conf_text(cfg: BrokerConfig) -> str:
    plugin = cfg.plugin or find_dynsec_plugin()
    data = cfg.directory / "data"
    lines = [
        "# generated by provisioning.broker_config: logins and ACLs live in the dynsec JSON below",
        *([f"user {cfg.run_as}"] if cfg.run_as else []),
        "per_listener_settings false",
        "allow_anonymous false",
        f"plugin {plugin}",
        f"plugin_opt_config_file {cfg.dynsec_path.resolve()}",
        "set_tcp_nodelay true",
        "persistence true",
        f"persistence_location {data.resolve()}/",
        "autosave_on_changes true",
        "autosave_interval 1",
        "max_queued_messages 100000",
        f"max_packet_size {MAX_PACKET_BYTES}",
        f"log_dest file {cfg.log_path.resolve()}",
        *(f"log_type {t}" for t in cfg.log_types),
        "",
        "# services on this host",
        f"listener {cfg.plain_port} {cfg.plain_bind}",
    ]
    if cfg.tls_port is not None:
        assert cfg.ca_file and cfg.cert_file and cfg.key_file   # checked in __post_init__
        lines += [
            "",
            "# devices: TLS with the venue CA",
            f"listener {cfg.tls_port} {cfg.tls_bind}",
            f"cafile {cfg.ca_file.resolve()}",
            f"certfile {cfg.cert_file.resolve()}",
            f"keyfile {cfg.key_file.resolve()}",
            "tls_version tlsv1.2",
            f"require_certificate {'true' if cfg.require_client_cert else 'false'}",
        ]
    return "\n".join(lines) + "\n"


def write_broker_config(cfg: BrokerConfig, admin_password: str) -> Path:
    """Write ``mosquitto.conf`` (always) and ``dynamic-security.json`` (only if missing); return the conf path."""
    cfg.directory.mkdir(parents=True, exist_ok=True)
    (cfg.directory / "data").mkdir(exist_ok=True)
    if not cfg.dynsec_path.exists():
        initial = dynsec_initial_config(cfg.admin_username, admin_password, prefix=cfg.prefix,
                                        admin_is_hub=cfg.admin_is_hub)
        _private_write(cfg.dynsec_path, json.dumps(initial, indent=2))
    cfg.conf_path.write_text(broker_conf_text(cfg))
    return cfg.conf_path
