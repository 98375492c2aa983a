"""The broker session every daemon and the hub's bridge open the same way: one client factory (MQTT v5,
an optional Last Will, TLS against a CA file, no Nagle) and one reconnect loop (capped exponential backoff).

    link = BrokerLink.from_config("printer-1", cfg.mqtt, cfg.status_interval)
    async with link.client("printer-printer-1", will) as client: ...

    await reconnecting(make_client, serve, backoff_min=0.25, backoff_max=10.0, on_error=log_it)

The Last Will convention: a device's Will is its retained ``{prefix}/device/<id>/status`` saying "offline"
(its status on each connect says "online"). The hub's bridge follows it on ``{prefix}/hub/presence/<hub id>``
(:class:`protocol.messages.HubPresence`): a retained "online" on every connect, "offline" as its Will and
when it stops (a clean disconnect discards the Will, so it is published first).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from confkit import MqttConfig
from protocol.topics import Topics

log = logging.getLogger(__name__)


def tls_context(ca_file: str | Path | None = None) -> ssl.SSLContext:
    """How any of ours reaches the broker's TLS listener: the certificate must chain to ``ca_file`` (the
    venue CA; None: the system's CAs) and name the host; TLS 1.2 or later."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca_file) if ca_file is not None else None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def client(host: str, port: int, identifier: str, *, will: aiomqtt.Will | None = None, username: str = "",
           password: str = "", keepalive: int = 10, tls: bool = False, tls_ca: str | Path | None = None,
           timeout: float = 5, max_inflight_messages: int | None = None,
           max_queued_incoming_messages: int | None = None, session_expiry: int = 0) -> aiomqtt.Client:
    """An MQTT v5 client, with a Last Will when given one; TLS against ``tls_ca`` when asked
    (:func:`tls_context`); TCP_NODELAY, because a confirmation sent right after a PUBACK would otherwise
    wait ~40 ms for the broker's delayed ACK. ``session_expiry`` > 0: a persistent session (clean start
    off) that the broker keeps that many seconds after a disconnect, with its subscriptions and the QoS 1
    messages that arrived meanwhile; 0: a clean session on every connect."""
    properties = None
    if session_expiry > 0:
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = session_expiry
    return aiomqtt.Client(
        host, port, identifier=identifier, username=username or None, password=password or None,
        protocol=aiomqtt.ProtocolVersion.V5, will=will, keepalive=keepalive, clean_start=session_expiry <= 0,
        properties=properties, timeout=timeout, tls_context=tls_context(tls_ca) if tls else None,
        max_inflight_messages=max_inflight_messages, max_queued_incoming_messages=max_queued_incoming_messages,
        socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])


def device_client(host: str, port: int, identifier: str, will: aiomqtt.Will, *, username: str = "",
                  password: str = "", keepalive: int = 10, tls: bool = False,
                  tls_ca: str | None = None) -> aiomqtt.Client:
    """A device's client: :func:`client` with the Last Will every device has."""
    return client(host, port, identifier, will=will, username=username, password=password, keepalive=keepalive,
                  tls=tls, tls_ca=tls_ca)


async def reconnecting(make_client: Callable[[], aiomqtt.Client],
                       serve: Callable[[aiomqtt.Client], Awaitable[None]], *, backoff_min: float,
                       backoff_max: float, on_error: Callable[[aiomqtt.MqttError, float], None],
                       on_up: Callable[[], None] | None = None,
                       on_down: Callable[[], None] | None = None) -> NoReturn:
    """The one reconnect loop: connect a fresh ``make_client()``, ``serve`` it until the connection ends,
    and retry after a delay that starts at ``backoff_min`` (again after each successful connect) and
    doubles up to ``backoff_max``, forever (until cancelled). ``on_up`` runs once connected, before
    ``serve``; ``on_error(exc, delay)`` for a refused or lost connection; ``on_down`` after every
    attempt, whatever its end (cancellation too)."""
    delay = backoff_min
    while True:
        try:
            async with make_client() as connected:
                delay = backoff_min
                if on_up is not None:
                    on_up()
                await serve(connected)
        except aiomqtt.MqttError as exc:
            on_error(exc, delay)
        finally:
            if on_down is not None:
                on_down()
        await asyncio.sleep(delay)
        delay = min(delay * 2, backoff_max)


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
        """Connect, serve, and reconnect forever with capped exponential backoff (:func:`reconnecting`)."""
        await reconnecting(self._client_for, self._serve, backoff_min=self.opt.backoff_min,
                           backoff_max=self.opt.backoff_max, on_error=self._lost, on_up=self.stats.up,
                           on_down=self._down)

    def _lost(self, exc: aiomqtt.MqttError, delay: float) -> None:
        if self.connected.is_set():
            log.warning("MQTT connection to %s:%s lost: %s", self.opt.host, self.opt.port, exc)
        else:
            log.info("MQTT broker %s:%s unreachable: %s", self.opt.host, self.opt.port, exc)

    def _down(self) -> None:
        self._client = None
        self.connected.clear()
        self.stats.down()
        self.tried.set()
