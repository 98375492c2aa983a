"""Two hubs on one PostgreSQL database (issue 13 item 1), at the level of their services: numbers come from the
database, rate limits are shared, news drops the other hub's copies, and exactly one hub is elected.

Each "hub" here is a HubContext built from the same settings (as two hub processes would be: same database, same
key files); the HTTP/MQTT processes behind a load balancer are tests/test_hub_cluster.py."""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select, text

from hub.app import build_context
from hub.cluster import Cluster
from hub.config import ClusterSettings, KioskSettings
from hub.services import catalog, emergency, otp, rulebook
from hub.services.collection import KioskDesk
from hub.services.context import SYSTEM, HubContext, Principal
from hub.sms import FileGateway
from hub.tables import emergency_commands
from tests.hubkit import make_settings
from tests.support.net import free_port
from tests.support.postgres import PostgresServer, postgres  # noqa: F401  (fixture)

_names = itertools.count(1)
FAST = ClusterSettings(lease_check=0.2, db_timeout=1.0)


@pytest.fixture(name="two_hubs")
def two_hubs_fixture(tmp_path: Path, postgres: PostgresServer) -> Iterator[tuple[HubContext, HubContext]]:  # noqa: F811
    settings = make_settings(tmp_path, free_port())
    settings.database_url = postgres.create_database(f"cluster{next(_names)}")
    a = build_context(settings)
    b = build_context(settings)  # the same database and key files, as a second hub process
    try:
        yield a, b
    finally:
        a.db.dispose()
        b.db.dispose()


def _groups(ctx: HubContext, n: int) -> list[int]:
    venue = catalog.create_venue(ctx, SYSTEM, "Grand Theatre")["id"]
    return [catalog.create_group(ctx, SYSTEM, f"Zone {i}", venue, [])["id"] for i in range(n)]


def test_two_hubs_opening_zones_at_once_number_every_command_once_and_keep_every_zone_open(
        two_hubs: tuple[HubContext, HubContext]) -> None:
    a, b = two_hubs
    groups = _groups(a, 12)
    security = Principal(None, "guard", "security")

    def open_zone(i: int) -> int:
        ctx = (a, b)[i % 2]
        return emergency.issue(ctx, security, "open", emergency.Scope(group_ids=frozenset({groups[i]})),
                               f"smoke in zone {i}").seq

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        seqs = list(pool.map(open_zone, range(len(groups))))

    assert sorted(seqs) == list(range(1, len(groups) + 1))  # no number twice, none skipped
    # each command was combined with the one before it, whichever hub issued that: all twelve stay open
    assert emergency.current(b).open_group_ids == frozenset(groups)
    with a.db.read() as conn:
        assert conn.execute(select(emergency_commands.c.seq)).scalars().all() != []


def test_the_kiosk_rate_limit_counts_lookups_on_both_hubs(two_hubs: tuple[HubContext, HubContext],
                                                          tmp_path: Path) -> None:
    a, b = two_hubs
    settings = KioskSettings(lookups_per_minute=5, user_lookups_per_minute=1000)
    desks = [KioskDesk(settings, FileGateway(tmp_path / "sms.txt")) for _ in (a, b)]
    kiosk = Principal(None, "kiosk-1", "kiosk")
    now = time.time()
    answers = []
    for i in range(7):  # alternating hubs, as a load balancer spreads one kiosk's requests
        ctx, desk = ((a, desks[0]), (b, desks[1]))[i % 2]
        with ctx.db.write() as conn:
            answers.append(desk.limit(conn, kiosk, "code:AB12", now + i * 0.01))
    assert [e is None for e in answers] == [True] * 5 + [False] * 2
    refused = answers[5]
    assert refused is not None and refused.status == 429 and 1 <= refused.extra["retry_after"] <= 60
    # another subject has its own count
    with b.db.write() as conn:
        assert desks[1].limit(conn, kiosk, "code:ZZ99", now) is None


