"""Issue 11 item 5: device stores from every earlier release open with this code, and one unreadable
outbox row never blocks the rows behind it.

The stores in ``tests/fixtures/stores/`` were written by each earlier release's own code (see the README
there): gate schema 1 (d618755), 2 (81dec19), 3 (8772ebf); printer schema 1 (8772ebf).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

import gate_agent.store
import printer_agent.store
from confkit import storeschema
from confkit.storeschema import StoreTooNew, UnknownStoreLayout
from gate_agent.store import Store
from hub.services import devices
from printer_agent.store import JobStore
from protocol.keys import Keyring, Signer
from protocol.messages import CheckinEvent, EventBatch, GateStatus
from protocol.printing import PrintResult
from protocol.usage import UsageEvent
from tests.gate_helpers import NOW, eventually, fake_hub
from tests.hubkit import Hub, hub_fixture  # noqa: F401  (fixture)
from tests.support.broker import Mosquitto
from tests.test_gate_link import ME, registry, running_gate

FIXTURES = Path(__file__).parent / "fixtures" / "stores"
GATE_VERSIONS = {"gate_v1": 1, "gate_v2": 2, "gate_v3": 3}


def load(fixture: str, data_dir: Path, name: str = "gate.db") -> Path:
    """A store file made from ``tests/fixtures/stores/<fixture>.sql``."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with closing(sqlite3.connect(data_dir / name)) as conn:
        conn.executescript((FIXTURES / f"{fixture}.sql").read_text())
    return data_dir / name


def rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    with closing(sqlite3.connect(path)) as conn:
        return conn.execute(sql).fetchall()


def dump(path: Path) -> list[str]:
    with closing(sqlite3.connect(path)) as conn:
        return [*conn.iterdump(), f"user_version={storeschema.user_version(conn)}"]


