"""A device's broker session that also serves topics for others: the provisioning agent's config, commands
and hub keys (:mod:`confkit.device_agent`), whatever the daemon's kind.

:class:`ServedSession` is an :class:`~confkit.mqtt.MqttSession` with the part of
:class:`confkit.device_agent.DeviceHost` that is about the broker: :meth:`serve`, :meth:`serve_keys`,
:meth:`publish`, :meth:`relogin`, :meth:`keys_changed`. A daemon's session subclass calls
:meth:`_subscribe_served` once connected (the hub key list first, so retained messages signed by a new key
verify) and :meth:`_dispatch` for every message on a served topic; a refused message is logged and changes
nothing, and after a :meth:`relogin` the dispatch ends the connection so the next one uses the new login.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace

import aiomqtt

from confkit.logs import truncate
from confkit.mqtt import BrokerLink, MqttSession

log = logging.getLogger(__name__)

Handler = Callable[[bytes], Awaitable[None]]


class ServedSession(MqttSession):
    """An MQTT session with topics served to handlers (the provisioning agent's)."""

    def __init__(self, opt: BrokerLink) -> None:
        super().__init__(opt)
        self._handlers: dict[str, Handler] = {}
        self._first: list[str] = []  # subscribed before the others (the hub key list)
        self._relogin = False
        self.suspects: dict[str, Callable[[], bool]] = {}  # part -> resolved(): "stale" in the health until true

    def serve(self, topic: str, handler: Handler, *, first: bool = False) -> None:
        """Subscribe ``topic`` (from the next connect on) and pass its messages to ``handler``; ``first``:
        before every other topic (the hub key list, so retained messages signed by a new key verify)."""
        self._handlers[topic] = handler
        if first and topic not in self._first:
            self._first.append(topic)

    def serve_keys(self, topic: str, handler: Handler) -> None:
        """The hub key list, retained on ``topic``: subscribed first."""
        self.serve(topic, handler, first=True)

    def serves(self, topic: str) -> bool:
        return topic in self._handlers

    async def publish(self, topic: str, payload: bytes) -> bool:
        """Publish at QoS 1; False if not connected or it failed."""
        client = self._client
        if client is None:
            return False
        try:
            await client.publish(topic, payload, qos=1, timeout=2)
        except aiomqtt.MqttError as exc:
            log.warning("could not publish on %s: %s", topic, exc)
            return False
        return True

    def relogin(self, username: str, password: str) -> None:
        """Use these broker credentials from now on: the session is closed and reopened with them."""
        self.opt = replace(self.opt, username=username, password=password)
        self._relogin = True

    def status_changed(self) -> None:
        """Send the status now: a part's health changed (the daemon's session says how)."""

    def keys_unverified(self, reason: str, resolved: Callable[[], bool]) -> None:
        """A hub key list did not verify (a missed rotation?): ``keys: stale`` in the health until
        ``resolved()`` (no catch-up chain to this device: stale until it is updated or re-enrolled)."""
        log.error("keys STALE: %s", reason)
        self.suspects["keys"] = resolved
        self.status_changed()

    async def keys_changed(self) -> None:
        """The trusted hub keys changed: no longer keys-stale; get the retained served messages again
        (they may verify now)."""
        self.suspects.pop("keys", None)
        client = self._client
        if client is None:
            return
        try:
            for topic in self._handlers:
                if topic not in self._first:
                    await client.subscribe(topic, qos=1)  # the broker sends the retained message again
        except aiomqtt.MqttError as exc:
            log.debug("re-subscribe after a key change failed: %s", exc)
        self.status_changed()

    def stale_parts(self) -> dict[str, str]:
        """``{"keys": "stale"}`` for each suspect part not resolved yet, for the status's health."""
        return {part: "stale" for part, resolved in list(self.suspects.items()) if not resolved()}

    async def _subscribe_first(self, client: aiomqtt.Client) -> None:
        for topic in self._first:
            await client.subscribe(topic, qos=1)

    async def _subscribe_rest(self, client: aiomqtt.Client) -> None:
        for topic in self._handlers:
            if topic not in self._first:
                await client.subscribe(topic, qos=1)

    async def _dispatch(self, topic: str, data: bytes) -> None:
        """Hand a served topic's message to its handler; raises MqttError to reconnect after a relogin."""
        handler = self._handlers.get(topic)
        if handler is None:
            log.warning("message on an unexpected topic", extra={"topic": topic, "payload": truncate(data)})
            return
        try:
            await handler(data)
        except aiomqtt.MqttError:
            raise
        except Exception as exc:
            log.warning("refused message: %s", exc, extra={"topic": topic, "payload": truncate(data)})
        if self._relogin:
            self._relogin = False
            raise aiomqtt.MqttError("reconnecting with new credentials")
