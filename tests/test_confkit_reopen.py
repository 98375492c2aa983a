"""confkit.reopen: the one reopen-on-unplug loop of every device reader."""

from __future__ import annotations

import asyncio

import pytest

from confkit.reopen import HealthCell, Next, reopen_loop


async def test_missing_then_open_then_lost_then_stop(caplog: pytest.LogCaptureFixture) -> None:
    health = HealthCell()
    opens: list[int] = []
    seen: list[str] = []
    closed: list[int] = []

    async def open_() -> int:
        opens.append(len(opens))
        if len(opens) < 3:
            raise OSError("not plugged in")
        return len(opens)

    async def read(session: int) -> Next | None:
        seen.append(health())
        if session == 3:
            raise OSError("unplugged")
        return Next.STOP

    await asyncio.wait_for(reopen_loop("dev x", open_, read, health, retry=0.01, close=closed.append), 5)
    assert seen == ["ok", "ok"] and closed == [3, 4] and len(opens) == 4
    assert health() == "missing" and not health.connected.is_set()
    assert caplog.text.count("dev x cannot be opened (not plugged in); retrying every 0.01 s") == 1
    assert "dev x lost (unplugged)" in caplog.text


async def test_an_unexpected_failure_is_error_with_faults_else_it_propagates() -> None:
    health = HealthCell()

    async def open_() -> None:
        raise RuntimeError("driver bug")

    async def read(_: None) -> None:
        return None

    with pytest.raises(RuntimeError):
        await reopen_loop("dev y", open_, read, health, retry=0.01)
    task = asyncio.create_task(reopen_loop("dev y", open_, read, health, retry=0.01, faults=True))
    await asyncio.sleep(0.05)
    assert health() == "error" and not task.done()
    task.cancel()
    await asyncio.wait({task})
