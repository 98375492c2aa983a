"""People (issue 10, items 6, 8 first half, 9): login throttling and lock-out, session lifetimes and
logout, equal answer times, password length, masked personal data, private files, and the online-check
device id and kiosk limits bound to the login. Each test performs the attack or accident on a real hub
(in-process, real SQLite); tests/test_hub_people_processes.py does the ones where restarts matter."""

from __future__ import annotations

import os
import stat
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from gate_agent.store import Store
from hub.services import tickets as ticket_service
from hub.tables import checkin_events, login_throttle, sessions
from printer_agent.store import JobStore
from tests.hubkit import Hub, TestClient, login, make_settings, run_hub, setup_show
from tests.support.net import free_port

PHONE = "13800000000"
ID_NUMBER = "110105194912311234"


@pytest.fixture(name="hub")
def people_hub(tmp_path: Path) -> Iterator[Hub]:
    settings = make_settings(tmp_path, free_port())
    settings.sms.path = tmp_path / "sms.txt"
    yield from run_hub(settings, wait_mqtt=False)


def attempt(client: TestClient, username: str, password: str) -> Any:
    return client.post("/api/v1/auth/login", json={"username": username, "password": password})


def add_user(hub: Hub, name: str, role: str, **extra: Any) -> str:
    password = "password-" + name
    hub.post("/users", {"username": name, "password": password, "role": role, **extra})
    return password


def audit(hub: Hub) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = hub.client.get("/api/v1/audit?limit=1000", headers=hub.admin).json()
    return rows


def later(hub: Hub, seconds: float) -> None:
    """Move the hub's clock ``seconds`` ahead of real time."""
    hub.ctx.clock = lambda: time.time() + seconds


def only_per_user(hub: Hub) -> None:
    hub.ctx.login = hub.ctx.login.model_copy(update={"address_max_failures": 10_000})


# ---- throttling and lock-out ---------------------------------------------------------------------

def test_five_wrong_passwords_lock_a_security_user_even_for_the_right_password(hub: Hub) -> None:
    only_per_user(hub)
    password = add_user(hub, "guard", "security")
    answers = [attempt(hub.client, "guard", f"not-it-{i}") for i in range(5)]
    assert [r.status_code for r in answers] == [401, 401, 401, 401, 429]  # the 5th locks
    locked = attempt(hub.client, "guard", password)  # the right password, during the lock-out
    assert locked.status_code == 429
    body = locked.json()
    assert body["code"] == "login_locked" and 290 <= body["retry_after"] <= 300
    assert locked.headers["Retry-After"] == str(body["retry_after"])
    assert "300 s" in body["detail"] or f"{body['retry_after']} s" in body["detail"]
    assert "登录已暂时锁定" in body["detail_zh"]
    # another user from the same address is not affected by guard's lock
    other = add_user(hub, "box", "box_office")
    assert attempt(hub.client, "box", other).status_code == 200
    # audited, without any password
    rows = [r for r in audit(hub) if r["action"] in ("auth.login_failed", "auth.login_locked")]
    assert sum(r["action"] == "auth.login_failed" for r in rows) == 5
    assert sum(r["action"] == "auth.login_locked" for r in rows) == 1
    assert all(r["username"] == "guard" and r["target"] == "user:guard" for r in rows)
    assert any("locked for 300 s" in r["detail"] for r in rows)
    text = repr(audit(hub))
    assert password not in text and "not-it-" not in text
    # once the wait is over the right password works, and the count starts again
    later(hub, 301)
    assert attempt(hub.client, "guard", password).status_code == 200
    with hub.ctx.db.read() as conn:
        assert conn.execute(select(login_throttle).where(login_throttle.c.key == "user:guard")).first() is None


def test_user_name_case_does_not_give_fresh_attempts(hub: Hub) -> None:
    only_per_user(hub)
    add_user(hub, "sam", "security")
    for name in ("sam", "SAM", "Sam", "sAm"):
        attempt(hub.client, name, "wrong-password")
    assert attempt(hub.client, "SaM", "wrong-password").status_code == 429
    assert attempt(hub.client, "sam", "password-sam").status_code == 429