@pytest.fixture
def statements(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every SQL statement the stores' migrations run (their connection traced while migrating)."""
    seen: list[str] = []
    real = storeschema.migrate

    def traced(conn: sqlite3.Connection, schema: storeschema.StoreSchema, path: Path | str) -> tuple[int, int]:
        conn.set_trace_callback(seen.append)
        try:
            return real(conn, schema, path)
        finally:
            conn.set_trace_callback(None)

    monkeypatch.setattr(gate_agent.store, "migrate", traced)
    monkeypatch.setattr(storeschema, "migrate", traced)  # open_store's: the printer's and the kiosk's stores
    return seen


def one_transaction(statements: list[str], version: int) -> None:
    transactions = [s for s in statements if s in ("BEGIN IMMEDIATE", "COMMIT", "ROLLBACK")]
    assert transactions == ["BEGIN IMMEDIATE", "COMMIT"], transactions
    assert statements.index(f"PRAGMA user_version = {version}") < statements.index("COMMIT")


# ---- the gate ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fixture", sorted(GATE_VERSIONS))
def test_a_gate_store_of_every_earlier_release_migrates_in_one_transaction_with_its_data(
        fixture: str, tmp_path: Path, statements: list[str]) -> None:
    path = load(fixture, tmp_path)
    journal = rows(path, "SELECT seq, event_id, event FROM journal ORDER BY seq")
    outbox = rows(path, "SELECT event_id FROM outbox ORDER BY seq")
    entries = rows(path, "SELECT ticket_id, performance_id, ticket_type_id, persons, revoked, used FROM entries")
    assert len(outbox) >= 4 and len(journal) == len(outbox) + 1  # the first event was acknowledged
    assert gate_agent.store.SCHEMA.detect(sqlite3.connect(path)) == GATE_VERSIONS[fixture]

    with Store.open(tmp_path) as store:
        one_transaction(statements, gate_agent.store.SCHEMA.version)
        assert rows(path, "PRAGMA user_version") == [(gate_agent.store.SCHEMA.version,)]
        # the data is intact: whitelist, rules, journal, outbox
        assert store.installed and (store.group_id, store.whitelist_seq, store.entry_count()) == (1, 10, 5)
        assert rows(path, "SELECT ticket_id, performance_id, ticket_type_id, persons, revoked, used "
                          "FROM entries") == entries
        assert store.entry(5).revoked and store.entry(4).used == 1  # type: ignore[union-attr]
        assert [(e["seq"], e["event_id"]) for e in store.journal()] == [(s, i) for s, i, _ in journal]
        assert store.next_seq() == len(journal)
        if fixture != "gate_v1":
            key = str(rows(path, "SELECT key FROM cards")[0][0])
            assert store.card(key) is not None and store.card(key).card_id == 7  # type: ignore[union-attr]
        # its outbox rows are still sent: current CheckinEvents, in a batch the current protocol accepts
        pending = store.pending(200, ME)
        assert [e.event_id for e in pending] == [i for (i,) in outbox] and store.set_aside_count() == 0
        assert all(isinstance(e, CheckinEvent) for e in pending)
        batch = EventBatch(device_id=ME, events=pending)
        assert EventBatch.model_validate_json(batch.model_dump_json(exclude_none=True)) == batch
        # the admissions still waiting for the hub count here (backfilled into usage_events for 1 and 2)
        pair = next(e for e in pending if e.ticket_id == 2 and e.admitted)
        assert UsageEvent("entry", pair.scanned_at, 2, 2, False) in store.history(2).events
        if fixture != "gate_v1":
            assert [ev.kind for ev in store.history(2).events] == ["entry", "annul"]
    statements.clear()
    Store.open(tmp_path).close()  # at the newest version: nothing to do, nothing written
    assert [s for s in statements if not s.startswith(("PRAGMA", "SELECT"))] == ["BEGIN IMMEDIATE", "COMMIT"]


def test_a_failing_migration_step_leaves_the_store_at_its_old_version(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = load("gate_v1", tmp_path)
    before = dump(path)

    def fail(conn: sqlite3.Connection) -> None:
        raise sqlite3.OperationalError("disk I/O error (injected)")

    schema = gate_agent.store.SCHEMA
    broken = dataclasses.replace(schema, steps=(*schema.steps[:-1], (*schema.steps[-1], fail)))
    monkeypatch.setattr(gate_agent.store, "SCHEMA", broken)
    with pytest.raises(sqlite3.OperationalError, match="injected"):
        Store.open(tmp_path)
    assert dump(path) == before  # the steps before the failure (cards, usage_events...) were rolled back
    monkeypatch.setattr(gate_agent.store, "SCHEMA", schema)
    with Store.open(tmp_path) as store:
        assert len(store.pending(200, ME)) == 4


def test_a_store_from_a_newer_release_is_refused_unchanged(tmp_path: Path) -> None:
    with Store.open(tmp_path) as store:
        store.set_meta(seq="3")
    with closing(sqlite3.connect(tmp_path / "gate.db")) as conn:
        conn.execute(f"PRAGMA user_version = {gate_agent.store.SCHEMA.version + 1}")
    before = dump(tmp_path / "gate.db")
    with pytest.raises(StoreTooNew, match=r"newer release\. Upgrade the software") as caught:
        Store.open(tmp_path)
    assert (caught.value.found, caught.value.known) == (gate_agent.store.SCHEMA.version + 1,
                                                        gate_agent.store.SCHEMA.version)
    assert dump(tmp_path / "gate.db") == before
    # a file with tables no release made is refused too
    with closing(sqlite3.connect(tmp_path / "other.db")) as conn:
        conn.execute("CREATE TABLE something (x)")
    with closing(sqlite3.connect(tmp_path / "other.db", isolation_level=None)) as conn, \
            pytest.raises(UnknownStoreLayout):
        storeschema.migrate(conn, gate_agent.store.SCHEMA, "other.db")


def _event(seq: int, **change: object) -> str:
    body = {"event_id": f"{seq:032x}", "device_id": ME, "group_id": 1, "channel_id": 1, "seq": seq,
            "reason": "admitted", "ticket_id": seq, "persons": 1, "scanned_at": NOW + seq, **change}
    return json.dumps(body)


TOKEN = "QR1.secret-ticket-token-text"
UNREADABLE = {  # seq -> (row, why): a newer release's field, garbage, another device id
    101: (_event(101, wristband=7), "wristband"),
    102: ('{"event_id": "' + TOKEN, "not JSON"),
    103: (_event(103, device_id="gate-0"), "queued under device gate-0"),
}


def add_rows(path: Path, bodies: dict[int, str]) -> None:
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.executemany("INSERT INTO outbox VALUES (?, ?, ?)", [(s, f"{s:032x}", b) for s, b in bodies.items()])


def test_unreadable_outbox_rows_are_set_aside_once_and_never_block_the_rows_behind(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    Store.open(tmp_path).close()
    add_rows(tmp_path / "gate.db", {100: _event(100), **{s: b for s, (b, _) in UNREADABLE.items()},
                                    104: _event(104), 105: _event(105)})
    with Store.open(tmp_path) as store, caplog.at_level(logging.ERROR, "gate_agent.store"):
        assert [e.seq for e in store.pending(2, ME)] == [100, 104]  # the limit counts sendable rows
        assert store.set_aside_count() == 3 and store.outbox_count() == 3
        assert [e.seq for e in store.pending(200, ME)] == [100, 104, 105]
        aside = store.set_aside_rows()
        assert [r["seq"] for r in aside] == [101, 102, 103]
        for row in aside:
            assert UNREADABLE[row["seq"]][1] in row["reason"], row
        errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 3, errors  # once each
        for seq, message in zip((101, 102, 103), errors, strict=True):
            assert f"{seq:032x}" in message and "set aside" in message
        assert not any(TOKEN.split(".")[1] in r.getMessage() + str(r.args) for r in caplog.records)
        assert TOKEN.split(".")[1] not in json.dumps(aside)
        store.acknowledge([f"{s:032x}" for s in (100, 104, 105)])
        assert store.outbox_count() == 0 and store.set_aside_count() == 3  # kept, never deleted


def test_a_set_aside_row_readable_again_is_sent_after_the_next_start(tmp_path: Path) -> None:
    Store.open(tmp_path).close()
    with closing(sqlite3.connect(tmp_path / "gate.db")) as conn, conn:  # set aside by an older release
        conn.execute("INSERT INTO set_aside VALUES (?, 7, ?, 'unreadable by this release: x', 0)",
                     (f"{7:032x}", _event(7)))
        conn.execute("INSERT INTO set_aside VALUES (?, 8, ?, 'queued under device gate-0', 0)",
                     (f"{8:032x}", _event(8, device_id="gate-0")))
    with Store.open(tmp_path) as store:
        assert store.set_aside_count() == 2
        assert [e.seq for e in store.pending(200, ME)] == [7]
        assert [r["seq"] for r in store.set_aside_rows()] == [8]


def test_stored_rules_this_release_cannot_read_mean_not_installed_not_a_gate_that_will_not_start(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    load("gate_v3", tmp_path)
    with closing(sqlite3.connect(tmp_path / "gate.db")) as conn, conn:
        conn.execute("""UPDATE meta SET value = '{"group_id": 1, "channels": "from a newer release"}'
                        WHERE key = 'rules'""")
    with caplog.at_level(logging.ERROR, "gate_agent.store"), Store.open(tmp_path) as store:
        assert not store.installed and store.entry_count() == 5  # the link asks for a snapshot (have_seq -1)
        assert len(store.pending(200, ME)) == 9
    assert any("rules unreadable" in r.getMessage() for r in caplog.records)


async def test_a_gate_on_each_migrated_store_sends_the_old_rows_and_reports_the_set_aside_ones(
        tmp_path: Path, broker: Mosquitto, signer: Signer, keyring: Keyring) -> None:
    for fixture in sorted(GATE_VERSIONS):
        data = tmp_path / fixture
        path = load(fixture, data / "gate")
        old = [i for (i,) in rows(path, "SELECT event_id FROM outbox ORDER BY seq")]
        add_rows(path, {s: b for s, (b, _) in UNREADABLE.items()} | {104: _event(104)})
        async with fake_hub(broker.port, signer, devices=registry(data)) as hub, \
                running_gate(data, broker.port, keyring) as gate:
            await eventually(lambda: gate.store.outbox_count() == 0, timeout=10, what=f"{fixture} outbox drained")
            assert [e.event_id for e in hub.events] == [*old, f"{104:032x}"]
            assert hub.refused == []  # every batch verified, none naming another device
            await eventually(lambda: (s := hub.last_status(ME)) is not None and s.set_aside == 3, what="set_aside")
            status = hub.last_status(ME)
            assert status is not None and status.health == {"outbox": "error"}
            assert gate.store.set_aside_count() == 3


def test_the_hub_records_the_set_aside_count_and_lists_it(hub: Hub) -> None:
    def status(**extra: object) -> GateStatus:
        return GateStatus(device_id="gate-7", state="online", at=NOW, **extra)

    def listed() -> dict[str, object]:
        found = hub.client.get("/api/v1/devices", headers=hub.admin).json()
        return next(d for d in found if d["device_id"] == "gate-7")

    devices.record_status(hub.ctx, status(set_aside=3, health={"outbox": "error"}))
    assert (listed()["set_aside"], listed()["health"]) == (3, {"outbox": "error"})
    devices.record_status(hub.ctx, GateStatus(device_id="gate-7", state="offline", at=NOW))
    assert listed()["set_aside"] == 3  # a Last Will keeps what the device said
    devices.record_status(hub.ctx, status())
    assert listed()["set_aside"] is None


# ---- the printer -----------------------------------------------------------------------------------------


def test_the_printer_store_of_the_earlier_release_migrates_and_keeps_its_queue(
        tmp_path: Path, statements: list[str]) -> None:
    path = load("printer_v1", tmp_path, "printer.db")
    jobs = rows(path, "SELECT job_id, state, job, data, status, reason, sent FROM jobs ORDER BY rowid")
    with JobStore.open(tmp_path, "printer-1") as store:
        one_transaction(statements, printer_agent.store.SCHEMA.version)
        assert rows(path, "SELECT job_id, state, job, data, status, reason, sent FROM jobs ORDER BY rowid") == jobs
        interrupted = store.recover(NOW + 20)
        assert interrupted == [jobs[2][0]]
        queued = store.next_queued()
        assert queued is not None and queued.job.job_id == jobs[3][0] and queued.data == jobs[3][3]
        results = store.unsent_results()
        assert [(r.job_id, r.status, r.reason) for r in results] == [
            (jobs[1][0], "failed", "paper_out"), (jobs[5][0], "refused", "expired"),
            (jobs[2][0], "failed", "interrupted")]
        assert all(PrintResult.model_validate_json(r.model_dump_json()) == r for r in results)
        assert store.queue_depth() == 2 and store.set_aside_count() == 0


def test_unreadable_print_jobs_and_results_are_set_aside_and_do_not_block(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = load("printer_v1", tmp_path, "printer.db")
    good = rows(path, "SELECT job_id FROM jobs WHERE state = 'queued' ORDER BY received_at")
    with closing(sqlite3.connect(path)) as conn, conn:  # before the queued ones: a newer release's rows
        conn.execute("INSERT INTO jobs (job_id, state, job, data, received_at) VALUES (?, 'queued', ?, ?, 1)",
                     (f"{1:032x}", json.dumps({"job_id": f"{1:032x}", "token": TOKEN, "copies": 2}), b"x"))
        conn.execute("INSERT INTO jobs (job_id, state, job, data, received_at, status, finished_at) "
                     "VALUES (?, 'done', '{}', NULL, 1, 'cancelled', 2)", (f"{2:032x}",))
    with JobStore.open(tmp_path, "printer-1") as store, caplog.at_level(logging.ERROR, "printer_agent.store"):
        queued = store.next_queued()
        assert queued is not None and queued.job.job_id == good[0][0]
        results = store.unsent_results()
        assert (f"{1:032x}", "failed", "unreadable") in [(r.job_id, r.status, r.reason) for r in results]
        assert f"{2:032x}" not in [r.job_id for r in results]
        assert store.set_aside_count() == 2
        assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 2
        assert not any(TOKEN.split(".")[1] in r.getMessage() for r in caplog.records)
        store.unsent_results()
        assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 2  # once each
