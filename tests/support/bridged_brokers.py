"""A venue Mosquitto bridged to a central Mosquitto through a link a test can cut.

    central (dynsec, TLS)  <-- TcpLink (cut / restore) <-- venue Mosquitto (anonymous, its devices)
                                                             conf.d/bridge-<venue>.conf by `provision venue-bridge`

The central broker is :class:`tests.support.secure_broker.SecureMosquitto` (its ``admin`` login has the hub
role); the bridge logs in there as its own login with the ``bridge-<venue>`` role
(:meth:`provisioning.broker.BrokerAdmin.add_venue_bridge`), over TLS against the central CA (the server
certificate names 127.0.0.1). The venue broker is :class:`tests.support.broker.Mosquitto` with an
``include_dir`` holding the file the real ``provision venue-bridge`` wrote. Both run on free ports and
are always stopped by :func:`bridged_brokers`.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiomqtt

from provisioning import cli
from provisioning.venue_bridge import notification_topic
from tests.support.broker import Mosquitto
from tests.support.net import wait_for
from tests.support.secure_broker import SecureMosquitto
from tests.support.tcp_link import TcpLink


class BridgedBrokers:
    def __init__(self, workdir: Path, *, venue: str = "east", prefix: str = "venue") -> None:
        self.workdir = workdir
        self.venue_name = venue
        self.prefix = prefix
        self.central = SecureMosquitto(workdir / "central", prefix=prefix)
        self.link = TcpLink(self.central.tls_port)
        self.venue = Mosquitto(workdir / "venue")
        self.conf_dir = workdir / "venue" / "conf.d"
        self.bridge_file = self.conf_dir / f"bridge-{venue}.conf"
        self.bridge_user = f"venue-{venue}"
        self.bridge_password = secrets.token_urlsafe(18)
        self.password_file = workdir / "bridge.password"
        self.admin_password_file = workdir / "central-admin.password"
        self.state_topic = notification_topic(prefix, venue)

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self) -> None:
        self.central.start()
        self.password_file.write_text(self.bridge_password + "\n")
        self.password_file.chmod(0o600)
        self.admin_password_file.write_text(self.central.admin_password + "\n")
        self.conf_dir.mkdir(parents=True, exist_ok=True)
        argv = ["venue-bridge", "--venue", self.venue_name, "--central-host", "127.0.0.1",
                "--central-port", str(self.link.port), "--ca", str(self.central.ca_cert),
                "--username", self.bridge_user, "--password-file", str(self.password_file),
                "--prefix", self.prefix, "--out", str(self.bridge_file),
                "--restart-timeout", "1", "3",   # a restored link is used within 3 s (production: 2 30)
                "--create-login", "--admin-host", "127.0.0.1", "--admin-port", str(self.central.port),
                "--admin-user", self.central.admin_user, "--admin-password-file", str(self.admin_password_file),
                "--admin-plain"]
        lines: list[str] = []
        code = cli.main(argv, out=lines.append)
        assert code == 0, f"provision venue-bridge exited {code}: {lines}"
        with self.venue.conf.open("a") as f:
            f.write(f"include_dir {self.conf_dir}\n")
        self.link.start()
        self.venue.start()
        self.wait_up()

    def stop(self) -> None:
        for stop in (self.venue.stop, self.link.stop, self.central.stop):
            with contextlib.suppress(Exception):
                stop()

    # -- the link ---------------------------------------------------------------------------------
    def bridge_state(self) -> bytes | None:
        """The retained connection state the bridge publishes on the central broker (b"1" up, b"0" down)."""
        return asyncio.run(self.central_retained(self.state_topic))

    def wait_up(self, timeout: float = 30) -> None:
        """Wait until the bridge says it is connected, on the central broker."""
        wait_for(lambda: self.bridge_state() == b"1", timeout=timeout, interval=0.2,
                 what=f"the bridge of venue {self.venue_name} to connect")

    async def central_retained(self, topic: str) -> bytes | None:
        """The retained message on ``topic`` at the central broker (None if there is none)."""
        async with self.central_client(f"probe-{secrets.token_hex(3)}") as c:
            await c.subscribe(topic, qos=1)
            try:
                async with asyncio.timeout(0.5):
                    async for message in c.messages:
                        return message.payload if isinstance(message.payload, bytes) else None
            except TimeoutError:
                return None
        return None

    # -- clients ----------------------------------------------------------------------------------
    def central_client(self, identifier: str, **kwargs: Any) -> aiomqtt.Client:
        """A client of the central broker with the hub role (its dynsec admin, as the hub logs in)."""
        return self.central.client(self.central.admin_user, self.central.admin_password,
                                   identifier=identifier, **kwargs)

    def venue_client(self, identifier: str, **kwargs: object) -> aiomqtt.Client:
        """A client of the venue broker (anonymous, as the test's devices are)."""
        return aiomqtt.Client("127.0.0.1", self.venue.port, identifier=identifier, timeout=5,
                              protocol=aiomqtt.ProtocolVersion.V5, **kwargs)  # type: ignore[arg-type]


@contextlib.contextmanager
def bridged_brokers(workdir: Path, *, venue: str = "east", prefix: str = "venue") -> Iterator[BridgedBrokers]:
    """Start both brokers, the link and the bridge; always stop them."""
    brokers = BridgedBrokers(workdir, venue=venue, prefix=prefix)
    try:
        brokers.start()
        yield brokers
    finally:
        brokers.stop()