def test_one_address_trying_many_names_is_locked_out(hub: Hub) -> None:
    hub.ctx.login = hub.ctx.login.model_copy(update={"max_failures": 10_000})
    attacker = TestClient(hub.client.app, client=("203.0.113.7", 40000))
    staff = TestClient(hub.client.app, client=("192.0.2.10", 40001))
    password = add_user(hub, "ops1", "ops")
    codes = [attempt(attacker, f"guess-{i}", "password123").status_code for i in range(5)]
    assert codes == [401, 401, 401, 401, 429]
    refused = attempt(attacker, "ops1", password)  # a real login from the locked address
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0
    assert attempt(staff, "ops1", password).status_code == 200  # another address is fine
    details = [r["detail"] for r in audit(hub) if r["action"] == "auth.login_failed"]
    assert any("from 203.0.113.7" in d and "addr 5/5" in d for d in details)


def test_a_spoofed_forwarded_for_header_does_not_reset_the_address_count(hub: Hub) -> None:
    hub.ctx.login = hub.ctx.login.model_copy(update={"max_failures": 10_000})
    attacker = TestClient(hub.client.app, client=("203.0.113.8", 40000))
    for i in range(5):
        attacker.post("/api/v1/auth/login", json={"username": f"u{i}", "password": "password123"},
                      headers={"X-Forwarded-For": f"10.9.9.{i}", "X-Real-IP": f"10.9.8.{i}"})
    assert attempt(attacker, "admin", "admin-secret-pw").status_code == 429


# ---- sessions ---------------------------------------------------------------------------------------

def test_security_sessions_are_shorter_and_expiry_is_enforced(hub: Hub) -> None:
    add_user(hub, "guard", "security")
    add_user(hub, "clerk", "box_office")
    now = time.time()
    guard = attempt(hub.client, "guard", "password-guard").json()
    clerk = attempt(hub.client, "clerk", "password-clerk").json()
    assert abs(guard["expires_at"] - (now + 8 * 3600)) < 60
    assert abs(clerk["expires_at"] - (now + 12 * 3600)) < 60
    headers = {"Authorization": f"Bearer {guard['token']}"}
    assert hub.client.get("/api/v1/emergency", headers=headers).status_code == 200  # cached from now on
    later(hub, 8 * 3600 + 5)  # past the guard's lifetime, and past the session cache
    r = hub.client.get("/api/v1/emergency", headers=headers)
    assert r.status_code == 401 and "expired" in r.json()["detail"]
    clerk_headers = {"Authorization": f"Bearer {clerk['token']}"}
    assert hub.client.get("/api/v1/devices", headers=clerk_headers).status_code == 200  # 12 h: still good


def test_logout_revokes_the_token(hub: Hub) -> None:
    add_user(hub, "guard", "security")
    headers = login(hub.client, "guard", "password-guard")
    assert hub.client.get("/api/v1/emergency", headers=headers).status_code == 200  # now in the cache too
    assert hub.client.post("/api/v1/auth/logout", headers=headers).status_code == 204
    assert hub.client.get("/api/v1/emergency", headers=headers).status_code == 401
    assert hub.client.post("/api/v1/auth/logout", headers=headers).status_code == 401
    with hub.ctx.db.read() as conn:
        left = conn.execute(select(sessions.c.token_hash).where(sessions.c.user_id != 1)).all()
    assert left == []
    assert any(r["action"] == "auth.logout" and r["username"] == "guard" for r in audit(hub))


# ---- answer time and password length ---------------------------------------------------------------

def test_unknown_user_and_wrong_password_take_the_same_time(hub: Hub) -> None:
    hub.ctx.login = hub.ctx.login.model_copy(update={"max_failures": 10_000, "address_max_failures": 10_000})
    add_user(hub, "real-user", "viewer")

    def timed(name: str) -> float:
        start = time.perf_counter()
        assert attempt(hub.client, name, "wrong-password-x").status_code == 401
        return time.perf_counter() - start

    timed("real-user"), timed("nobody-here")  # warm up
    # interleaved, so a machine busy with other work slows both sides alike
    pairs = [(timed("real-user"), timed(f"nobody-{i}")) for i in range(9)]
    known, unknown = statistics.median(k for k, _ in pairs), statistics.median(u for _, u in pairs)
    assert 0.6 < unknown / known < 1.6, (known, unknown)
    assert unknown > 0.01  # an Argon2 verification happened (without it: well under a millisecond)


