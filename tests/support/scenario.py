"""A show as a venue would set it up through the hub's API: used by end-to-end tests and the demo."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.support.processes import HubProcess


@dataclass
class Show:
    performance_id: int
    adult_type: int
    staff_type: int
    group_id: int
    channel_id: int


def iso(dt: datetime) -> str:
    return dt.isoformat()


def seed_show(hub: HubProcess) -> Show:
    now = datetime.now(UTC)
    venue = hub.call("POST", "/venues", json={"name": "大剧院 Grand Theatre"})
    perf = hub.call("POST", "/performances", json={
        "venue_id": venue["id"], "name": "茶馆 Teahouse", "doors_open": iso(now - timedelta(hours=1)),
        "starts_at": iso(now + timedelta(minutes=30)), "ends_at": iso(now + timedelta(hours=3))})
    adult = hub.call("POST", "/ticket-types", json={"name": "Adult", "name_zh": "成人票", "price_cents": 18000})
    staff = hub.call("POST", "/ticket-types", json={"name": "Staff", "name_zh": "工作票", "price_cents": 0})
    group = hub.call("POST", "/checkin-groups", json={
        "name": "Main hall 主厅", "venue_id": venue["id"], "performance_ids": [perf["id"]]})
    channel = hub.call("POST", f"/checkin-groups/{group['id']}/channels", json={
        "name": "Gate A A口", "ticket_type_ids": [adult["id"]]})
    return Show(perf["id"], adult["id"], staff["id"], group["id"], channel["id"])


def sell(hub: HubProcess, show: Show, ticket_type: int | None = None, persons: int = 1) -> dict[str, Any]:
    return hub.call("POST", "/tickets", json={
        "performance_id": show.performance_id, "ticket_type_id": ticket_type or show.adult_type,
        "persons": persons, "holder_name": "张三", "holder_phone": "13800000000"})
