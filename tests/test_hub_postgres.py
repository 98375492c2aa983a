"""The hub on a real PostgreSQL server the test starts itself: migrations up/down/up and the main paths
(sell, token, refund delta, online checks incl. concurrency, batch ingest once, emergency, kiosk, audit)."""

from __future__ import annotations

import concurrent.futures
import itertools
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, select, text

from hub.app import build_context
from hub.db import MIGRATIONS, make_engine
from hub.services import checkins, ingest
from hub.tables import checkin_events, metadata, whitelist_deltas
from protocol.envelope import open_envelope
from protocol.messages import CheckinEvent, EventBatch
from protocol.reasons import Reason
from protocol.token import decode_token
from protocol.whitelist import Delta
from tests.hubkit import Hub, make_settings, run_hub, sell, setup_show
from tests.support.net import free_port
from tests.support.postgres import PostgresServer, postgres  # noqa: F401  (fixture)
from tests.test_hub_http import check
from tests.test_hub_kiosk import buy, kiosk

_names = itertools.count(1)


def _alembic(conn: object) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = conn
    return cfg


@pytest.fixture(name="hub")
def pg_hub(tmp_path: Path, postgres: PostgresServer) -> Iterator[Hub]:  # noqa: F811
    settings = make_settings(tmp_path, free_port())
    settings.database_url = postgres.create_database(f"hub{next(_names)}")
    settings.sms.path = tmp_path / "sms.txt"
    yield from run_hub(settings, wait_mqtt=False)


def test_migrations_up_down_up(postgres: PostgresServer) -> None:  # noqa: F811
    engine = make_engine(postgres.create_database("migrations"))
    head = ScriptDirectory.from_config(_alembic(None)).get_current_head()
    try:
        for target in ("head", "base", "head"):
            with engine.begin() as conn:
                (command.upgrade if target == "head" else command.downgrade)(_alembic(conn), target)
            with engine.connect() as conn:
                tables = set(inspect(conn).get_table_names())
                version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar() \
                    if "alembic_version" in tables else None
            if target == "head":
                assert version == head and set(metadata.tables) <= tables, set(metadata.tables) - tables
            else:
                assert version is None and not tables & set(metadata.tables), tables
    finally:
        engine.dispose()