def test_passwords_longer_than_256_are_refused_naming_the_field(hub: Hub) -> None:
    long = "x" * 257
    r = attempt(hub.client, "admin", long)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "password"]
    r = hub.client.post("/api/v1/users", json={"username": "u1", "password": long, "role": "viewer"},
                        headers=hub.admin)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "password"]
    assert attempt(hub.client, "admin", "x" * 256).status_code == 401  # the limit itself is fine
    from hub.errors import Invalid
    from hub.services import auth
    from hub.services.context import SYSTEM
    with pytest.raises(Invalid, match="too long"):  # the CLI's path (python -m hub create-user)
        auth.create_user(hub.ctx, SYSTEM, "u2", long, "viewer")


# ---- personal data --------------------------------------------------------------------------------

def sell_with_holder(hub: Hub, show: dict[str, int], headers: dict[str, str]) -> dict[str, Any]:
    body = {"performance_id": show["performance"], "ticket_type_id": show["adult"], "persons": 1,
            "holder_name": "张三", "holder_phone": PHONE, "holder_id_number": ID_NUMBER}
    result: dict[str, Any] = hub.post("/tickets", body, headers)
    return result


def test_only_box_office_and_admin_read_tickets_and_see_phone_and_id_numbers(hub: Hub) -> None:
    show = setup_show(hub)
    box = hub.user("clerk", "box_office")
    ticket = sell_with_holder(hub, show, box)
    assert ticket["holder_phone"] == PHONE and ticket["holder_id_number"] == ID_NUMBER
    for headers in (box, hub.admin):
        full = hub.client.get(f"/api/v1/tickets/{ticket['id']}", headers=headers).json()
        assert full["holder_phone"] == PHONE and full["holder_id_number"] == ID_NUMBER
    # the other roles cannot walk the sequential ids at all: not the ticket, its token, nor its QR
    for role in ("viewer", "security", "ops", "kiosk"):
        headers = hub.user(f"{role}-1", role)
        for path in ("", "/token", "/qr.svg"):
            for ticket_id in (ticket["id"], ticket["id"] + 1):
                r = hub.client.get(f"/api/v1/tickets/{ticket_id}{path}", headers=headers)
                assert r.status_code == 403, (role, path, r.status_code)
    # and were a role without the need ever given a ticket, it would be masked
    masked = ticket_service.for_role(ticket, "security")
    assert masked["holder_phone"] == "138****0000" and masked["holder_id_number"] == "1101**********1234"
    assert ticket_service.for_role(ticket, "box_office") == ticket


def test_the_kiosk_sees_masked_names_and_no_numbers(hub: Hub) -> None:
    show = setup_show(hub)
    sell_with_holder(hub, show, hub.admin)
    kiosk = hub.user("kiosk-1", "kiosk")
    r = hub.client.post("/api/v1/kiosk/lookup/id-card", json={"id_number": ID_NUMBER}, headers=kiosk)
    assert r.status_code == 200, r.text
    assert PHONE not in r.text and ID_NUMBER not in r.text and "张三" not in r.text
    assert r.json()["tickets"][0]["holder"] == "张*"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_hub_database_and_sms_file_are_private(hub: Hub, tmp_path: Path) -> None:
    show = setup_show(hub)
    sell_with_holder(hub, show, hub.admin)
    db = tmp_path / "hub.db"
    for part in (db, tmp_path / "hub.db-wal", tmp_path / "hub.db-shm"):
        assert part.exists() and mode(part) == 0o600, (part, oct(mode(part)))
    kiosk = hub.user("kiosk-1", "kiosk")
    assert hub.client.post("/api/v1/kiosk/otp/request", json={"phone": PHONE}, headers=kiosk).status_code == 200
    assert mode(hub.settings.sms.path) == 0o600
    hub.settings.sms.path.chmod(0o644)  # an old file left readable is tightened on the next send
    later(hub, 120)  # past the per-phone rate limit
    hub.client.app.state.kiosk.limiter = type(hub.client.app.state.kiosk.limiter)()  # type: ignore[attr-defined]
    assert hub.client.post("/api/v1/kiosk/otp/request", json={"phone": PHONE}, headers=kiosk).status_code == 200
    assert mode(hub.settings.sms.path) == 0o600


def test_an_existing_readable_hub_database_is_tightened(tmp_path: Path) -> None:
    from hub.db import make_engine
    db = tmp_path / "old.db"
    db.touch(mode=0o644)
    os.chmod(db, 0o644)
    engine = make_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        conn.exec_driver_sql("CREATE TABLE t (x)")
        conn.commit()
    engine.dispose()
    assert mode(db) == 0o600


