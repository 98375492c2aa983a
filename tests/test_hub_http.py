"""HTTP scenarios: set up a show, sell, check in online, refund; roles and audit enforced."""

from __future__ import annotations

import concurrent.futures
from pathlib import Path

from hub.config import load_settings
from protocol.envelope import open_envelope
from protocol.token import decode_token
from protocol.whitelist import Delta, Snapshot
from tests.hubkit import Hub, hub_fixture, login, sell, setup_show  # noqa: F401  (fixture)


def check(h: Hub, token: str, channel: int, headers: dict[str, str] | None = None) -> dict[str, object]:
    r = h.client.post("/api/v1/checkins/online", json={"token": token, "channel_id": channel},
                      headers=headers or h.admin)
    assert r.status_code == 200, r.text
    body: dict[str, object] = r.json()
    return body


def test_health_and_keys_need_no_login(hub: Hub) -> None:
    health = hub.client.get("/api/v1/health").json()
    assert {k: health[k] for k in ("status", "tasks")} == {
        "status": "ok", "tasks": {"mqtt-bridge": "ok", "wal-checkpoint": "ok", "live-feed": "ok", "cluster": "ok"}}
    # one hub on SQLite: it runs the elected work and has no other hub to hear from
    assert health["cluster"] | {"leader_since": None} == {"hub_id": "hub", "leader": True, "shared_database": False,
                                                          "news": "single hub", "leader_since": None}
    keys = hub.client.get("/api/v1/keys").json()["keys"]
    assert {k: v["purposes"] for k, v in keys.items()} == {"1": ["ticket"], "2": ["control"]}


def test_roles_are_enforced_and_writes_audited(hub: Hub) -> None:
    assert hub.client.get("/api/v1/users").status_code == 401
    assert hub.client.post("/api/v1/venues", json={"name": "x"}).status_code == 401
    viewer = hub.user("vic", "viewer")
    r = hub.client.post("/api/v1/venues", json={"name": "x"}, headers=viewer)
    assert r.status_code == 403 and "admin or box_office" in r.json()["detail"]
    assert hub.client.get("/api/v1/venues", headers=viewer).status_code == 200
    box = hub.user("bo", "box_office")
    show = setup_show(hub)
    ticket = sell(hub, show)
    assert hub.client.get(f"/api/v1/tickets/{ticket['id']}", headers=viewer).status_code == 403
    assert hub.client.get(f"/api/v1/tickets/{ticket['id']}", headers=box).json()["holder_name"] == "Li Lei"
    assert hub.client.get("/api/v1/audit", headers=box).status_code == 403
    actions = [a["action"] for a in hub.client.get("/api/v1/audit", headers=hub.admin).json()]
    assert {"user.create", "venue.create", "performance.create", "ticket.sell", "channel.create"} <= set(actions)
    assert not any("password" in a["detail"] for a in hub.client.get("/api/v1/audit", headers=hub.admin).json())


def test_bad_times_and_unknown_references_say_what_to_do(hub: Hub) -> None:
    venue = hub.post("/venues", {"name": "V"})["id"]
    body = {"venue_id": venue, "name": "P", "doors_open": "2026-12-01T20:00:00+08:00",
            "starts_at": "2026-12-01T19:00:00+08:00", "ends_at": "2026-12-01T22:00:00+08:00"}
    assert "doors_open <= starts_at" in hub.post("/performances", body, status=422)["detail"]
    body["doors_open"] = "2026-12-01T18:00:00"  # naive: refused
    hub.post("/performances", body, status=422)
    assert "GET /api/v1/venues" in hub.post("/checkin-groups", {"name": "G", "venue_id": 99}, status=404)["detail"]


