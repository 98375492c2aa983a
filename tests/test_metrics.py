"""Issue 11 item 8: Prometheus metrics on the hub (``GET /metrics``) and on each device daemon's own port."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from gate_agent import __version__ as gate_version
from gate_agent.app import run_gate
from gate_agent.config import GateConfig
from hub.config import load_settings
from kiosk_agent.app import create_app as create_kiosk
from kiosk_agent.config import load_config as kiosk_config
from printer_agent.config import load_config as printer_config
from printer_agent.device import EscposDevice
from protocol.keys import Keyring, Signer
from protocol.messages import CheckinEvent, EventBatch, GateStatus, dump_message
from protocol.reasons import Reason
from protocol.topics import Topics
from protocol.whitelist import WhitelistEntry
from tests.gate_helpers import ADULT, CHANNEL, GROUP, PERF, eventually, fake_hub, seal_snapshot, snapshot, token
from tests.gate_helpers import write_keys as write_gate_keys
from tests.hubkit import ADMIN_PASSWORD, Hub, device, mqtt_hub_fixture, run_hub, sell, setup_show
from tests.hubkit import TestClient as HubTestClient
from tests.printer_helpers import PRINTER, hub_client, job, sealed
from tests.support.broker import Mosquitto
from tests.support.net import free_port, port_open
from tests.support.serial_pty import PtyPair
from tests.test_printer_daemon import agent as printer_agent

_ = mqtt_hub_fixture  # the fixture
ROOT = Path(__file__).resolve().parents[1]
TOPICS = Topics("venue")

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(text: str) -> Samples:
    """Every sample of a scrape: (name, labels) -> value."""
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(found: Samples, name: str, **labels: str) -> float | None:
    return found.get((name, frozenset(labels.items())))


def event(device_id: str, show: dict[str, int], ticket_id: int | None, reason: Reason, seq: int,
          scanned_at: float) -> CheckinEvent:
    return CheckinEvent(event_id=uuid.uuid4().hex, device_id=device_id, group_id=show["group"],
                        channel_id=show["channel"], seq=seq, reason=reason, ticket_id=ticket_id,
                        performance_id=show["performance"], ticket_type_id=show["adult"],
                        persons=1 if reason is Reason.ADMITTED else 0, scanned_at=scanned_at, offline=True,
                        excerpt=None, source="qr")


def scrape(hub: Hub, **headers: str) -> Samples:
    r = hub.client.get("/metrics", headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return samples(r.text)


# -- the hub --------------------------------------------------------------------------------------
async def test_hub_metrics_count_stored_scans_online_checks_devices_and_whitelist_seqs(
        mqtt_hub: Hub, broker: Mosquitto) -> None:
    show = setup_show(mqtt_hub)
    gate1 = device(mqtt_hub, "gate-1", show)
    ticket, online = sell(mqtt_hub, show), sell(mqtt_hub, show)
    before = scrape(mqtt_hub)
    assert value(before, "venue_hub_online_check_seconds_count") == 0
    assert value(before, "venue_hub_emergency_open") == 0 and value(before, "venue_hub_emergency_seq") == 0
    assert value(before, "venue_hub_metrics_db_ok") == 1
    now = time.time()
    batch = EventBatch(device_id="gate-1", events=[event("gate-1", show, ticket["id"], Reason.ADMITTED, 1, now - 2),
                                                  event("gate-1", show, 999, Reason.UNKNOWN, 2, now - 1)])
    async with aiomqtt.Client("127.0.0.1", broker.port, identifier="gate-1",
                              protocol=aiomqtt.ProtocolVersion.V5) as client:
        await client.subscribe(TOPICS.ack("gate-1"), qos=1)
        for _ in range(2):  # the re-sent batch is acked again and stored (and counted) once
            await client.publish(TOPICS.events("gate-1"), gate1.batch(batch), qos=1)
            async with asyncio.timeout(5):
                await anext(aiter(client.messages))
        await client.publish(TOPICS.status("gate-1"), dump_message(GateStatus(
            device_id="gate-1", state="online", at=time.time(), kind="gate", group_id=show["group"],
            channel_id=show["channel"], whitelist_seq=0, outbox=3, interval=10)), qos=1)
        await eventually(lambda: value(scrape(mqtt_hub), "venue_hub_devices_online", kind="gate") == 1,
                         what="the gate's status stored")
    r = mqtt_hub.client.post("/api/v1/checkins/online", headers=mqtt_hub.admin,
                             json={"token": online["token"], "channel_id": show["channel"]})
    assert r.status_code == 200 and r.json()["reason"] == "admitted", r.text

    found = scrape(mqtt_hub)
    channel = str(show["channel"])
    assert value(found, "venue_hub_scans_total", reason="admitted", channel=channel, source="qr") == 1
    assert value(found, "venue_hub_scans_total", reason="unknown", channel=channel, source="qr") == 1
    assert value(found, "venue_hub_scans_total", reason="admitted", channel=channel, source="online") == 1
    assert value(found, "venue_hub_online_check_seconds_count") == 1
    assert 0 < value(found, "venue_hub_online_check_seconds_sum") < 0.5  # type: ignore[operator]
    assert value(found, "venue_hub_ingest_lag_seconds_count") == 1  # the re-sent batch stored nothing new
    assert 0.5 < value(found, "venue_hub_ingest_lag_seconds_sum") < 10  # type: ignore[operator]
    assert value(found, "venue_hub_ingest_store_seconds_count") == 2
    assert value(found, "venue_hub_ingest_queue") == 0
    assert value(found, "venue_hub_devices_online", kind="gate") == 1
    assert value(found, "venue_hub_device_online", device_id="gate-1", kind="gate") == 1
    assert value(found, "venue_hub_device_outbox", device_id="gate-1", kind="gate") == 3
    groups = mqtt_hub.client.get("/api/v1/checkin-groups", headers=mqtt_hub.admin).json()
    seq = next(g["seq"] for g in groups if g["id"] == show["group"])
    assert seq >= 2  # two sales, two admissions counted
    assert value(found, "venue_hub_whitelist_seq", group=str(show["group"])) == seq
    assert value(found, "venue_hub_device_whitelist_behind", device_id="gate-1", kind="gate") == seq

    # an emergency command: open, with its seq
    r = mqtt_hub.client.post("/api/v1/emergency/open", headers=mqtt_hub.user("guard", "security"),
                             json={"scope": {"all": True}, "reason": "drill"})
    assert r.status_code < 300, r.text
    found = scrape(mqtt_hub)
    assert value(found, "venue_hub_emergency_open") == 1 and value(found, "venue_hub_emergency_seq") == 1


def test_hub_metrics_token_and_a_failing_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings(None, database_url=f"sqlite:///{tmp_path}/hub.db", key_file=tmp_path / "signing.key",
                             mqtt={"port": free_port()}, admin={"username": "admin", "password": ADMIN_PASSWORD},
                             metrics={"token": "scrape-secret"})
    for hub in run_hub(settings, wait_mqtt=False):
        assert hub.client.get("/metrics").status_code == 401
        assert hub.client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
        ok = {"Authorization": "Bearer scrape-secret"}
        hub.ctx.metrics.security_event("unsigned")
        assert value(scrape(hub, **ok), "venue_hub_security_events_total", what="unsigned") == 1

        def busy() -> None:
            raise RuntimeError("database is locked")

        monkeypatch.setattr(hub.ctx.db, "read", busy)
        found = scrape(hub, **ok)  # the scrape still answers, without the database's metrics
        assert value(found, "venue_hub_metrics_db_ok") == 0
        assert value(found, "venue_hub_emergency_open") is None
        assert value(found, "venue_hub_security_events_total", what="unsigned") == 1
        assert "/metrics" not in hub.client.get("/openapi.json").json()["paths"]  # for Prometheus, not API clients


# -- a gate ---------------------------------------------------------------------------------------
async def scrape_url(url: str) -> Samples:
    async with httpx.AsyncClient(timeout=5) as client:  # never a blocking call: the loop answers the scrape
        r = await client.get(url)
    assert r.status_code == 200, r.text
    return samples(r.text)


@pytest.fixture
def scanner(tmp_path: Path) -> Iterator[PtyPair]:
    pty = PtyPair(tmp_path / "pty")
    pty.start()
    try:
        yield pty
    finally:
        pty.stop()


async def test_a_gate_serves_its_decision_latency_outbox_whitelist_and_health(
        tmp_path: Path, broker: Mosquitto, signer: Signer, keyring: Keyring, scanner: PtyPair) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    cfg = GateConfig(device_id="gate-m", group_id=GROUP, channel_id=CHANNEL, data_dir=tmp_path / "gate",
                     hub_keys_file=write_gate_keys(tmp_path / "keys.json", signer), status_interval=0.5,
                     mqtt={"port": broker.port}, scanner={"url": str(scanner.device)}, metrics={"port": port})
    stop = asyncio.Event()
    async with fake_hub(broker.port, signer, auto_ack=False) as hub:
        task = asyncio.create_task(run_gate(cfg, stop))
        try:
            await eventually(lambda: hub.syncs, what="the gate's sync request")
            found = await scrape_url(url)
            assert value(found, "venue_gate_whitelist_seq") == -1
            assert value(found, "venue_gate_whitelist_age_seconds") == float("inf")
            assert value(found, "venue_gate_decision_seconds_count") == 0
            await hub.send(TOPICS.device_whitelist("gate-m"),
                           seal_snapshot(snapshot([WhitelistEntry(7, PERF, ADULT)], seq=10), signer))
            await eventually(lambda: (s := hub.last_status("gate-m")) is not None and s.whitelist_seq == 10,
                             what="the snapshot installed")
            scanner.write_line(token(signer, 7, now=time.time()))
            await eventually(lambda: hub.events, what="the scan's event sent")
            found = await scrape_url(url)
            assert value(found, "venue_gate_decision_seconds_count") == 1
            assert 0 < value(found, "venue_gate_decision_seconds_sum") < 0.5  # type: ignore[operator]
            assert value(found, "venue_gate_scans_total", reason="admitted") == 1
            assert value(found, "venue_gate_outbox_depth") == 1  # not acked yet
            assert value(found, "venue_gate_whitelist_seq") == 10
            assert value(found, "venue_gate_whitelist_age_seconds") == 0  # connected: current
            assert value(found, "venue_gate_mqtt_connected") == 1 and value(found, "venue_gate_reconnects_total") == 0
            assert value(found, "venue_gate_part_healthy", part="scanner") == 1
            assert value(found, "venue_gate_info", device_id="gate-m", kind="gate", group=str(GROUP),
                         channel=str(CHANNEL), version=gate_version) == 1
            assert value(found, "venue_gate_loop_ok") == 1
            await hub.ack("gate-m", [hub.events[0].event_id])
            await eventually(lambda: (s := hub.last_status("gate-m")) is not None and s.outbox == 0,
                             what="the ack applied")
            assert value(await scrape_url(url), "venue_gate_outbox_depth") == 0
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)
    assert not port_open(port)  # the endpoint stops with the gate


# -- the printer and the kiosk ------------------------------------------------------------------
async def test_the_printer_counts_its_jobs(broker: Mosquitto, tmp_path: Path, signer: Signer) -> None:
    port = free_port()
    cfg = printer_config(None, device_id=PRINTER, data_dir=tmp_path / "printer", mqtt={"port": broker.port},
                         hub_keys_file=write_gate_keys(tmp_path / "keys.json", signer), status_interval=0.5,
                         poll_interval=0.3, metrics={"port": port})
    async with hub_client(broker.port) as hub, printer_agent(cfg, EscposDevice(cfg.printer)):
        await eventually(lambda: any(s.kind == "printer" and s.state == "online" for s in hub.statuses),
                         what="online status")
        good = job()
        await hub.send(sealed(good, signer))
        await eventually(lambda: hub.result(good.job_id), what="printed result")
        found = await scrape_url(f"http://127.0.0.1:{port}/metrics")
    assert value(found, "venue_printer_jobs_total", status="printed") == 1
    assert value(found, "venue_printer_queue_depth") == 0
    assert value(found, "venue_printer_part_healthy", part="printer") == 1
    assert value(found, "venue_printer_mqtt_connected") == 1
    await eventually(lambda: not port_open(port), what="the endpoint closed with the agent")


def test_the_kiosk_counts_collections_and_reports_its_parts(tmp_path: Path) -> None:
    port = free_port()
    cfg = kiosk_config(None, hub={"url": f"http://127.0.0.1:{free_port()}", "timeout_s": 0.5},
                       id_reader={"enabled": False}, metrics={"port": port})
    with HubTestClient(create_kiosk(cfg)) as client:
        assert client.post("/api/collect", json={"ticket_ids": [1]}).json()["error"] == "out_of_service"
        found = samples(httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text)
    assert value(found, "venue_kiosk_collections_total", outcome="out_of_service") == 1
    assert value(found, "venue_kiosk_part_healthy", part="printer") == 0
    assert value(found, "venue_kiosk_mqtt_connected") == 0  # heartbeat off
    assert not port_open(port)


def test_the_default_ports_are_local_and_zero_turns_the_endpoint_off() -> None:
    assert (GateConfig().metrics.port, kiosk_config(None).metrics.port,
            printer_config(None).metrics.port) == (9101, 9102, 9103)
    assert GateConfig().metrics.host == "127.0.0.1"
    assert GateConfig(metrics={"port": 0}).metrics.port == 0


# -- the alert rules ops load ---------------------------------------------------------------------
def test_the_alert_rules_load_and_name_only_metrics_that_exist() -> None:
    rules = yaml.safe_load((ROOT / "deploy" / "prometheus" / "alerts.yml").read_text())
    alerts = [r for group in rules["groups"] for r in group["rules"]]
    assert {"alert", "expr", "labels", "annotations"} <= set(alerts[0])
    names = {a["alert"] for a in alerts}
    assert {"GateDown", "GateOutboxGrowing", "GateWhitelistOld", "DevicePartUnhealthy", "SecurityEvents",
            "EmergencyOpen", "OnlineCheckSlow", "IngestLagging"} <= names
    docs = (ROOT / "docs" / "operations.md").read_text()
    for a in alerts:
        assert a["alert"] in docs, a["alert"]
        for word in a["expr"].replace("(", " ").replace(")", " ").replace("{", " ").split():
            if word.startswith("venue_"):
                name = word.split("[")[0].removesuffix("_bucket")
                assert f"`{name}`" in docs, word  # every metric an alert uses is documented