def test_gate_and_printer_stores_are_private(tmp_path: Path) -> None:
    with Store.open(tmp_path / "gate") as store:
        store.set_meta(note="x")
        for name in ("gate.db", "gate.db-wal", "gate.db-shm"):
            assert mode(tmp_path / "gate" / name) == 0o600, name
    (tmp_path / "gate" / "gate.db").chmod(0o644)
    Store.open(tmp_path / "gate").close()  # reopened: tightened again
    assert mode(tmp_path / "gate" / "gate.db") == 0o600
    jobs = JobStore.open(tmp_path / "printer", "printer-1")
    try:
        for name in ("printer.db", "printer.db-wal", "printer.db-shm"):
            assert mode(tmp_path / "printer" / name) == 0o600, name
    finally:
        jobs.close()


# ---- the online check's device id and the kiosk limits come from the login ------------------------

def online(hub: Hub, headers: dict[str, str], token: str, channel: int, **extra: Any) -> Any:
    return hub.client.post("/api/v1/checkins/online", json={"token": token, "channel_id": channel, **extra},
                           headers=headers)


def test_a_handheld_cannot_check_in_as_another_device(hub: Hub) -> None:
    show = setup_show(hub)
    ticket = hub.post("/tickets", {"performance_id": show["performance"], "ticket_type_id": show["adult"],
                                   "holder_name": "Li Lei"})
    add_user(hub, "hh-7-login", "security", device_id="hh-7")
    handheld = login(hub.client, "hh-7-login", "password-hh-7-login")
    r = online(hub, handheld, ticket["token"], show["channel"], device_id="gate-1")  # another device
    assert r.status_code == 403 and "hh-7" in r.json()["detail"]
    with hub.ctx.db.read() as conn:
        assert conn.execute(select(checkin_events)).all() == []  # nothing journalled, nothing admitted
    event = [r for r in audit(hub) if r["action"] == "security.device_mismatch"]
    assert event and event[0]["username"] == "hh-7-login" and event[0]["target"] == "device:gate-1"
    # its own id (or none) is recorded as itself
    assert online(hub, handheld, ticket["token"], show["channel"], device_id="hh-7").json()["admitted"]
    assert online(hub, handheld, ticket["token"], show["channel"]).json()["reason"] == "already_used"
    with hub.ctx.db.read() as conn:
        assert {r.device_id for r in conn.execute(select(checkin_events))} == {"hh-7"}
    # a staff login that is no device's: 'hub-online', and it cannot pose as a device either
    assert online(hub, hub.admin, ticket["token"], show["channel"], device_id="hh-7").status_code == 403
    assert online(hub, hub.admin, ticket["token"], show["channel"]).status_code == 200
    with hub.ctx.db.read() as conn:
        assert {r.device_id for r in conn.execute(select(checkin_events))} == {"hh-7", "hub-online"}
    # one device, one login
    r = hub.client.post("/api/v1/users", json={"username": "hh-7-again", "password": "password-x1",
                                               "role": "security", "device_id": "hh-7"}, headers=hub.admin)
    assert r.status_code == 409


def test_kiosk_rate_limits_follow_the_kiosk_login_not_the_request(hub: Hub) -> None:
    desk = hub.client.app.state.kiosk  # type: ignore[attr-defined]
    desk.settings = desk.settings.model_copy(update={"user_lookups_per_minute": 3})
    k1, k2 = hub.user("kiosk-1", "kiosk"), hub.user("kiosk-2", "kiosk")
    codes = []
    for i in range(4):  # a different code (subject) and a different claimed origin each time
        r = hub.client.post("/api/v1/kiosk/lookup/code", json={"code": f"ZZZZ{i:04d}"},
                            headers={**k1, "X-Forwarded-For": f"10.0.0.{i}", "X-Kiosk-Id": f"kiosk-{i + 3}"})
        codes.append(r.status_code)
    assert codes == [404, 404, 404, 429]
    r = hub.client.post("/api/v1/kiosk/lookup/code", json={"code": "ZZZZ0009", "kiosk_id": "kiosk-2"}, headers=k1)
    assert r.status_code == 422  # nothing in the body names a kiosk
    assert hub.client.post("/api/v1/kiosk/lookup/code", json={"code": "ZZZZ0009"}, headers=k2).status_code == 404
