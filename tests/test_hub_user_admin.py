"""User admin and the audit log (issue 12, page 5): an admin changes roles, resets passwords, disables and
enables users, and reads the audit log with filters, on a real hub (its HTTP API over a real SQLite).

Every change is audited; a reset password or a disabled user ends that user's sessions at once (the hub's
session cache included); the hub always keeps one enabled admin.
"""

from __future__ import annotations

from typing import Any

from tests.hubkit import Hub, hub_fixture, login  # noqa: F401  (fixture)


def new_user(hub: Hub, name: str, role: str) -> dict[str, Any]:
    user: dict[str, Any] = hub.post("/users", {"username": name, "password": f"{name}-password-1", "role": role})
    return user


def call(hub: Hub, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
         status: int = 200) -> Any:
    r = hub.client.request(method, "/api/v1" + path, json=body, headers=headers or hub.admin)
    assert r.status_code == status, r.text
    return r.json() if r.content else None


def audit(hub: Hub, **filters: Any) -> list[dict[str, Any]]:
    r = hub.client.get("/api/v1/audit", params=filters, headers=hub.admin)
    assert r.status_code == 200, r.text
    rows: list[dict[str, Any]] = r.json()
    return rows


def admin_id(hub: Hub) -> int:
    return int(next(u["id"] for u in call(hub, "GET", "/users") if u["username"] == "admin"))


def test_an_admin_sets_a_role_and_the_users_next_request_has_it(hub: Hub) -> None:
    clerk = new_user(hub, "clerk", "viewer")
    assert (clerk["disabled"], clerk["disabled_at"]) == (False, None)
    headers = login(hub.client, "clerk", "clerk-password-1")
    call(hub, "GET", "/tickets/1", headers=headers, status=403)  # a viewer may not read a ticket (cached session)
    changed = call(hub, "PATCH", f"/users/{clerk['id']}", {"role": "box_office"})
    assert changed["role"] == "box_office"
    call(hub, "GET", "/tickets/1", headers=headers, status=404)  # at once: now it may, and there is none
    assert audit(hub, action="user.change")[0]["target"] == f"user:{clerk['id']}"
    assert "role=viewer->box_office" in audit(hub, action="user.change")[0]["detail"]


def test_a_role_change_is_refused_for_an_unknown_role_or_user_and_a_taken_device_login(hub: Hub) -> None:
    clerk = new_user(hub, "clerk", "viewer")
    call(hub, "PATCH", f"/users/{clerk['id']}", {"role": "wizard"}, status=422)
    call(hub, "PATCH", "/users/9999", {"role": "viewer"}, status=404)
    hub.post("/users", {"username": "hh1", "password": "handheld-pw-1", "role": "security", "device_id": "hh-1"})
    taken = call(hub, "PATCH", f"/users/{clerk['id']}", {"device_id": "hh-1"}, status=409)
    assert "hh-1" in taken["detail"]
    assert call(hub, "PATCH", f"/users/{clerk['id']}", {"device_id": "hh-2"})["device_id"] == "hh-2"
    assert call(hub, "PATCH", f"/users/{clerk['id']}", {"device_id": None})["device_id"] is None
    call(hub, "PATCH", f"/users/{clerk['id']}", {"role": "viewer", "extra": 1}, status=422)


def test_only_an_admin_manages_users(hub: Hub) -> None:
    clerk = new_user(hub, "clerk", "ops")
    ops = login(hub.client, "clerk", "clerk-password-1")
    call(hub, "PATCH", f"/users/{clerk['id']}", {"role": "admin"}, headers=ops, status=403)
    call(hub, "POST", f"/users/{clerk['id']}/password", {"password": "new-password-1"}, headers=ops, status=403)
    call(hub, "POST", f"/users/{admin_id(hub)}/disable", headers=ops, status=403)
    call(hub, "GET", "/audit", headers=ops, status=403)


def test_a_password_reset_ends_the_users_sessions_and_the_new_password_logs_in(hub: Hub) -> None:
    clerk = new_user(hub, "clerk", "viewer")
    old_session = login(hub.client, "clerk", "clerk-password-1")
    call(hub, "GET", "/venues", headers=old_session)  # the session is cached now
    call(hub, "POST", f"/users/{clerk['id']}/password", {"password": "short"}, status=422)
    call(hub, "POST", f"/users/{clerk['id']}/password", {"password": "a-new-password-1"})
    call(hub, "GET", "/venues", headers=old_session, status=401)
    r = hub.client.post("/api/v1/auth/login", json={"username": "clerk", "password": "clerk-password-1"})
    assert r.status_code == 401
    call(hub, "GET", "/venues", headers=login(hub.client, "clerk", "a-new-password-1"))
    entry = audit(hub, action="user.password")[0]
    assert entry["target"] == f"user:{clerk['id']}" and "1 session(s) ended" in entry["detail"]
    assert "a-new-password-1" not in str(audit(hub))


