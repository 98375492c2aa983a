"""The broker connection every device daemon opens the same way (MQTT v5, Last Will, TLS, no Nagle).

    link = BrokerLink.from_config("printer-1", cfg.mqtt, cfg.status_interval)
    async with link.client("printer-printer-1", will) as client: ...
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import aiomqtt

from confkit import MqttConfig
from protocol.topics import Topics

log = logging.getLogger(__name__)


def device_client(host: str, port: int, identifier: str, will: aiomqtt.Will, *, username: str = "",
                  password: str = "", keepalive: int = 10, tls: bool = False,
                  tls_ca: str | None = None) -> aiomqtt.Client:
    """An MQTT v5 client with a Last Will; TLS against ``tls_ca`` when asked; TCP_NODELAY, because a
    confirmation sent right after a PUBACK would otherwise wait ~40 ms for the broker's delayed ACK."""
    return aiomqtt.Client(
        host, port, identifier=identifier, username=username or None, password=password or None,
        protocol=aiomqtt.ProtocolVersion.V5, will=will, keepalive=keepalive, clean_start=True, timeout=5,
        tls_params=aiomqtt.TLSParameters(ca_certs=tls_ca) if tls else None,
        socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])


@dataclass(frozen=True)
class BrokerLink:
    """Who a device is on the broker and how it connects and retries."""

    device_id: str
    host: str = "127.0.0.1"
    port: int = 1883
    prefix: str = "venue"
    username: str = ""
    password: str = field(default="", repr=False)
    keepalive: int = 10
    status_interval: float = 10.0
    backoff_min: float = 0.5
    backoff_max: float = 5.0
    tls: bool = False
    tls_ca: str | None = None  # CA file of the broker's certificate (TLS); None: the system's CAs

    @classmethod
    def from_config(cls, device_id: str, mqtt: MqttConfig, status_interval: float) -> BrokerLink:
        return cls(device_id=device_id, host=mqtt.host, port=mqtt.port, prefix=mqtt.prefix, username=mqtt.username,
                   password=mqtt.password.get_secret_value(), keepalive=mqtt.keepalive,
                   status_interval=status_interval, tls=mqtt.tls, tls_ca=str(mqtt.ca_file) if mqtt.ca_file else None)

    def client(self, identifier: str, will: aiomqtt.Will) -> aiomqtt.Client:
        return device_client(self.host, self.port, identifier, will, username=self.username, password=self.password,
                             keepalive=self.keepalive, tls=self.tls, tls_ca=self.tls_ca)


@dataclass
class ConnectionStats:
    """How a device's broker connection has fared, for its metrics (:mod:`confkit.metrics`)."""

    connects: int = 0  # successful connections; the reconnects are the ones after the first
    connected: bool = False
    last_connected: float = 0.0  # time.time() when last seen connected (connect or loss); 0: never

    def up(self) -> None:
        self.connects += 1
        self.connected, self.last_connected = True, time.time()

    def down(self) -> None:
        if self.connected:
            self.connected, self.last_connected = False, time.time()


class MqttSession(ABC):
    """One device's session with the broker: connect with its Last Will, serve, and on any loss
    reconnect with capped exponential backoff, forever. Subclasses say what the Will is and what
    to subscribe and do while connected; the loop is the same for every device daemon."""

    def __init__(self, opt: BrokerLink) -> None:
        self.opt = opt
        self.topics = Topics(opt.prefix)
        self.connected = asyncio.Event()
        self.tried = asyncio.Event()  # a first connection attempt has ended: connected or not, the device runs on
        self.stats = ConnectionStats()
        self._client: aiomqtt.Client | None = None

    @abstractmethod
    def _client_for(self) -> aiomqtt.Client:
        """A fresh client for the next attempt (its Last Will says the device is offline)."""

    @abstractmethod
    async def _serve(self, client: aiomqtt.Client) -> None:
        """Subscribe, announce, and handle messages until the connection ends (raises MqttError)."""

    async def run(self) -> None:
        """Connect, serve, and reconnect forever with capped exponential backoff."""
        delay = self.opt.backoff_min
        while True:
            try:
                async with self._client_for() as client:
                    delay = self.opt.backoff_min
                    self.stats.up()
                    await self._serve(client)
            except aiomqtt.MqttError as exc:
                if self.connected.is_set():
                    log.warning("MQTT connection to %s:%s lost: %s", self.opt.host, self.opt.port, exc)
                else:
                    log.info("MQTT broker %s:%s unreachable: %s", self.opt.host, self.opt.port, exc)
            finally:
                self._client = None
                self.connected.clear()
                self.stats.down()
                self.tried.set()
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.opt.backoff_max)
