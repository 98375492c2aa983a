"""Supervised tasks (issue 11): a task that dies is logged with its traceback, its health is ``failed``, and
it is restarted with backoff, or the process exits 70; nothing is swallowed.

Unit tests of :class:`confkit.supervise.Supervisor`, then the issue's scenarios: the gate's outbox sender
dying on an unexpected error (a real gate link against a real Mosquitto and a fake hub), and the hub's MQTT
bridge dying (the real hub in its lifespan)."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from confkit.supervise import EXIT_SOFTWARE, Supervisor, TaskFailed, watch
from gate_agent.app import run_gate
from gate_agent.checkin import Checker, Station
from gate_agent.config import GateConfig
from gate_agent.store import Store
from hub.bridge import MqttBridge
from protocol.keys import Signer
from protocol.messages import EventBatch
from protocol.reasons import Reason
from tests.gate_helpers import device_public_key, eventually, fake_hub, write_keys
from tests.hubkit import Hub, device, mqtt_hub_fixture, setup_show  # noqa: F401  (fixture)
from tests.support.broker import Mosquitto
from tests.support.net import wait_for
from tests.test_gate_checkin import RecordingActuator
from tests.test_hub_mqtt import TOPICS, event, gate, receive, stored

pytestmark = pytest.mark.timeout(30)


def failures(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if text in r.getMessage() and r.levelno >= logging.ERROR]


async def until(check: Callable[[], object], timeout: float = 3.0) -> None:  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {check}"
        await asyncio.sleep(0.01)


async def test_a_task_that_raises_is_logged_failed_restarted_and_healthy_again(
        caplog: pytest.LogCaptureFixture) -> None:
    runs: list[float] = []
    changes: list[dict[str, str]] = []

    async def flaky() -> None:
        runs.append(time.monotonic())
        if len(runs) == 1:
            raise RuntimeError("disk on fire")
        await asyncio.Event().wait()

    async with Supervisor("gate-1", healthy_after=0.3) as tasks:
        tasks.on_change = lambda: changes.append(tasks.health())
        tasks.spawn("outbox", flaky, backoff_min=0.2)
        await until(lambda: len(runs) == 2)
        assert runs[1] - runs[0] >= 0.19  # after the backoff
        assert tasks.health() == {"outbox": "failed"} == tasks.failed()  # restarted, not yet for long
        await asyncio.sleep(0.35)
        assert tasks.health() == {"outbox": "ok"} and tasks.failed() == {}
    [record] = failures(caplog, "task outbox failed")
    assert "gate-1" in record.getMessage() and record.exc_info is not None
    assert "disk on fire" in caplog.text and "Traceback" in caplog.text  # the traceback is in the log
    assert changes == [{"outbox": "failed"}]  # reported at once, before the restart


async def test_backoff_doubles_while_the_task_keeps_failing() -> None:
    runs: list[float] = []

    async def broken() -> None:
        runs.append(time.monotonic())
        raise ValueError("bug")

    async with Supervisor("kiosk-1") as tasks:
        tasks.spawn("poll", broken, backoff_min=0.05, backoff_max=0.2)
        await until(lambda: len(runs) == 5)
        assert tasks.health() == {"poll": "failed"}
    gaps = [b - a for a, b in itertools.pairwise(runs)]
    assert gaps[0] >= 0.045 and gaps[1] >= 0.095 and gaps[2] >= 0.19 and gaps[3] < 0.35  # capped at 0.2


async def test_a_critical_task_failing_ends_the_block_with_task_failed(caplog: pytest.LogCaptureFixture) -> None:
    other_cancelled = asyncio.Event()

    async def other() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            other_cancelled.set()

    async def link() -> None:
        await asyncio.sleep(0.05)
        raise OSError("unexpected")

    with pytest.raises(TaskFailed) as caught:
        async with Supervisor("gate-1") as tasks:
            tasks.spawn("scanner", other)
            tasks.spawn("link", link, critical=True)
            await asyncio.sleep(10)  # cancelled by the failure
    assert (caught.value.owner, caught.value.name) == ("gate-1", "link") and EXIT_SOFTWARE == 70
    assert other_cancelled.is_set()
    assert failures(caplog, "task link failed")[0].exc_info is not None
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]  # our cancellation taken back


async def test_restart_false_also_ends_the_block() -> None:
    async def once() -> None:
        raise KeyError("x")

    with pytest.raises(TaskFailed):
        async with Supervisor("printer-1") as tasks:
            tasks.spawn("service", once, restart=False)
            await asyncio.Event().wait()


async def test_a_task_that_returns_is_a_failure_unless_it_may_end(caplog: pytest.LogCaptureFixture) -> None:
    runs = {"forever": 0, "finite": 0}

    async def forever() -> None:
        runs["forever"] += 1
        if runs["forever"] > 1:
            await asyncio.Event().wait()

    async def finite() -> None:
        runs["finite"] += 1

    async with Supervisor("gate-1") as tasks:
        tasks.spawn("heartbeat", forever, backoff_min=0.01)
        tasks.spawn("camera", finite, forever=False)
        await until(lambda: runs["forever"] == 2)
        assert tasks.health() == {"heartbeat": "failed"}  # the ended finite task is not listed
    assert runs["finite"] == 1
    assert failures(caplog, "task heartbeat returned, but it should run until stopped")
    assert not failures(caplog, "camera")


async def test_cancelling_the_host_cancels_every_child_cleanly() -> None:
    ended: list[str] = []
    started = asyncio.Event()

    async def child(name: str) -> None:
        try:
            started.set()
            await asyncio.Event().wait()
        finally:
            ended.append(name)

    async def host() -> None:
        async with Supervisor("hub") as tasks:
            tasks.spawn("a", lambda: child("a"))
            tasks.spawn("b", lambda: child("b"))
            await asyncio.Event().wait()

    task = asyncio.create_task(host())
    await started.wait()
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sorted(ended) == ["a", "b"]


async def test_leaving_the_block_and_cancel_by_name_stop_children_even_one_that_swallows_cancellation() -> None:
    swallowed = 0

    async def stubborn() -> None:
        nonlocal swallowed
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            swallowed += 1  # returns normally: must not be restarted while stopping

    async def quiet() -> None:
        await asyncio.Event().wait()

    async with Supervisor("gate-1") as tasks:
        tasks.spawn("stubborn", stubborn, backoff_min=0.01)
        tasks.spawn("quiet", quiet)
        await asyncio.sleep(0.01)
        await tasks.cancel("stubborn")
        assert tasks.health() == {"quiet": "ok"}
        with pytest.raises(RuntimeError):
            tasks.spawn("quiet", quiet)  # names are unique
    assert swallowed == 1


async def test_a_task_that_swallows_the_cancellation_and_runs_on_is_cancelled_again() -> None:
    swallowed = 0

    async def like_aiomqtt_publish_on_311() -> None:  # asyncio.wait_for can swallow a cancellation there
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                if swallowed:
                    raise
                swallowed += 1

    async with Supervisor("printer-1") as tasks:
        tasks.spawn("heartbeat", like_aiomqtt_publish_on_311)
        await asyncio.sleep(0.01)
        started = time.monotonic()
    assert swallowed == 1 and time.monotonic() - started < 2.5


async def test_watch_logs_a_one_shot_task_failure(caplog: pytest.LogCaptureFixture) -> None:
    async def boom() -> None:
        raise RuntimeError("one-shot")

    task = watch(asyncio.create_task(boom(), name="publish-status"), "gate-1")
    await asyncio.wait([task])
    await asyncio.sleep(0)
    [record] = failures(caplog, "gate-1: task publish-status failed")
    assert record.exc_info is not None and "one-shot" in caplog.text


# ---- the scenario: the gate's outbox sender dies on an unexpected error ---------------------------


async def test_gate_outbox_sender_dies_is_logged_reported_failed_restarted_and_delivers(
        tmp_path: Path, broker: Mosquitto, signer: Signer, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    me, data_dir = "gate-s", tmp_path / "gate"
    with Store.open(data_dir) as store:  # three exit passages journalled while offline: the outbox to send
        checker = Checker(Station(me, 1, 1), store, None, RecordingActuator())  # type: ignore[arg-type]
        queued = [checker.report(Reason.EXIT, persons=1, direction="exit").event_id for _ in range(3)]
    real_pending, calls = Store.pending, list[int]()

    def pending_failing_once(self: Store, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("simulated: the outbox query hit a bug")
        return real_pending(self, *args, **kwargs)

    monkeypatch.setattr(Store, "pending", pending_failing_once)
    cfg = GateConfig(device_id=me, data_dir=data_dir, hub_keys_file=write_keys(tmp_path / "keys.json", signer),
                     status_interval=0.5, mqtt={"port": broker.port}, scanner={"url": str(tmp_path / "no-scanner")})
    stop = asyncio.Event()
    async with fake_hub(broker.port, signer, devices={me: device_public_key(data_dir)}) as hub:
        task = asyncio.create_task(run_gate(cfg, stop))
        try:
            # the heartbeat status tells the hub the sender failed...
            failed = await eventually(lambda: next((s for s in hub.statuses if s.device_id == me and s.health
                                                    and s.health.get("outbox") == "failed"), None),
                                      what="a status with health outbox: failed")
            assert failed.state == "online" and failed.outbox == 3
            # ...which was logged with its traceback, naming the device and the task
            [record] = failures(caplog, f"{me}: task outbox failed")
            assert record.exc_info is not None and "simulated: the outbox query hit a bug" in caplog.text
            # then it restarts: the queued events reach the hub, are acked and leave the outbox
            await eventually(lambda: [e.event_id for e in hub.events] == queued, what="the queued events")
            await eventually(lambda: (s := hub.last_status(me)) is not None and s.outbox == 0, what="outbox acked")
            assert not task.done()  # the gate kept running all along
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)
    assert task.result() == 0
    assert any("restarting task outbox" in r.getMessage() for r in caplog.records)


# ---- the hub's MQTT bridge dies: shown in /api/v1/health, restarted, HTTP serving all along -------------


async def test_hub_bridge_dying_shows_in_health_and_comes_back(mqtt_hub: Hub, broker: Mosquitto,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    show = setup_show(mqtt_hub)
    gate1 = device(mqtt_hub, "gate-1", show)
    bridge: MqttBridge = mqtt_hub.client.app.state.bridge  # type: ignore[attr-defined]
    assert mqtt_hub.client.get("/api/v1/health").json()["tasks"]["mqtt-bridge"] == "ok"
    real_dispatch = bridge._dispatch
    crashed: list[str] = []

    async def dispatch_crashing_once(topic: str, payload: object) -> None:
        if not crashed:
            crashed.append(topic)
            raise RuntimeError("simulated: a bug in the bridge's connection loop")
        await real_dispatch(topic, payload)

    bridge._dispatch = dispatch_crashing_once  # type: ignore[method-assign]
    async with gate(broker, "gate-1", TOPICS.ack("gate-1")) as client:
        await client.publish(TOPICS.status("gate-1"), b"{}", qos=1)  # any message: the loop dies on it
        wait_for(lambda: mqtt_hub.client.get("/api/v1/health").json()["status"] == "degraded", timeout=5,
                 what="the bridge's failure in the health")
        health = mqtt_hub.client.get("/api/v1/health")  # HTTP keeps serving
        assert health.status_code == 200 and crashed
        body = health.json()
        assert {k: body[k] for k in ("status", "tasks")} == {
            "status": "degraded", "tasks": {"mqtt-bridge": "failed", "wal-checkpoint": "ok", "live-feed": "ok",
                                            "cluster": "ok"}}
        assert failures(caplog, "hub: task mqtt-bridge failed")[0].exc_info is not None
        assert "simulated: a bug in the bridge" in caplog.text
        # restarted with backoff: connected again, and an event batch sent after it is stored and acked
        wait_for(mqtt_hub.bridge_connected, timeout=10, what="the bridge connected again")
        batch = EventBatch(device_id="gate-1", events=[event("gate-1", show, None, Reason.UNKNOWN)])
        for _ in range(20):  # until the restarted bridge has subscribed again
            await client.publish(TOPICS.events("gate-1"), gate1.batch(batch), qos=1)
            try:
                await receive(client, within=0.5)
                break
            except TimeoutError:
                continue
        else:
            raise AssertionError("no ack from the restarted bridge")
    assert len(stored(mqtt_hub, device_id="gate-1")) == 1
    assert mqtt_hub.client.get("/api/v1/health").json()["tasks"]["mqtt-bridge"] == "failed"  # for healthy_after
