"""Live check-in (manager, security, viewer, ops, admin): a snapshot, and a server-sent events stream.

``GET /live/stream`` sends ``event: snapshot`` (the JSON of ``GET /live/snapshot``), then ``event: scans``
(new scans and their tally: admissions per minute, denials by reason, zone terms; at most every ~200 ms) and
``event: devices`` (devices whose state or outbox changed), a ``: keep-alive`` comment every 15 s, and
``event: end`` before it closes on purpose (``max_s`` reached, the hub stopping, or the client fell too far
behind: reconnect for a fresh snapshot). See docs/console.md, "Live check-in".
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from hub.api.deps import Ctx, LiveViewer, OptIdQuery
from hub.api.schemas_live import LiveSnapshot
from hub.services import live

router = APIRouter(tags=["live"])
KEEPALIVE = 15.0
MaxSeconds = Annotated[float | None, Query(gt=0, le=86400, allow_inf_nan=False,
                                           description="end the stream after this many seconds (tests, scripts); "
                                                       "absent: until the client goes away")]
_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def sse(name: str, data: Any) -> str:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'), ensure_ascii=False)}\n\n"


@router.get("/live/snapshot")
def live_snapshot(ctx: Ctx, _who: LiveViewer, performance_id: OptIdQuery = None,
                  group_id: OptIdQuery = None) -> LiveSnapshot:
    """The last 60 minutes: admissions per minute by channel and by gate, inside per zone with capacity, denials
    by reason, the last 50 scans, every device with its outbox backlog. Filters: a performance, a group."""
    return LiveSnapshot(**live.snapshot(ctx, live.Filters(performance_id, group_id)))


@router.get("/live/stream", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}},
                             "description": "server-sent events: snapshot, then scans / devices / end"}})
async def live_stream(request: Request, ctx: Ctx, _who: LiveViewer, performance_id: OptIdQuery = None,
                      group_id: OptIdQuery = None, max_s: MaxSeconds = None) -> StreamingResponse:
    """The snapshot, then what arrives after it, as server-sent events (``text/event-stream``)."""
    feed: live.LiveFeed = request.app.state.live
    filters = live.Filters(performance_id, group_id)
    sub = feed.subscribe(filters)  # before the snapshot: nothing stored meanwhile is missed
    try:
        snap = await asyncio.to_thread(live.snapshot, ctx, filters)  # an unknown filter id: 404 here
    except BaseException:
        feed.unsubscribe(sub)
        raise
    sub.as_of = snap["as_of"]
    return StreamingResponse(_events(feed, sub, snap, max_s), media_type="text/event-stream",
                             headers=_SSE_HEADERS)


async def _events(feed: live.LiveFeed, sub: live.Subscriber, snap: dict[str, Any],
                  max_s: float | None) -> AsyncIterator[str]:
    deadline = None if max_s is None else time.monotonic() + max_s
    try:
        yield sse("snapshot", snap)
        while True:
            timeout = KEEPALIVE if deadline is None else min(KEEPALIVE, deadline - time.monotonic())
            if timeout <= 0:
                yield sse("end", {"reason": "max_s"})
                return
            try:
                kind, data = await asyncio.wait_for(sub.queue.get(), timeout)
            except TimeoutError:
                if deadline is None or deadline - time.monotonic() > 0:
                    yield ": keep-alive\n\n"
                continue
            if kind == "end":
                yield sse("end", {"reason": data})
                return
            if kind == "scans":
                event = live.scans_event(sub, data, snap["zones_since"])
                if event is not None:
                    yield sse("scans", {"at": time.time(), **event})
            elif kind == "devices":
                yield sse("devices", {"at": time.time(), "devices": data})
    finally:
        feed.unsubscribe(sub)
