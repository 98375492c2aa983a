"""Found by trying the rules as an operator and an attacker would: each case once went wrong.

Non-ASCII digits in dates, a venue's time zone changed under a once-a-day pass, refunds and offline
admissions judged by arrival instead of by time, the machine's own "localtime" as a venue zone, a group
holding another venue's performance, "yes" for true, and two supervisors with one PIN.
"""

from __future__ import annotations

from typing import Any

from tests.hubkit import Hub, hub_fixture  # noqa: F401  (fixture)
from tests.rulekit import Clock, Gate, check, journal, sell, send, set_rules, show_at, venue_time


def conflicts(hub: Hub, ticket_id: int) -> list[bool]:
    return [r["conflict"] for r in journal(hub, ticket_id=ticket_id) if r["reason"] == "admitted"]


def test_dates_must_be_written_in_ascii_digits(hub: Hub) -> None:
    show = show_at(hub)
    for field, value in (("date_from", "２０２６-01-01"), ("date_until", "٢٠٢٦-٠١-٠١")):
        r = hub.client.put(f"/api/v1/channels/{show['channel']}/rules", json={"rules": {field: value}},
                           headers=hub.admin)
        assert r.status_code == 422 and field in r.text, r.text
    r = hub.client.put(f"/api/v1/channels/{show['channel']}/rules", json={"rules": {"weekdays": [[1]]}},
                       headers=hub.admin)
    assert r.status_code == 422 and "weekdays" in r.text


def test_changing_the_venue_zone_does_not_let_a_once_a_day_pass_in_again(hub: Hub) -> None:
    clock = Clock(hub)
    show = show_at(hub, ends="23:30")
    set_rules(hub, show["channel"], {"max_entries": 10, "entries_per_day": 1})
    t = sell(hub, show)
    clock.at("19:10")
    assert check(hub, t, show["channel"])["admitted"]
    assert check(hub, t, show["channel"])["reason"] == "daily_limit"
    hub.client.patch(f"/api/v1/venues/{show['venue']}", json={"timezone": "Asia/Tokyo"}, headers=hub.admin)
    clock.at("19:20")  # 20:20 in Tokyo: the same day in either zone
    assert check(hub, t, show["channel"])["reason"] == "daily_limit"


def test_an_offline_admission_before_the_refund_is_not_a_conflict_and_stays_so(hub: Hub) -> None:
    clock = Clock(hub)
    show = show_at(hub)
    listed, unlisted, refunded_first = sell(hub, show), sell(hub, show), sell(hub, show)
    gate = Gate("gate-1", show)
    clock.at("19:00")
    hub.post(f"/tickets/{refunded_first['id']}/refund", {"reason": "ill"}, status=200)
    clock.at("19:30")
    send(hub, gate.admit(listed["id"], venue_time("19:05")), gate.admit(unlisted["id"], venue_time("19:06"),
                                                                         unlisted=True),
         gate.admit(refunded_first["id"], venue_time("19:07")))
    assert conflicts(hub, listed["id"]) == [False]
    assert conflicts(hub, unlisted["id"]) == [False]
    assert conflicts(hub, refunded_first["id"]) == [True]  # the gate had not heard of the refund
    clock.at("19:40")
    for t in (listed, unlisted):
        hub.post(f"/tickets/{t['id']}/refund", {"reason": "changed plans"}, status=200)  # after the scan
    lounge = hub.post("/checkin-groups", {"name": "Lounge", "venue_id": show["venue"], "performance_ids": []})
    for link in (lounge["id"], None):  # anything that replays the usage
        r = hub.client.patch(f"/api/v1/checkin-groups/{show['group']}", json={"counter_group_id": link},
                             headers=hub.admin)
        assert r.status_code == 200, r.text
    assert conflicts(hub, listed["id"]) == [False]
    assert conflicts(hub, unlisted["id"]) == [False]


def test_the_machines_own_zone_is_not_a_venue_zone(hub: Hub) -> None:
    show = show_at(hub)
    for name in ("localtime", "posixrules", "Factory", "posix/Asia/Shanghai", "Mars/Olympus"):
        r = hub.client.patch(f"/api/v1/venues/{show['venue']}", json={"timezone": name}, headers=hub.admin)
        assert r.status_code == 422 and "timezone" in r.text, (name, r.text)


def test_a_group_holds_only_its_venues_performances(hub: Hub) -> None:
    show = show_at(hub)
    other = hub.post("/venues", {"name": "Small Hall", "timezone": "Asia/Shanghai"})["id"]
    r = hub.client.post("/api/v1/checkin-groups", json={"name": "X", "venue_id": other,
                                                        "performance_ids": [show["performance"]]},
                        headers=hub.admin)
    assert r.status_code == 422 and "performance_ids" in r.text
    g = hub.post("/checkin-groups", {"name": "Y", "venue_id": other, "performance_ids": []})
    r = hub.client.patch(f"/api/v1/checkin-groups/{g['id']}", json={"performance_ids": [show["performance"]]},
                         headers=hub.admin)
    assert r.status_code == 422 and "another venue" in r.text


def test_true_and_false_are_not_yes_and_no(hub: Hub) -> None:
    show = show_at(hub)
    bad: list[tuple[str, dict[str, Any]]] = [
        (f"/api/v1/performances/{show['performance']}", {"retired": "yes"}),
        (f"/api/v1/performances/{show['performance']}", {"print_replaces_eticket": "off"}),
        (f"/api/v1/checkin-groups/{show['group']}", {"admit_unlisted": 0}),
        (f"/api/v1/channels/{show['channel']}", {"retired": 1}),
    ]
    for path, body in bad:
        r = hub.client.patch(path, json=body, headers=hub.admin)
        assert r.status_code == 422 and next(iter(body)) in r.text, (path, r.text)
    assert not hub.client.get("/api/v1/performances", headers=hub.admin).json()[0]["retired"]


def test_two_supervisors_cannot_share_a_pin(hub: Hub) -> None:
    first = hub.post("/supervisors", {"name": "Wang", "pin": "246810"})
    r = hub.client.post("/api/v1/supervisors", json={"name": "Zhao", "pin": "246810"}, headers=hub.admin)
    assert r.status_code == 409 and "pin" in r.text
    second = hub.post("/supervisors", {"name": "Zhao", "pin": "135790"})
    r = hub.client.patch(f"/api/v1/supervisors/{second['id']}", json={"pin": "246810"}, headers=hub.admin)
    assert r.status_code == 409
    hub.client.patch(f"/api/v1/supervisors/{first['id']}", json={"retired": True}, headers=hub.admin)
    r = hub.client.patch(f"/api/v1/supervisors/{second['id']}", json={"pin": "246810"}, headers=hub.admin)
    assert r.status_code == 200, r.text  # a retired supervisor's PIN is free again
