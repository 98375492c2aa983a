"""Each check-in rule at the hub's online check, on the venue's clock (Asia/Shanghai) while the hub
process runs on UTC; every denial names its rule in English and Chinese.

Scenarios set the hub's clock (``ctx.clock``) to venue wall-clock times on a day a few days back."""

from __future__ import annotations

from datetime import timedelta

from protocol.localtime import weekday
from tests.hubkit import Hub, hub_fixture  # noqa: F401  (fixture)
from tests.rulekit import DAY, Clock, Gate, channel_with, check, sell, send, set_rules, show_at, venue_time

NEXT_DAY = DAY + timedelta(days=1)


def test_entries_per_day_follow_the_venue_midnight_not_the_machine_one(hub: Hub) -> None:
    """A three-day festival pass, one entry a day: refused again at 23:55, admitted at 00:05 (16:05 UTC,
    still the same day on the machine's clock)."""
    clock = Clock(hub)
    show = show_at(hub, "09:00", "09:00", "18:00", end_day=DAY + timedelta(days=3))
    set_rules(hub, show["channel"], {"max_entries": 10, "entries_per_day": 1})
    pass_ = sell(hub, show)
    clock.at("23:50")
    assert check(hub, pass_, show["channel"])["admitted"]
    clock.at("23:55")
    refused = check(hub, pass_, show["channel"])
    assert refused["reason"] == "daily_limit"
    assert refused["next_at"] == venue_time("00:00", NEXT_DAY)
    assert refused["text_en"] == f"Already entered today. Next entry from {NEXT_DAY:%m-%d} 00:00."
    assert refused["text_zh"] == f"今日已入场，下次入场时间 {NEXT_DAY:%m-%d} 00:00"
    clock.at("00:05", NEXT_DAY)
    assert check(hub, pass_, show["channel"])["admitted"]
    assert check(hub, pass_, show["channel"])["reason"] == "daily_limit"


def test_cooldown_between_two_entries(hub: Hub) -> None:
    clock = Clock(hub)
    show = show_at(hub, "18:00", "19:30", "23:00")
    set_rules(hub, show["channel"], {"max_entries": 5, "cooldown_minutes": 30})
    t = sell(hub, show)
    clock.at("19:00")
    assert check(hub, t, show["channel"])["admitted"]
    clock.at("19:10")
    refused = check(hub, t, show["channel"])
    assert refused["reason"] == "cooldown" and refused["next_at"] == venue_time("19:30")
    assert refused["text_en"] == "Entered a moment ago. Next entry from 19:30."
    assert refused["text_zh"] == "刚刚已入场，19:30 后可再次入场"
    clock.at("19:31")
    assert check(hub, t, show["channel"])["admitted"]


def test_no_reentry_after_leaving(hub: Hub) -> None:
    clock = Clock(hub)
    show = show_at(hub)
    set_rules(hub, show["channel"], {"max_entries": 2, "reentry": False})
    t = sell(hub, show)
    clock.at("19:05")
    assert check(hub, t, show["channel"])["admitted"]
    send(hub, Gate("exit-1", show).exit(t["id"], venue_time("19:20")))  # the exit scan names the ticket
    clock.at("19:40")
    refused = check(hub, t, show["channel"])
    assert refused["reason"] == "no_reentry"
    assert (refused["text_en"], refused["text_zh"]) == ("Re-entry is not allowed after leaving.", "离场后不可再次入场")


def test_an_exit_gives_the_entry_back_and_exit_first_is_required(hub: Hub) -> None:
    clock = Clock(hub)
    show = show_at(hub)
    set_rules(hub, show["channel"], {"exit_required": True})  # one entry; re-entry after an exit allowed
    t = sell(hub, show)
    clock.at("19:05")
    assert check(hub, t, show["channel"])["admitted"]
    clock.at("19:06")
    assert check(hub, t, show["channel"])["reason"] == "already_used"
    set_rules(hub, show["channel"], {"max_entries": 3, "exit_required": True})
    still = check(hub, t, show["channel"])
    assert still["reason"] == "still_inside" and "exit first" in still["text_en"]
    send(hub, Gate("exit-1", show).exit(t["id"], venue_time("19:10")))
    clock.at("19:15")
    assert check(hub, t, show["channel"])["admitted"]


def test_admission_window_before_doors_and_after_the_end_with_tolerances(hub: Hub) -> None:
    clock = Clock(hub)
    show = show_at(hub, "19:00", "19:30", "22:00")
    set_rules(hub, show["channel"], {"before_doors_minutes": 30, "after_end_minutes": 15})
    early, late, too_late = sell(hub, show), sell(hub, show), sell(hub, show)
    clock.at("18:20")
    refused = check(hub, early, show["channel"])
    assert refused["reason"] == "too_early" and refused["next_at"] == venue_time("18:30")
    assert refused["text_en"] == "Doors are not open yet. Admission from 18:30."
    assert refused["text_zh"] == "尚未开始检票，18:30 起可入场"
    clock.at("18:35")
    assert check(hub, early, show["channel"])["admitted"]
    clock.at("22:10")
    assert check(hub, late, show["channel"])["admitted"]
    clock.at("22:20")
    assert check(hub, too_late, show["channel"])["reason"] == "too_late"