def test_the_rate_limit_window_slides(two_hubs: tuple[HubContext, HubContext]) -> None:
    a, _b = two_hubs
    limiter = otp.RateLimiter(window=60.0)
    start = 600.0 * 60  # the start of a window
    with a.db.write() as conn:
        assert all(limiter.hit(conn, "k", 4, start + 50 + i) is None for i in range(4))
        assert limiter.hit(conn, "k", 4, start + 55) is not None  # four in the last minute
        # 30 s into the next window half of the previous one still counts: 2 + 0 < 4, so two more pass
        assert limiter.hit(conn, "k", 4, start + 90) is None
        assert limiter.hit(conn, "k", 4, start + 90) is None
        wait = limiter.hit(conn, "k", 4, start + 90)
        assert wait is not None and 0 < wait <= 30
        assert otp.prune_rate_hits(conn, start + 180) == 2  # both windows are behind the last minute


def _run_until(loop: asyncio.AbstractEventLoop, what: str, check: object, timeout: float = 10.0) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if check():  # type: ignore[operator]
            return time.monotonic() - started
        loop.run_until_complete(asyncio.sleep(0.05))
    raise AssertionError(f"timed out waiting for {what}")


def test_one_hub_is_elected_and_the_other_takes_over_within_seconds_when_it_goes(
        two_hubs: tuple[HubContext, HubContext]) -> None:
    a, b = two_hubs
    loop = asyncio.new_event_loop()
    hubs = {"hub-a": Cluster(a, "hub-a", FAST), "hub-b": Cluster(b, "hub-b", FAST)}
    changes: list[tuple[str, bool]] = []
    for name, cluster in hubs.items():
        cluster.on_leader(lambda leader, name=name: changes.append((name, leader)))
    tasks = {name: loop.create_task(c.run()) for name, c in hubs.items()}
    try:
        _run_until(loop, "an elected hub", lambda: any(c.leader for c in hubs.values()))
        loop.run_until_complete(asyncio.sleep(1.0))  # several lease checks: still exactly one
        leaders = [n for n, c in hubs.items() if c.leader]
        assert len(leaders) == 1, leaders
        first = leaders[0]
        other = next(n for n in hubs if n != first)
        assert hubs[first].status()["leader"] and not hubs[other].status()["leader"]

        # the elected hub's database session ends (as when its process is killed): the lock goes with it
        with a.db.engine.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                              "WHERE application_name = :name"), {"name": f"venue-hub {first}"})
            conn.commit()
        took = _run_until(loop, f"{other} elected", lambda: hubs[other].leader)
        assert took < 5.0
        assert not hubs[first].leader  # it noticed and stepped down
        assert (first, False) in changes and (other, True) in changes
    finally:
        for task in tasks.values():
            task.cancel()
        ended = loop.run_until_complete(asyncio.gather(*tasks.values(), return_exceptions=True))
        assert all(isinstance(e, asyncio.CancelledError) for e in ended), ended  # none died of its own error
        loop.close()


def test_news_from_one_hub_drops_the_other_hubs_copies(two_hubs: tuple[HubContext, HubContext]) -> None:
    a, b = two_hubs
    loop = asyncio.new_event_loop()
    on_a, on_b = Cluster(a, "hub-a", FAST), Cluster(b, "hub-b", FAST)
    heard: list[str] = []
    on_b.on("rules", lambda _arg: rulebook.forget(b, broadcast=False))
    on_b.on("session", heard.append)  # "" at first: drop everything, news may have been missed before listening
    tasks = [loop.create_task(on_a.run()), loop.create_task(on_b.run())]
    try:
        _run_until(loop, "both listening", lambda: on_a.status()["news"] == on_b.status()["news"] == "listening")
        b.rules_cache["topology"] = "stale"
        rulebook.forget(a)  # hub a changed the rules (its ctx.broadcast is the cluster's)
        _run_until(loop, "hub b drops its rules", lambda: "topology" not in b.rules_cache)
        a.broadcast("session", "abc123")
        _run_until(loop, "hub b hears of the log-out", lambda: heard[1:] == ["abc123"])
        assert heard[0] == ""
    finally:
        for task in tasks:
            task.cancel()
        ended = loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        assert all(isinstance(e, asyncio.CancelledError) for e in ended), ended  # none died of its own error
        loop.close()