def test_sell_check_in_online_then_refund(hub: Hub) -> None:
    show = setup_show(hub)
    ticket = sell(hub, show, persons=2)
    token = decode_token(ticket["token"], hub.keyring)
    assert (token.ticket_id, token.performance_id, token.persons) == (ticket["id"], show["performance"], 2)
    assert hub.client.get(f"/api/v1/tickets/{ticket['id']}/token", headers=hub.admin).json()["token"] == ticket["token"]
    assert hub.client.get(f"/api/v1/tickets/{ticket['id']}/qr.svg", headers=hub.admin).text.startswith("<?xml")

    first = check(hub, ticket["token"], show["channel"])
    assert first["admitted"] and first["persons"] == 2 and first["text_zh"] == "验票通过，请通行"
    assert check(hub, ticket["token"], show["channel"])["reason"] == "already_used"
    forged = ticket["token"][:-4] + ("AAAA" if not ticket["token"].endswith("AAAA") else "BBBB")
    assert check(hub, forged, show["channel"])["reason"] == "forged"
    assert check(hub, "hello world", show["channel"])["reason"] == "malformed"
    child = sell(hub, show, "child")
    assert check(hub, child["token"], show["channel"])["reason"] == "wrong_channel"

    r = hub.client.post(f"/api/v1/tickets/{child['id']}/refund", json={"reason": "ill"}, headers=hub.admin)
    assert r.status_code == 200 and r.json()["status"] == "refunded"
    again = hub.client.post(f"/api/v1/tickets/{child['id']}/refund", json={}, headers=hub.admin)
    assert again.status_code == 409 and "already refunded" in again.json()["detail"]
    assert check(hub, child["token"], show["channel"])["reason"] == "revoked"

    journal = hub.client.get(f"/api/v1/checkins?ticket_id={ticket['id']}", headers=hub.user("v", "viewer")).json()
    assert sorted(e["reason"] for e in journal) == ["admitted", "already_used"]
    assert "holder_name" not in journal[0]


def test_refund_stores_a_signed_revoked_delta_and_snapshot_has_it(hub: Hub) -> None:
    show = setup_show(hub)
    tickets = [sell(hub, show) for _ in range(3)]
    hub.post(f"/tickets/{tickets[1]['id']}/void", {"reason": "misprint"}, status=200)
    rows = hub.ctx.db.engine.connect()
    from sqlalchemy import select

    from hub.tables import whitelist_deltas
    with rows:
        last = rows.execute(select(whitelist_deltas).order_by(whitelist_deltas.c.seq.desc())).first()
    assert last is not None and last.op == "void"
    _kind, payload = open_envelope(last.envelope, hub.keyring)
    delta = Delta.from_wire(payload)
    assert delta.entry is not None and delta.entry.revoked and delta.entry.ticket_id == tickets[1]["id"]

    ops = hub.user("olga", "ops")
    r = hub.client.get(f"/api/v1/whitelists/{show['group']}/snapshot", headers=ops)
    assert r.headers["content-type"] == "application/octet-stream"
    snap = Snapshot.from_wire(open_envelope(r.content, hub.keyring)[1])
    assert snap.seq == delta.seq and len(snap.entries) == 3
    assert [e.revoked for e in sorted(snap.entries, key=lambda e: e.ticket_id)] == [False, True, False]
    assert snap.rules.channels[show["channel"]].ticket_type_ids == {show["adult"]}


def test_concurrent_online_checks_admit_exactly_once(hub: Hub) -> None:
    show = setup_show(hub)
    ticket = sell(hub, show)
    security = hub.user("sam", "security")
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: check(hub, ticket["token"], show["channel"], security)["reason"],
                                range(16)))
    assert results.count("admitted") == 1 and results.count("already_used") == 15
    assert hub.client.get(f"/api/v1/tickets/{ticket['id']}", headers=hub.admin).json()["used"] == 1


def test_config_names_the_bad_key(tmp_path: Path) -> None:
    bad = tmp_path / "hub.toml"
    bad.write_text('[mqtt]\nport = 1884\nprot = 3\n')
    try:
        load_settings(bad)
    except ValueError as exc:
        assert "mqtt.prot" in str(exc)
    else:
        raise AssertionError("a bad key must be refused")
    good = tmp_path / "ok.toml"
    good.write_text('key_id = 2\n[mqtt]\nport = 1884\n')
    assert load_settings(good).mqtt.port == 1884


def test_a_retried_online_check_returns_the_first_answer(hub: Hub) -> None:
    """A handheld whose first answer timed out asks again with the same event id: still one admission."""
    show = setup_show(hub)
    ticket = sell(hub, show)
    hub.post("/users", {"username": "hh-1-login", "password": "password-hh-1", "role": "security",
                        "device_id": "hh-1"})
    handheld = login(hub.client, "hh-1-login", "password-hh-1")
    body = {"token": ticket["token"], "channel_id": show["channel"], "device_id": "hh-1", "event_id": "e" * 32}
    first = hub.client.post("/api/v1/checkins/online", json=body, headers=handheld).json()
    retry = hub.client.post("/api/v1/checkins/online", json=body, headers=handheld).json()
    assert first == retry and first["admitted"] and first["event_id"] == "e" * 32
    assert check(hub, ticket["token"], show["channel"])["reason"] == "already_used"
    journal = hub.client.get(f"/api/v1/checkins?ticket_id={ticket['id']}", headers=hub.admin).json()
    assert sorted(e["reason"] for e in journal) == ["admitted", "already_used"]