def test_latecomers_are_sent_to_the_channel_that_still_admits(hub: Hub) -> None:
    clock = Clock(hub)
    show = show_at(hub, "19:00", "19:30", "22:00")
    set_rules(hub, show["channel"], {"latecomers": False})
    gate_c = channel_with(hub, show["group"], "Gate C", [show["adult"]])
    t = sell(hub, show)
    clock.at("19:45")
    refused = check(hub, t, show["channel"])
    assert refused["reason"] == "latecomer" and refused["hint"] == ["Gate C"]
    assert refused["text_en"] == "The performance has started. Latecomers please use Gate C."
    assert refused["text_zh"] == "演出已开始，迟到观众请走 Gate C"
    assert check(hub, t, gate_c)["admitted"]


def test_weekdays_excluded_dates_and_date_ranges_are_the_venues(hub: Hub) -> None:
    clock = Clock(hub)
    show = show_at(hub, "09:00", "09:00", "18:00", end_day=DAY + timedelta(days=3))
    today = weekday(venue_time("12:00"), "Asia/Shanghai")
    t = sell(hub, show)
    clock.at("00:30")  # 16:30 UTC the day before: a machine-clock weekday would be yesterday's
    set_rules(hub, show["channel"], {"before_doors_minutes": 600, "weekdays": [today % 7 + 1]})  # tomorrow only
    refused = check(hub, t, show["channel"])
    assert refused["reason"] == "not_today" and refused["text_en"] == "Not valid today."
    set_rules(hub, show["channel"], {"before_doors_minutes": 600, "excluded_dates": [DAY.isoformat()]})
    assert check(hub, t, show["channel"])["reason"] == "not_today"
    set_rules(hub, show["channel"], {"before_doors_minutes": 600,
                                     "date_until": (DAY - timedelta(days=1)).isoformat()})
    assert check(hub, t, show["channel"])["reason"] == "too_late"
    set_rules(hub, show["channel"], {"before_doors_minutes": 600, "weekdays": [today],
                                     "date_from": DAY.isoformat()})
    assert check(hub, t, show["channel"])["admitted"]


def test_a_retired_channel_refuses_and_says_to_use_another(hub: Hub) -> None:
    clock = Clock(hub)
    show = show_at(hub)
    t = sell(hub, show)
    clock.at("19:10")
    r = hub.client.patch(f"/api/v1/channels/{show['channel']}", json={"retired": True}, headers=hub.admin)
    assert r.status_code == 200 and r.json()["retired"]
    refused = check(hub, t, show["channel"])
    assert refused["reason"] == "channel_closed" and "another entrance" in refused["text_en"]
    assert hub.client.patch(f"/api/v1/channels/{show['channel']}", json={"retired": False},
                            headers=hub.admin).status_code == 200
    assert check(hub, t, show["channel"])["admitted"]


def test_rules_per_ticket_type_narrow_the_channel(hub: Hub) -> None:
    clock = Clock(hub)
    show = show_at(hub)
    hub.client.patch(f"/api/v1/channels/{show['channel']}", json={"ticket_type_ids": [show["adult"], show["child"]]},
                     headers=hub.admin)
    body = set_rules(hub, show["channel"], {"max_entries": 3}, by_type={str(show["child"]): {"max_entries": 1}})
    assert body["rules"]["max_entries"] == 3 and body["by_type"][str(show["child"])]["max_entries"] == 1
    assert body["by_type"][str(show["adult"])]["max_entries"] == 3
    adult, child = sell(hub, show), sell(hub, show, "child")
    clock.at("19:10")
    assert [check(hub, adult, show["channel"])["reason"] for _ in range(4)] == ["admitted"] * 3 + ["already_used"]
    assert [check(hub, child, show["channel"])["reason"] for _ in range(2)] == ["admitted", "already_used"]
    got = hub.client.get(f"/api/v1/channels/{show['channel']}/rules", headers=hub.user("vic", "viewer")).json()
    assert got["configured"]["by_type"] == {str(show["child"]): {"max_entries": 1}}
    assert got["cards"]["max_entries"] == 10_000 and got["rules"]["reentry"] is True


def test_bad_rules_are_422_naming_the_field(hub: Hub) -> None:
    show = show_at(hub)
    cid = show["channel"]

    def refused(body: dict[str, object]) -> str:
        r = hub.client.put(f"/api/v1/channels/{cid}/rules", json=body, headers=hub.admin)
        assert r.status_code == 422, (body, r.text)
        return str(r.json()["detail"])

    assert "cooldown_minutes" in refused({"rules": {"cooldown_minutes": -1}})
    assert "entries_per_day" in refused({"rules": {"entries_per_day": 0}})
    assert "unknown field(s) colour" in refused({"rules": {"colour": "red"}})
    assert "weekdays" in refused({"rules": {"weekdays": [8]}})
    assert "weekdays" in refused({"rules": {"weekdays": "sat"}})
    assert "date_from" in refused({"rules": {"date_from": "2026-02-30"}})
    assert "reentry" in refused({"rules": {"reentry": "no"}})
    assert "rules.max_entries" in refused({"rules": {"max_entries": 1000}})
    assert "by_type.adult" in refused({"by_type": {"adult": {}}})
    assert f"by_type.{show['child']}" in refused({"by_type": {str(show["child"]): {"max_entries": 0}}})
    assert "cards" in refused({"cards": {"entries_per_day": 0}})
    assert "date_from must not be after date_until" in refused(
        {"rules": {"date_from": "2027-01-02", "date_until": "2027-01-01"}})
    r = hub.client.put("/api/v1/channels/999/rules", json={"rules": {}}, headers=hub.admin)
    assert r.status_code == 404 and "GET /api/v1/channels" in r.json()["detail"]
    box = hub.user("bo", "viewer")
    assert hub.client.put(f"/api/v1/channels/{cid}/rules", json={}, headers=box).status_code == 403
