"""``GET /metrics``: the hub's Prometheus metrics (:mod:`hub.metrics`), outside /api/v1 as Prometheus expects.

A plain ``def``: FastAPI runs it in the thread pool, so the scrape-time database reads never hold up
the event loop (online checks run there). ``[metrics] token`` set: a scrape must send it as a bearer token.
"""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from hub.config import Settings
from hub.errors import NotFound, Unauthenticated
from hub.services.context import HubContext

router = APIRouter()


@router.get("/metrics", include_in_schema=False)  # for Prometheus, not an API client
def metrics(request: Request) -> Response:
    settings: Settings = request.app.state.settings
    if not settings.metrics.enabled:
        raise NotFound("metrics are disabled ([metrics] enabled = false)")
    token = settings.metrics.token.get_secret_value()
    if token:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            raise Unauthenticated("send the [metrics] token: 'Authorization: Bearer <token>'")
    ctx: HubContext = request.app.state.ctx
    return Response(generate_latest(ctx.metrics.registry), media_type=CONTENT_TYPE_LATEST)
