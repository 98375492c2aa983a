"""The hub's writer lock (hub/db.py WriterLock): one writer at a time, and an online check that a handheld
waits on goes before every ordinary writer already waiting (issue 13, item 0)."""

from __future__ import annotations

import threading
import time

from hub.db import WriterLock
from tests.support.net import wait_for


def test_an_urgent_writer_goes_before_the_ordinary_writers_already_waiting() -> None:
    lock = WriterLock()
    order: list[str] = []
    release_first = threading.Event()

    def writer(name: str, urgent: bool = False, until: threading.Event | None = None) -> None:
        with lock.hold(urgent):
            order.append(name)
            if until is not None:
                until.wait(10)

    first = threading.Thread(target=writer, args=("ingest-1", False, release_first))
    first.start()
    wait_for(lambda: order == ["ingest-1"], what="the first transaction holding the writer")
    waiting = [threading.Thread(target=writer, args=(f"ingest-{i}",)) for i in (2, 3)]
    for t in waiting:
        t.start()
    time.sleep(0.05)  # both ordinary writers are queued behind the first
    check = threading.Thread(target=writer, args=("online-check", True))
    check.start()
    time.sleep(0.05)
    assert order == ["ingest-1"]  # one writer at a time: the urgent one waits for the transaction under way
    release_first.set()
    for t in (first, *waiting, check):
        t.join(10)
    assert order[:2] == ["ingest-1", "online-check"], order
    assert sorted(order[2:]) == ["ingest-2", "ingest-3"]


def test_writers_never_overlap_under_contention() -> None:
    lock = WriterLock()
    inside = [0]
    worst = [0]

    def work(urgent: bool) -> None:
        for _ in range(200):
            with lock.hold(urgent):
                inside[0] += 1
                worst[0] = max(worst[0], inside[0])
                inside[0] -= 1

    threads = [threading.Thread(target=work, args=(i % 3 == 0,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert worst[0] == 1 and inside[0] == 0
