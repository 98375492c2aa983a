"""A venue broker's Mosquitto bridge to the central broker: the configuration file, pure text, no I/O
(except :func:`check_files`).

    >>> bridge = VenueBridge("east", "mqtt.centre.example", 8883, "venue-east", password,
    ...                      ca_file=Path("/etc/venue/tls/central-ca.crt"))
    >>> check_files(bridge)                       # the only function here that looks at the disk (stat)
    >>> text = bridge_conf_text(bridge)           # -> /etc/mosquitto/conf.d/bridge-east.conf (0600)

Each venue runs its own Mosquitto for its devices (entry keeps working while the venue's link to the
centre is down). That broker bridges exactly the device topics of one prefix to the central broker, as
its own login (``remote_username``) over TLS (the central broker's CA): uplinks (device -> hub) go
**out**, downlinks (hub -> device) come **in**, both at QoS 1, with a persistent session on both sides
(``cleansession false``, ``local_cleansession false``), so QoS 1 messages wait in the brokers' queues
while the link is down. Nothing else crosses: not ``$CONTROL`` (the dynsec admin), not another
prefix, not a topic no device or hub uses. ``provision venue-bridge`` writes the file;
:func:`provisioning.broker_acl.venue_bridge_acls` is the matching role on a dynsec central broker.

The topic list is the protocol's (:mod:`protocol.topics`, :mod:`protocol.provisioning`,
:mod:`protocol.printing`) and the same the device ACLs use (:data:`DEVICE_PUBLISHES`,
:data:`DEVICE_RECEIVES` in :mod:`provisioning.broker_acl`, which holds the lists);
tests/test_venue_bridge.py checks that every topic of the protocol is on exactly one side.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path

from provisioning.broker_acl import bridge_downlink_topics, bridge_uplink_topics

VENUE_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?$")   # DNS-label-like: client id, role, file name
PREFIX = re.compile(r"^[A-Za-z0-9_-]{1,64}(?:/[A-Za-z0-9_-]{1,64}){0,3}$")   # no wildcard, no "$", no empty level
_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                       r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
QOS = 1


class BridgeConfigError(ValueError):
    """An input of the bridge configuration is not acceptable; the message names it and its value."""


def uplink_topics(prefix: str) -> list[str]:
    """Topic filters devices publish and hubs read: they go out of the venue broker to the central one."""
    return bridge_uplink_topics(prefix)


def downlink_topics(prefix: str) -> list[str]:
    """Topic filters hubs publish and devices read: they come into the venue broker from the central one."""
    return bridge_downlink_topics(prefix)


def notification_topic(prefix: str, venue: str) -> str:
    """Where the bridge's connection state is visible, on both brokers, retained: ``1`` up, ``0`` down
    (on the central broker the ``0`` is the bridge's Last Will)."""
    return f"{prefix}/bridge/{venue}/state"


def connection_name(venue: str) -> str:
    """The bridge's ``connection`` name, also its client id on the central broker (``remote_clientid``),
    so its persistent session there survives a change of the venue host's name."""
    return f"bridge-{venue}"


def _text(what: str, value: str, *, max_len: int = 256, secret: bool = False) -> str:
    """A value that goes on one config line: no control character (a newline would start a new option),
    no leading or trailing blank (Mosquitto strips them), not empty. A secret is never shown."""
    if not value or len(value) > max_len or _CONTROL.search(value) or value != value.strip():
        shown = "" if secret else f" {value[:80]!r}"
        raise BridgeConfigError(f"{what}{shown} must be 1-{max_len} characters, no control characters "
                                "and no leading or trailing blanks")
    return value


def _host(host: str) -> str:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        if not _HOSTNAME.match(host):
            raise BridgeConfigError(f"central host {host[:80]!r} is neither an IP address nor a DNS name") from None
        return host
    if address.version == 6:
        raise BridgeConfigError(f"central host {host!r}: give an IPv6 central broker a DNS name (Mosquitto's "
                                "`address` needs the [host]:port form for it, which this file does not write)")
    return host


@dataclass(frozen=True, slots=True)
class VenueBridge:
    """One venue broker's bridge to the central broker. Checked when made (:class:`BridgeConfigError`)."""

    venue: str                          # e.g. "east": names the connection, its client id and state topic
    central_host: str
    central_port: int
    username: str                       # the venue's own login on the central broker
    password: str
    ca_file: Path                       # the CA the central broker's certificate chains to
    cert_file: Path | None = None       # a client certificate, if the central broker asks for one
    key_file: Path | None = None
    prefix: str = "venue"               # the hub's and the devices' topic prefix
    restart_base: int = 2               # reconnect backoff ("decorrelated jitter"), seconds: first ...
    restart_cap: int = 30               # ... and longest wait
    keepalive: int = 30                 # seconds; a dead link is noticed within about 1.5x this
    insecure: bool = False              # never true in production: skips the host name check

    def __post_init__(self) -> None:
        if not VENUE_NAME.match(self.venue):
            raise BridgeConfigError(f"venue name {self.venue[:80]!r} must be 1-32 of a-z 0-9 and '-', starting "
                                    "and ending with a letter or digit")
        if not PREFIX.match(self.prefix):
            raise BridgeConfigError(f"prefix {self.prefix[:80]!r} must be 1-4 levels of A-Z a-z 0-9 _ - "
                                    "(no wildcard, no '$', no empty level)")
        _host(self.central_host)
        if isinstance(self.central_port, bool) or not isinstance(self.central_port, int) \
                or not 1 <= self.central_port <= 65535:
            raise BridgeConfigError(f"central port {self.central_port!r} must be 1-65535")
        _text("username", self.username, max_len=64)
        _text("password", self.password, secret=True)
        for what, path in (("CA file", self.ca_file), ("certificate file", self.cert_file),
                           ("key file", self.key_file)):
            if path is not None:
                _text(what, str(path), max_len=4096)
        if (self.cert_file is None) != (self.key_file is None):
            raise BridgeConfigError("a client certificate needs both the certificate file and the key file "
                                    f"(got certificate {self.cert_file}, key {self.key_file})")
        if not 1 <= self.restart_base <= self.restart_cap <= 3600:
            raise BridgeConfigError(f"restart backoff {self.restart_base}..{self.restart_cap} s: need "
                                    "1 <= base <= cap <= 3600")
        if not 5 <= self.keepalive <= 3600:
            raise BridgeConfigError(f"keepalive {self.keepalive} s must be 5-3600 (Mosquitto's minimum is 5)")


def check_files(bridge: VenueBridge) -> None:
    """Raise :class:`BridgeConfigError` naming the first TLS file that is not a readable file (checked as the
    user running ``provision``; the broker must be able to read them too, or the bridge never connects)."""
    for what, path in (("CA file", bridge.ca_file), ("certificate file", bridge.cert_file),
                       ("key file", bridge.key_file)):
        if path is None:
            continue
        if not path.is_file():
            raise BridgeConfigError(f"{what} {path} does not exist or is not a file")
        if not os.access(path, os.R_OK):
            raise BridgeConfigError(f"{what} {path} is not readable")


def bridge_conf_text(bridge: VenueBridge) -> str:
    """The bridge section for the venue broker's config (e.g. a file in ``/etc/mosquitto/conf.d/``, which
    must come after the listeners: every line after ``connection`` belongs to the bridge)."""
    b, name = bridge, connection_name(bridge.venue)
    tls = [f"bridge_cafile {os.path.abspath(b.ca_file)}"]   # absolute: the broker's working directory is not ours
    if b.cert_file is not None and b.key_file is not None:
        tls += [f"bridge_certfile {os.path.abspath(b.cert_file)}", f"bridge_keyfile {os.path.abspath(b.key_file)}"]
    lines = [
        f"# generated by `provision venue-bridge` for venue {b.venue}: devices' topics of prefix {b.prefix!r}",
        "# to and from the central broker. Holds the venue's central login: keep it 0600.",
        f"connection {name}",
        f"address {b.central_host}:{b.central_port}",
        f"remote_clientid {name}",
        f"remote_username {b.username}",
        f"remote_password {b.password}",
        *tls,
        "bridge_tls_version tlsv1.2",
        f"bridge_insecure {'true' if b.insecure else 'false'}",
        "# MQTT 3.1.1, not v5: a Mosquitto 2.0 bridge speaking v5 sends no session expiry interval, so the",
        "# central broker ends its session at each disconnect and drops the downlinks queued while the link was",
        "# down (mosquitto issues #2424, #2793, #2980; tests/test_venue_bridge.py shows it with 2.0.11). 3.1.1",
        "# with cleansession false keeps the session, and the protocol uses no v5 property on these topics.",
        "# try_private: the central broker sees a bridge (loop detection, retained flags kept as published).",
        "bridge_protocol_version mqttv311",
        "try_private true",
        "# persistent sessions on both sides: QoS 1 messages wait in the brokers' queues while the link is down",
        "# (up to each broker's max_queued_messages per session; the devices' outboxes keep their events anyway)",
        "cleansession false",
        "local_cleansession false",
        "start_type automatic",
        f"restart_timeout {b.restart_base} {b.restart_cap}",
        f"keepalive_interval {b.keepalive}",
        "notifications true",
        f"notification_topic {notification_topic(b.prefix, b.venue)}",
        "# device -> hub",
        *(f"topic {t} out {QOS}" for t in uplink_topics(b.prefix)),
        "# hub -> device (retained ones arrive retained)",
        *(f"topic {t} in {QOS}" for t in downlink_topics(b.prefix)),
    ]
    return "\n".join(lines) + "\n"
