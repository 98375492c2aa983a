"""The one reconnect loop (:func:`confkit.mqtt.reconnecting`) the device daemons and the hub's bridge share."""

from __future__ import annotations

import asyncio
import ssl

import aiomqtt
import pytest

from confkit import mqtt


class FakeClient:
    """Refuses to connect while ``refuse`` is true; otherwise connects and the serve callback decides."""

    def __init__(self, refuse: bool) -> None:
        self.refuse = refuse

    async def __aenter__(self) -> FakeClient:
        if self.refuse:
            raise aiomqtt.MqttError("refused")
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None


async def test_backoff_doubles_to_its_cap_and_resets_after_a_connect(monkeypatch: pytest.MonkeyPatch) -> None:
    plan = [True, True, True, True, False, True]  # refused x4, connected (then lost), refused
    delays: list[float] = []
    events: list[str] = []

    async def sleep(delay: float) -> None:
        delays.append(delay)
        if not plan:
            raise asyncio.CancelledError

    monkeypatch.setattr(mqtt.asyncio, "sleep", sleep)

    def make() -> aiomqtt.Client:
        return FakeClient(plan.pop(0))  # type: ignore[return-value]

    async def serve(client: aiomqtt.Client) -> None:
        events.append("serve")
        raise aiomqtt.MqttError("lost")

    with pytest.raises(asyncio.CancelledError):
        await mqtt.reconnecting(make, serve, backoff_min=0.25, backoff_max=1.0,
                                on_error=lambda exc, delay: events.append(f"{exc}@{delay}"),
                                on_up=lambda: events.append("up"), on_down=lambda: events.append("down"))
    assert delays == [0.25, 0.5, 1.0, 1.0, 0.25, 0.5]
    assert events == ["refused@0.25", "down", "refused@0.5", "down", "refused@1.0", "down", "refused@1.0", "down",
                      "up", "serve", "lost@0.25", "down", "refused@0.5", "down"]


async def test_one_client_factory_with_or_without_a_will_and_tls() -> None:
    will = aiomqtt.Will("venue/device/g1/status", b"offline", qos=1, retain=True)
    device = mqtt.client("127.0.0.1", 1883, "gate-g1", will=will)
    hub = mqtt.client("127.0.0.1", 8883, "hub", tls=True, max_inflight_messages=200,
                      max_queued_incoming_messages=100_000)
    assert device._client._will
    assert not hub._client._will
    assert hub._client._ssl_context is not None
    assert hub._queue.maxsize == 100_000
    ctx = mqtt.tls_context()
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert ctx.minimum_version >= ssl.TLSVersion.TLSv1_2
