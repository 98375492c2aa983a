"""Helpers for check-in rule scenarios at the hub: a settable hub clock, a venue in Asia/Shanghai with a
performance at given venue times, channels with rules, online checks and gate events at given times.

The suite runs with the process on UTC (tests/conftest.py); every time here is the venue's wall clock.
Shows are placed a few days in the past so the staff's login sessions (real time) stay valid.
"""

from __future__ import annotations

import time
import uuid
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from hub.services import ingest
from protocol.envelope import open_envelope
from protocol.messages import CheckinEvent, EventBatch
from protocol.reasons import Reason
from protocol.whitelist import Delta
from tests.hubkit import Hub

VENUE_TZ = ZoneInfo("Asia/Shanghai")
DAY = datetime.now(VENUE_TZ).date() - timedelta(days=5)  # the show's venue day


class Clock:
    """The hub's clock (``ctx.clock``), set by venue wall-clock time."""

    def __init__(self, hub: Hub) -> None:
        self.now = time.time()
        hub.ctx.clock = lambda: self.now

    def at(self, hhmm: str, day: date = DAY) -> float:
        self.now = venue_time(hhmm, day)
        return self.now


def venue_time(hhmm: str, day: date = DAY) -> float:
    h, m = (int(x) for x in hhmm.split(":"))
    return datetime(day.year, day.month, day.day, h, m, tzinfo=VENUE_TZ).timestamp()


def iso_at(hhmm: str, day: date = DAY) -> str:
    h, m = (int(x) for x in hhmm.split(":"))
    return datetime(day.year, day.month, day.day, h, m, tzinfo=VENUE_TZ).isoformat()


def show_at(hub: Hub, doors: str = "19:00", starts: str = "19:30", ends: str = "22:00", *,
            end_day: date = DAY, max_entries: int = 1) -> dict[str, int]:
    """A venue in Asia/Shanghai, one performance at those venue times on DAY, adult + child, a group with
    one adult channel "Gate A"."""
    venue = hub.post("/venues", {"name": "Grand Theatre", "timezone": "Asia/Shanghai"})["id"]
    perf = hub.post("/performances", {"venue_id": venue, "name": "Swan Lake", "doors_open": iso_at(doors),
                                      "starts_at": iso_at(starts), "ends_at": iso_at(ends, end_day)})["id"]
    adult = hub.post("/ticket-types", {"name": "Adult", "name_zh": "成人票", "price_cents": 28000})["id"]
    child = hub.post("/ticket-types", {"name": "Child", "name_zh": "儿童票", "price_cents": 14000})["id"]
    group = hub.post("/checkin-groups", {"name": "Main hall", "venue_id": venue, "performance_ids": [perf]})["id"]
    channel = channel_with(hub, group, "Gate A", [adult], max_entries=max_entries)
    return {"venue": venue, "performance": perf, "adult": adult, "child": child, "group": group, "channel": channel}


def channel_with(hub: Hub, group: int, name: str, types: list[int], *, max_entries: int = 1,
                 rules: dict[str, Any] | None = None, **more: Any) -> int:
    cid: int = hub.post(f"/checkin-groups/{group}/channels", {"name": name, "ticket_type_ids": types,
                                                              "max_entries": max_entries})["id"]
    if rules is not None or more:
        set_rules(hub, cid, rules or {}, **more)
    return cid


def set_rules(hub: Hub, channel: int, rules: dict[str, Any], status: int = 200, **more: Any) -> Any:
    r = hub.client.put(f"/api/v1/channels/{channel}/rules", json={"rules": rules, **more}, headers=hub.admin)
    assert r.status_code == status, r.text
    return r.json()


def sell(hub: Hub, show: dict[str, int], type_key: str = "adult", persons: int = 1, **extra: Any) -> dict[str, Any]:
    result: dict[str, Any] = hub.post("/tickets", {"performance_id": show["performance"],
                                                   "ticket_type_id": show[type_key], "persons": persons,
                                                   "holder_name": "Li Lei", **extra})
    return result


def check(hub: Hub, ticket: dict[str, Any] | str, channel: int) -> dict[str, Any]:
    token = ticket if isinstance(ticket, str) else ticket["token"]
    r = hub.client.post("/api/v1/checkins/online", json={"token": token, "channel_id": channel},
                        headers=hub.admin)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


class Gate:
    """The events one offline gate would report, each at a given scan time."""

    def __init__(self, device_id: str, show: dict[str, int], channel: int | None = None,
                 group: int | None = None) -> None:
        self.device_id, self.show, self.seq = device_id, show, 0
        self.channel = channel or show["channel"]
        self.group = group or show["group"]

    def event(self, reason: Reason, ticket_id: int | None, at: float, persons: int = 0,
              **extra: Any) -> CheckinEvent:
        self.seq += 1
        fields: dict[str, Any] = {"performance_id": self.show["performance"], "ticket_type_id": self.show["adult"],
                                  **extra}
        return CheckinEvent(event_id=uuid.uuid4().hex, device_id=self.device_id, group_id=self.group,
                            channel_id=self.channel, seq=self.seq, reason=reason, ticket_id=ticket_id,
                            persons=persons, scanned_at=at, **fields)

    def admit(self, ticket_id: int, at: float, persons: int = 1, **extra: Any) -> CheckinEvent:
        return self.event(Reason.ADMITTED, ticket_id, at, persons, **extra)

    def annul(self, admission: CheckinEvent, persons: int, at: float) -> CheckinEvent:
        return self.event(Reason.ANNULLED, admission.ticket_id, at, persons, annuls=admission.event_id)

    def exit(self, ticket_id: int | None, at: float, persons: int = 1) -> CheckinEvent:
        return self.event(Reason.EXIT, ticket_id, at, persons, direction="exit")


def send(hub: Hub, *events: CheckinEvent) -> list[Delta]:
    """Ingest one batch as the MQTT bridge would; return the whitelist deltas it publishes."""
    out = ingest.store_batches(hub.ctx, [EventBatch(device_id=events[0].device_id, events=list(events))])
    return [Delta.from_wire(open_envelope(payload, hub.keyring)[1]) for topic, payload in out
            if topic.endswith("/whitelist")]


def journal(hub: Hub, **params: Any) -> list[dict[str, Any]]:
    r = hub.client.get("/api/v1/checkins", params=params, headers=hub.admin)
    assert r.status_code == 200, r.text
    rows: list[dict[str, Any]] = r.json()
    return rows


def ticket(hub: Hub, ticket_id: int) -> dict[str, Any]:
    body: dict[str, Any] = hub.client.get(f"/api/v1/tickets/{ticket_id}", headers=hub.admin).json()
    return body
