"""Bad input at the HTTP edge (issue 9): ids beyond the database, counts out of range, dates a ticket
token cannot carry, device ids that are not ASCII, NaN and stray bytes. Each is a 4xx naming the field,
never a 500; an id in range that names nothing is a 404."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from protocol.bounds import MAX_ID, MAX_TYPE_ID
from protocol.errors import MalformedError
from protocol.topics import check_device_id
from tests.hubkit import Hub, make_settings, run_hub, sell, setup_show
from tests.support.net import free_port

API = "/api/v1"
HUGE = [2**63, 2**64, -1, 0, MAX_ID + 1]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Hub, dict[str, Any]]]:
    """One hub for the module (these requests change nothing): a show and a ticket."""
    with contextmanager(run_hub)(make_settings(tmp_path_factory.mktemp("bad-input"), free_port()),
                                 wait_mqtt=False) as hub:
        show: dict[str, Any] = setup_show(hub)
        show["ticket"] = sell(hub, show)
        show["security"] = hub.user("sec", "security")
        yield hub, show


def names(r: Any, status: int, *field: str) -> None:
    """``r`` has ``status`` and its message names ``field`` (a 422's ``loc``, or the text of a detail)."""
    assert r.status_code == status, (r.status_code, r.text)
    detail = r.json()["detail"]
    if isinstance(detail, list):
        assert any([str(p) for p in e["loc"]][-len(field):] == list(field) for e in detail), detail
    else:
        assert all(f in detail for f in field), detail


def req(hub: Hub, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
    return hub.client.request(method, API + path, json=body, headers=headers or hub.admin)


@pytest.mark.parametrize("bad", HUGE)
def test_ids_in_paths_out_of_range_are_422_naming_the_parameter(world: tuple[Hub, dict[str, Any]], bad: int) -> None:
    hub, show = world
    for method, path, body, param in [
        ("POST", f"/checkin-groups/{bad}/channels", {"name": "x", "ticket_type_ids": [show["adult"]]}, "group_id"),
        ("POST", f"/tickets/{bad}/refund", {}, "ticket_id"),
        ("POST", f"/tickets/{bad}/void", {}, "ticket_id"),
        ("GET", f"/tickets/{bad}", None, "ticket_id"),
        ("GET", f"/tickets/{bad}/token", None, "ticket_id"),
        ("GET", f"/tickets/{bad}/qr.svg", None, "ticket_id"),
        ("POST", f"/tickets/{bad}/reprint", {"printer_id": "printer-1", "reason": "jam"}, "ticket_id"),
        ("GET", f"/whitelists/{bad}/snapshot", None, "group_id"),
        ("POST", f"/cards/{bad}/revoke", {}, "card_id"),
    ]:
        names(req(hub, method, path, body), 422, "path", param)
    names(req(hub, "GET", f"/checkins?ticket_id={bad}"), 422, "query", "ticket_id")


@pytest.mark.parametrize("bad", HUGE)
def test_ids_in_bodies_out_of_range_are_422_naming_the_field(world: tuple[Hub, dict[str, Any]], bad: int) -> None:
    hub, show = world
    token = show["ticket"]["token"]
    sale = {"performance_id": show["performance"], "ticket_type_id": show["adult"], "holder_name": "Li Lei"}
    for method, path, body, field in [
        ("POST", "/checkin-groups", {"name": "x", "venue_id": bad}, ("venue_id",)),
        ("POST", "/checkin-groups", {"name": "x", "venue_id": show["venue"], "performance_ids": [bad]},
         ("performance_ids", "0")),
        ("POST", f"/checkin-groups/{show['group']}/channels", {"name": "x", "ticket_type_ids": [bad]},
         ("ticket_type_ids", "0")),
        ("POST", "/checkins/online", {"token": token, "channel_id": bad}, ("channel_id",)),
        ("POST", "/tickets", {**sale, "performance_id": bad}, ("performance_id",)),
        ("POST", "/tickets", {**sale, "ticket_type_id": bad}, ("ticket_type_id",)),
        ("POST", "/performances", {"venue_id": bad, "name": "x", "doors_open": "2030-01-01T18:00:00Z",
                                   "starts_at": "2030-01-01T19:00:00Z", "ends_at": "2030-01-01T22:00:00Z"},
         ("venue_id",)),
        ("POST", "/kiosk/collect", {"lookup_token": "x", "ticket_ids": [bad], "printer_id": "printer-1"},
         ("ticket_ids", "0")),
        ("POST", "/cards", {"uid": "04A1B2C3D4E5F6", "kind": "member", "holder_name": "x",
                            "valid_from": "2030-01-01T00:00:00Z", "valid_until": "2031-01-01T00:00:00Z",
                            "channel_ids": [bad]}, ("channel_ids", "0")),
    ]:
        names(req(hub, method, path, body), 422, "body", *field)
    for scope in ({"group_ids": [bad]}, {"channel_ids": [bad]}):
        r = req(hub, "POST", "/emergency/open", {"scope": scope, "reason": "drill"}, show["security"])
        names(r, 422, "body", "scope", next(iter(scope)), "0")


def test_ticket_type_ids_must_fit_the_token_s_16_bits(world: tuple[Hub, dict[str, Any]]) -> None:
    hub, show = world
    r = req(hub, "POST", "/tickets", {"performance_id": show["performance"], "ticket_type_id": MAX_TYPE_ID + 1,
                                      "holder_name": "Li Lei"})
    names(r, 422, "body", "ticket_type_id")
    r = req(hub, "POST", f"/checkin-groups/{show['group']}/channels",
            {"name": "x", "ticket_type_ids": [show["adult"], MAX_TYPE_ID + 1]})
    names(r, 422, "body", "ticket_type_ids", "1")


@pytest.mark.parametrize(("field", "value"), [("persons", 0), ("persons", 256), ("persons", 999),
                                              ("persons", 2**64), ("persons", "four"), ("holder_name", "x" * 201)])
def test_sale_counts_and_sizes_out_of_range_are_422(world: tuple[Hub, dict[str, Any]], field: str, value: Any) -> None:
    hub, show = world
    body = {"performance_id": show["performance"], "ticket_type_id": show["adult"], "holder_name": "Li Lei",
            field: value}
    names(req(hub, "POST", "/tickets", body), 422, "body", field)


@pytest.mark.parametrize("price", [2**63, 2**64, 2**31, -1])
def test_prices_out_of_range_are_422(world: tuple[Hub, dict[str, Any]], price: int) -> None:
    hub, _show = world
    r = req(hub, "POST", "/ticket-types", {"name": "VIP", "name_zh": "贵宾票", "price_cents": price})
    names(r, 422, "body", "price_cents")


def test_ids_in_range_that_name_nothing_are_404(world: tuple[Hub, dict[str, Any]]) -> None:
    hub, show = world
    for method, path, body in [
        ("GET", f"/tickets/{MAX_ID}", None),
        ("POST", f"/tickets/{MAX_ID}/refund", {}),
        ("POST", f"/tickets/{MAX_ID}/void", {}),
        ("POST", f"/checkin-groups/{MAX_ID}/channels", {"name": "x", "ticket_type_ids": [show["adult"]]}),
        ("POST", f"/checkin-groups/{show['group']}/channels", {"name": "x", "ticket_type_ids": [MAX_TYPE_ID]}),
        ("POST", "/checkin-groups", {"name": "x", "venue_id": MAX_ID}),
        ("POST", "/tickets", {"performance_id": MAX_ID, "ticket_type_id": show["adult"], "holder_name": "x"}),
        ("POST", "/tickets", {"performance_id": show["performance"], "ticket_type_id": MAX_TYPE_ID,
                              "holder_name": "x"}),
        ("POST", f"/cards/{MAX_ID}/revoke", {}),
        ("GET", f"/whitelists/{MAX_ID}/snapshot", None),
    ]:
        r = req(hub, method, path, body)
        assert r.status_code == 404, (method, path, r.status_code, r.text)
        assert str(MAX_ID) in r.text or str(MAX_TYPE_ID) in r.text, r.text
    r = req(hub, "POST", "/checkins/online", {"token": show["ticket"]["token"], "channel_id": MAX_ID})
    assert r.status_code == 404 and str(MAX_ID) in r.text, r.text


@pytest.mark.parametrize("year", ["2200", "1900", "1969"])
def test_performance_dates_a_token_cannot_carry_are_422(world: tuple[Hub, dict[str, Any]], year: str) -> None:
    hub, show = world
    body: dict[str, Any] = {"venue_id": show["venue"], "name": "Far away", "doors_open": f"{year}-06-01T18:00:00Z",
            "starts_at": f"{year}-06-01T19:00:00Z", "ends_at": f"{year}-06-01T22:00:00Z"}
    r = req(hub, "POST", "/performances", body)
    names(r, 422, "body", "doors_open")
    assert "ticket token" in r.text
    body = {**body, "doors_open": "2106-02-01T18:00:00Z", "starts_at": "2106-02-01T19:00:00Z",
            "ends_at": "2106-03-01T22:00:00Z"}  # past 2106-02-07: u32 seconds end there
    names(req(hub, "POST", "/performances", body), 422, "body", "ends_at")
    card = {"uid": "04A1B2C3D4E5F7", "kind": "annual", "holder_name": "x", "valid_from": "2030-01-01T00:00:00Z",
            "valid_until": f"{year}-01-01T00:00:00Z", "channel_ids": [show["channel"]]}
    names(req(hub, "POST", "/cards", card), 422, "body", "valid_until")


NON_ASCII = "设备-1"


@pytest.mark.parametrize("device_id", [NON_ASCII, "gate-1\n", "gate 1", "x" * 65, "gate/1"])
def test_bad_device_ids_in_provisioning_are_4xx(world: tuple[Hub, dict[str, Any]], device_id: str) -> None:
    hub, _show = world
    quoted = device_id.replace("\n", "%0A").replace("/", "%2F")
    routes: list[tuple[str, str, dict[str, Any] | None]] = [
        ("PUT", f"/provisioning/devices/{quoted}/config", {"config": {}}),
        ("POST", f"/provisioning/devices/{quoted}/rotate", None),
        ("POST", f"/provisioning/devices/{quoted}/revoke", {"reason": "lost"}),
        ("POST", f"/provisioning/devices/{quoted}/command", {"name": "restart"}),
    ]
    for method, path, body in routes:
        r = req(hub, method, path, body)
        if "/" in device_id:  # an encoded slash may be routed as two segments: no such route, still a 4xx
            assert 400 <= r.status_code < 500, (path, r.status_code, r.text)
            continue
        names(r, 422, "path", "device_id")
    names(req(hub, "POST", f"/provisioning/requests/{quoted}/approve", {"device_id": "gate-1", "site": "A"}),
          *((422, "path", "serial") if "/" not in device_id else (404, "")))
    r = req(hub, "POST", "/provisioning/requests/SN-1/approve", {"device_id": device_id, "site": "A"})
    names(r, 422, "body", "device_id")
    names(req(hub, "GET", f"/checkins?device_id={quoted}"), 422, "query", "device_id")
    names(req(hub, "POST", "/checkins/online", {"token": "x", "channel_id": 1, "device_id": device_id}),
          422, "body", "device_id")


def test_other_path_strings_are_checked(world: tuple[Hub, dict[str, Any]]) -> None:
    hub, _show = world
    names(req(hub, "GET", f"/provisioning/commands/{NON_ASCII}"), 422, "path", "command_id")
    names(req(hub, "GET", f"/kiosk/jobs/{NON_ASCII}"), 422, "path", "job_id")
    names(req(hub, "GET", f"/kiosk/printers/{NON_ASCII}"), 422, "path", "printer_id")
    r = req(hub, "GET", f"/provisioning/commands/{'0' * 32}")
    assert r.status_code == 404, r.text


def test_device_id_check_refuses_a_trailing_newline() -> None:
    assert check_device_id("gate-1") == "gate-1"
    for bad in ("gate-1\n", NON_ASCII, "", "x" * 65):
        with pytest.raises(MalformedError):
            check_device_id(bad)


def raw(hub: Hub, path: str, content: bytes, content_type: str = "application/json") -> Any:
    return hub.client.post(API + path, content=content, headers={**hub.admin, "content-type": content_type})


def test_nan_infinity_huge_numbers_and_stray_bytes_are_4xx(world: tuple[Hub, dict[str, Any]]) -> None:
    hub, _show = world
    names(raw(hub, "/checkin-groups", b'{"name": NaN, "venue_id": 1}'), 422, "body", "name")
    names(raw(hub, "/checkin-groups", b'{"name": "x", "venue_id": 1e400}'), 422, "body", "venue_id")
    names(raw(hub, "/checkin-groups", b'{"name": "x", "venue_id": Infinity}'), 422, "body", "venue_id")
    names(raw(hub, "/ticket-types", b'{"name": "x", "name_zh": "x", "price_cents": ' + b"9" * 400 + b"}"),
          422, "body", "price_cents")
    for content_type in ("application/json", "text/plain", "application/octet-stream"):
        r = raw(hub, "/venues", b"\xff\xfe\x00 not utf-8", content_type)
        assert 400 <= r.status_code < 500, (content_type, r.status_code, r.text)
    r = raw(hub, "/venues", b'{"name": "\xff"}')
    assert 400 <= r.status_code < 500, r.text
    r = hub.client.get(f"{API}/emergency", params={"since": "nan"}, headers=hub.admin)
    names(r, 422, "query", "since")
    r = hub.client.get(f"{API}/emergency", params={"since": "1e308"}, headers=hub.admin)
    names(r, 422, "query", "since")
    for config in (b'{"config": {"pin": NaN}}', b'{"config": {"n": 123456789012345678901234567890}}',
                   b'{"config": {"x": [Infinity]}}'):
        names(hub.client.put(f"{API}/provisioning/devices/gate-1/config", content=config,
                             headers={**hub.admin, "content-type": "application/json"}), 422, "body", "config")
    r = hub.client.post(f"{API}/provisioning/devices/gate-1/command", json={"name": "restart", "timeout_s": 1e9},
                        headers=hub.admin)
    names(r, 422, "body", "timeout_s")
    assert json.loads(r.text)  # the 422 body itself is valid JSON