def test_a_disabled_user_is_refused_at_login_and_its_sessions_end_until_it_is_enabled(hub: Hub) -> None:
    clerk = new_user(hub, "clerk", "security")
    session = login(hub.client, "clerk", "clerk-password-1")
    call(hub, "GET", "/venues", headers=session)
    disabled = call(hub, "POST", f"/users/{clerk['id']}/disable")
    assert disabled["disabled"] is True and disabled["disabled_at"] is not None
    call(hub, "GET", "/venues", headers=session, status=401)
    r = hub.client.post("/api/v1/auth/login", json={"username": "clerk", "password": "clerk-password-1"})
    assert r.status_code == 403 and r.json()["code"] == "user_disabled"
    assert "disabled" in r.json()["detail"] and "停用" in r.json()["detail_zh"]
    wrong = hub.client.post("/api/v1/auth/login", json={"username": "clerk", "password": "not-the-password"})
    assert wrong.status_code == 401  # a wrong password does not tell that the user exists and is disabled
    assert call(hub, "POST", f"/users/{clerk['id']}/disable")["disabled"] is True  # again: harmless
    enabled = call(hub, "POST", f"/users/{clerk['id']}/enable")
    assert (enabled["disabled"], enabled["disabled_at"]) == (False, None)
    call(hub, "GET", "/venues", headers=login(hub.client, "clerk", "clerk-password-1"))
    assert [a["action"] for a in audit(hub, target=f"user:{clerk['id']}", action="user.")] == [
        "user.enable", "user.disable", "user.create"]
    assert audit(hub, action="auth.login_disabled")[0]["target"] == f"user:{clerk['id']}"
    listed = {u["username"]: u for u in call(hub, "GET", "/users")}
    assert listed["clerk"]["disabled"] is False and listed["admin"]["disabled"] is False


def test_the_last_enabled_admin_cannot_be_disabled_or_demoted(hub: Hub) -> None:
    me = admin_id(hub)
    refused = call(hub, "POST", f"/users/{me}/disable", status=409)
    assert refused["code"] == "last_admin" and "last enabled admin" in refused["detail"]
    assert "管理员" in refused["detail_zh"]
    call(hub, "PATCH", f"/users/{me}", {"role": "ops"}, status=409)
    call(hub, "PATCH", f"/users/{me}", {"role": "admin"})  # staying admin is no demotion
    second = new_user(hub, "deputy", "admin")
    call(hub, "POST", f"/users/{second['id']}/disable")
    call(hub, "PATCH", f"/users/{me}", {"role": "ops"}, status=409)  # a disabled admin does not count
    call(hub, "POST", f"/users/{second['id']}/enable")
    deputy = login(hub.client, "deputy", "deputy-password-1")
    call(hub, "PATCH", f"/users/{me}", {"role": "ops"}, headers=deputy)  # now there is another admin
    call(hub, "POST", f"/users/{second['id']}/disable", headers=deputy, status=409)  # deputy is the last one
    call(hub, "GET", "/users", headers=hub.admin, status=403)  # the demoted admin's session has its new role


def test_the_audit_log_filters_by_user_action_prefix_target_time_and_pages_back(hub: Hub) -> None:
    for n in range(5):
        new_user(hub, f"u{n}", "viewer")
    everything = audit(hub)
    assert [a["id"] for a in everything] == sorted((a["id"] for a in everything), reverse=True)
    creates = audit(hub, action="user.create")
    assert len(creates) == 6 and all(a["action"] == "user.create" for a in creates)  # the bootstrap admin too
    assert {a["username"] for a in audit(hub, username="admin", action="user.")} == {"admin"}
    assert audit(hub, action="user%") == []  # a prefix, not a pattern
    assert audit(hub, action="user_") == []
    assert audit(hub, username="nobody") == []
    target = creates[0]["target"]
    assert [a["target"] for a in audit(hub, target=target)] == [target]
    page1 = audit(hub, action="user.create", limit=2)
    page2 = audit(hub, action="user.create", limit=2, before_id=page1[-1]["id"])
    assert len(page1) == len(page2) == 2 and page2[0]["id"] < page1[-1]["id"]
    middle = creates[2]["at"]
    assert all(a["at"] >= middle for a in audit(hub, since=middle))
    assert all(a["at"] <= middle for a in audit(hub, until=middle))
    assert {"id", "at", "username", "action", "target", "detail"} <= set(everything[0])
    for bad in ({"limit": 0}, {"since": -1}, {"before_id": 0}, {"username": "x" * 65},
                {"action": "a" * 65}, {"target": "t" * 129}):
        r = hub.client.get("/api/v1/audit", params=bad, headers=hub.admin)
        assert r.status_code == 422, (bad, r.text)