def test_main_paths_on_postgres(hub: Hub) -> None:
    assert hub.ctx.db.engine.dialect.name == "postgresql"
    show = setup_show(hub)
    ticket = sell(hub, show, persons=2)
    token = decode_token(ticket["token"], hub.keyring)
    assert (token.ticket_id, token.performance_id, token.persons) == (ticket["id"], show["performance"], 2)

    first = check(hub, ticket["token"], show["channel"])
    assert first["admitted"] and first["persons"] == 2
    assert check(hub, ticket["token"], show["channel"])["reason"] == "already_used"

    child = sell(hub, show, "child")
    r = hub.client.post(f"/api/v1/tickets/{child['id']}/refund", json={"reason": "ill"}, headers=hub.admin)
    assert r.status_code == 200 and r.json()["status"] == "refunded"
    with hub.ctx.db.read() as conn:
        last = conn.execute(select(whitelist_deltas).order_by(whitelist_deltas.c.seq.desc())).first()
    assert last is not None and last.op == "refund"
    delta = Delta.from_wire(open_envelope(last.envelope, hub.keyring)[1])
    assert delta.entry is not None and delta.entry.revoked and delta.entry.ticket_id == child["id"]
    assert check(hub, child["token"], show["channel"])["reason"] == "revoked"

    # concurrent online checks on a fresh ticket: the row lock admits exactly one
    fresh = sell(hub, show)
    security = hub.user("sam", "security")
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: check(hub, fresh["token"], show["channel"], security)["reason"],
                                range(16)))
    assert results.count("admitted") == 1 and results.count("already_used") == 15

    # an event batch from a gate, resent: stored once, counted once
    offline = sell(hub, show)
    events = [CheckinEvent(event_id=uuid.uuid4().hex, device_id="gate-1", group_id=show["group"],
                           channel_id=show["channel"], seq=1, reason=Reason.ADMITTED, ticket_id=offline["id"],
                           performance_id=show["performance"], ticket_type_id=show["adult"], persons=1,
                           scanned_at=time.time())]
    ingest.store_batches(hub.ctx, [EventBatch(device_id="gate-1", events=events)])
    ingest.store_batches(hub.ctx, [EventBatch(device_id="gate-1", events=events)])
    with hub.ctx.db.read() as conn:
        stored = conn.execute(select(checkin_events).where(checkin_events.c.device_id == "gate-1")).all()
    assert len(stored) == 1 and not stored[0].conflict
    assert hub.client.get(f"/api/v1/tickets/{offline['id']}", headers=hub.admin).json()["used"] == 1

    # emergency open / clear
    body = {"scope": {"all": True}, "reason": "fire in hall B"}
    opened = hub.post("/emergency/open", body, security)
    assert opened["seq"] == 1 and opened["open_all"]
    opened = hub.post("/emergency/open", {"scope": {"group_ids": [show["group"]]}, "reason": "drill"}, security)
    cleared = hub.post("/emergency/clear", {"scope": {"all": True}, "reason": "all clear"}, security)
    assert cleared["seq"] == 3 and not cleared["open_all"]
    assert hub.client.get("/api/v1/emergency", headers=hub.admin).json()["active"] is False

    # kiosk lookup + collect
    bought = buy(hub, show, code="AB23CD45")
    box = hub.user("kim", "kiosk")
    found = kiosk(hub, "lookup/code", {"code": "ab23 cd45"}, box)
    assert [t["ticket_id"] for t in found["tickets"]] == [bought["id"]]
    collect = {"lookup_token": found["lookup_token"], "ticket_ids": [bought["id"]], "printer_id": "printer-1"}
    jobs = kiosk(hub, "collect", collect, box)["jobs"]
    assert jobs[0]["ticket_id"] != bought["id"]  # print replaces the e-ticket: a new ticket id
    assert kiosk(hub, "collect", collect, box, 409)["code"] == "already_collected"
    assert check(hub, bought["token"], show["channel"])["reason"] == "revoked"

    actions = [a["action"] for a in hub.client.get("/api/v1/audit", headers=hub.admin).json()]
    assert {"user.create", "venue.create", "performance.create", "ticket.sell", "ticket.refund",
            "channel.create", "emergency.open", "emergency.clear"} <= set(actions), actions


def test_two_hub_processes_admit_exactly_once(hub: Hub) -> None:
    """Two hub contexts on one database (each with its own in-process write lock, as two hub processes
    would have): only the ``SELECT ... FOR UPDATE`` row lock keeps a ticket to one admission."""
    show = setup_show(hub)
    ticket = sell(hub, show)
    other = build_context(hub.settings)
    try:
        ctxs = [hub.ctx, other]
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda i: checkins.online_check(ctxs[i % 2], ticket["token"], show["channel"],
                                                                    f"hh-{i % 2}")["reason"], range(16)))
    finally:
        other.db.dispose()
    assert results.count("admitted") == 1 and results.count("already_used") == 15, results
    assert hub.client.get(f"/api/v1/tickets/{ticket['id']}", headers=hub.admin).json()["used"] == 1


def test_rules_counting_links_and_supervisors_on_postgres(hub: Hub) -> None:
    """The check-in rule scenarios of the SQLite suite, on PostgreSQL (same database, one after another)."""
    from tests import test_hub_catalog_edit as edit
    from tests import test_hub_counting as counting
    from tests import test_hub_rules as rules

    counting.test_two_offline_admissions_flag_the_later_scan_even_when_it_arrives_first(hub)
    rules.test_entries_per_day_follow_the_venue_midnight_not_the_machine_one(hub)
    rules.test_rules_per_ticket_type_narrow_the_channel(hub)
    counting.test_a_partial_annulment_lets_the_other_persons_in_later(hub)
    counting.test_groups_count_separately_unless_linked(hub)
    counting.test_a_printed_ticket_carries_the_e_tickets_usage(hub)
    counting.test_card_admissions_count_per_venue_day_and_conflicts_land_on_the_later_scan(hub)
    edit.test_supervisors_are_managed_without_showing_pins_or_card_uids(hub)
