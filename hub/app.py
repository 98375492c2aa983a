"""The application factory: ``create_app(settings)``; its lifespan owns the database and the MQTT bridge."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from confkit.supervise import Supervisor
from hub.api import (
    routes_admin,
    routes_boxoffice,
    routes_cards,
    routes_catalog,
    routes_checkin,
    routes_console,
    routes_emergency,
    routes_exports,
    routes_kiosk,
    routes_live,
    routes_metrics,
    routes_provisioning,
    routes_reports,
    routes_rules,
)
from hub.bridge import MqttBridge
from hub.cluster import Cluster
from hub.config import Settings
from hub.db import Database, make_engine, migrate
from hub.errors import HubError, KioskError
from hub.ingest_worker import IngestWorker, shares_database
from hub.provisioning_link import ProvisioningLink
from hub.services import auth, live, rulebook, signing_keys
from hub.services.context import HubContext
from protocol.errors import MalformedError
from protocol.keys import Signer
from protocol.topics import Topics

log = logging.getLogger(__name__)
API_PREFIX = "/api/v1"


def build_context(settings: Settings) -> HubContext:
    """Open the database (migrated to head) and load or create the signing key."""
    engine = make_engine(settings.database_url)
    migrate(engine)
    ticket = Signer.load_or_create(settings.key_file, settings.key_id)  # atomic: two starts get one key
    control = Signer.load_or_create(settings.control_key_path, settings.control_kid)
    ctx = HubContext(Database(engine), control, Topics(settings.mqtt.prefix), token_ttl=settings.token_ttl_hours * 3600,
                     login=settings.login, ticket_signer=ticket)
    signing_keys.restore(ctx, signing_keys.key_paths(settings))  # after a rotation: the active keys, the list
    return ctx


async def _checkpoint_loop(ctx: HubContext, every: float = 1.0) -> None:
    """Keep the SQLite WAL short without making any request pay for the checkpoint's fsync."""
    while True:
        await asyncio.sleep(every)
        try:
            await asyncio.to_thread(ctx.db.checkpoint)
        except Exception:
            log.exception("WAL checkpoint failed; will retry")


def _join_cluster(ctx: HubContext, settings: Settings, bridge: MqttBridge, feed: live.LiveFeed) -> Cluster:
    """What this hub does on news from the other hubs on its database, and which work only the elected one does."""
    cluster = Cluster(ctx, settings.mqtt.client_id, settings.cluster)
    if cluster.shared and settings.mqtt.model_dump().get("shared_group") and settings.mqtt.session_expiry > 60:
        # Mosquitto goes on queueing a dead hub's share of a shared subscription until its session expires
        log.warning("[mqtt] session_expiry is %s s on a shared database: if several hubs share the subscriptions, "
                    "set it to a few seconds (docs/scaling.md), or the broker keeps a killed hub's share of every "
                    "device message for that long", settings.mqtt.session_expiry)
    paths = signing_keys.key_paths(settings)
    cluster.on("rules", lambda _arg: rulebook.forget(ctx, broadcast=False))
    cluster.on("user", lambda arg: auth.forget_user_sessions(ctx, int(arg)) if arg.isdigit()
               else auth.forget_session(ctx, ""))
    cluster.on("session", lambda arg: auth.forget_session(ctx, arg))
    cluster.on("keys", lambda _arg: asyncio.to_thread(signing_keys.restore, ctx, paths))
    provisioning = bridge.provisioning
    if provisioning is not None:
        cluster.on("registry", provisioning.reload_registry)
        cluster.on("online", provisioning.resend_pending)
        provisioning.elected = lambda: cluster.leader
    bridge.emergency.elected = lambda: cluster.leader
    cluster.on_leader(lambda leader: bridge.emergency.kick() if leader else None)
    feed.tell_others = cluster.stored  # scans stored here show on the live pages served by the other hubs
    cluster.on("stored", lambda arg: feed.stored_elsewhere(arg.split(",")))
    return cluster


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    ctx = await asyncio.to_thread(build_context, settings)
    await asyncio.to_thread(auth.bootstrap_admin, ctx, settings.admin.username,
                            settings.admin.password.get_secret_value())
    bridge = MqttBridge(ctx, settings.mqtt, settings.emergency, ProvisioningLink(ctx, settings), sync=settings.sync,
                        devices=settings.devices)
    ctx.publish = bridge.publish_threadsafe
    app.state.live = feed = live.LiveFeed(ctx)  # GET /api/v1/live/stream: scans and devices as they arrive
    bridge.on_stored, bridge.on_status = feed.stored, feed.devices_changed
    app.state.ctx, app.state.bridge = ctx, bridge
    bridge.max_events_per_transaction = settings.ingest.max_events_per_transaction
    worker = None
    if settings.ingest.process and shares_database(settings.database_url):  # event batches stored in a child
        app.state.ingest_worker = worker = IngestWorker(ctx, settings.database_url)
        bridge.store = worker.store
    ctx.metrics.watch(ctx, bridge.ingest_queue)  # GET /metrics: devices, whitelist seqs, emergency, queue
    app.state.cluster = cluster = _join_cluster(ctx, settings, bridge, feed)  # several hubs on PostgreSQL
    # a background task that dies (the bridge: any of its loops raised) is logged with its traceback, "failed" in
    # GET /api/v1/health and restarted with backoff, while HTTP keeps serving
    app.state.tasks = tasks = Supervisor("hub")
    try:
        async with tasks:
            tasks.spawn("mqtt-bridge", bridge.run, backoff_max=10.0)
            tasks.spawn("wal-checkpoint", lambda: _checkpoint_loop(ctx))
            tasks.spawn("live-feed", feed.run)
            tasks.spawn("cluster", cluster.run, backoff_max=5.0)
            if worker is not None:  # a child that dies is logged, "failed" in the health, started again
                tasks.spawn("ingest-worker", worker.run, backoff_max=5.0)
            yield
    finally:
        feed.close()  # open live streams end
        ctx.db.dispose()
        log.info("hub stopped")


async def _hub_error(_request: Request, exc: Exception) -> JSONResponse:
    status = exc.status if isinstance(exc, HubError) else 500
    if isinstance(exc, KioskError):  # coded and bilingual; a 401 here is a wrong SMS code, not a login
        retry = exc.extra.get("retry_after")
        return JSONResponse(exc.body(), status_code=status,
                            headers={"Retry-After": str(retry)} if retry is not None else None)
    return JSONResponse({"detail": str(exc)}, status_code=status,
                        headers={"WWW-Authenticate": "Bearer"} if status == 401 else None)


def _plain(value: Any, depth: int = 0) -> Any:
    """``value`` as something JSON can always carry: no NaN/infinity, no raw bytes, short strings."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, bytes | bytearray):
        value = bytes(value[:1000]).decode("utf-8", "replace")
    if isinstance(value, str):
        return value if len(value) <= 1000 else value[:1000] + "..."
    if depth > 20:
        return "..."
    if isinstance(value, dict):
        return {str(k)[:200]: _plain(v, depth + 1) for k, v in list(value.items())[:100]}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v, depth + 1) for v in list(value)[:100]]
    return str(value)[:1000]


async def _invalid_request(_request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's 422 body (``detail``: a list naming each bad field in ``loc``), safe for any input: the
    default handler echoes the input and fails with a 500 on NaN, infinity or bytes that are not UTF-8."""
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    return JSONResponse({"detail": [_plain(dict(e)) for e in errors]}, status_code=422)


async def _malformed(_request: Request, exc: Exception) -> JSONResponse:
    """A protocol object the request would make cannot be made (e.g. a value a ticket token cannot carry)."""
    return JSONResponse({"detail": str(exc)}, status_code=422)


def create_app(settings: Settings) -> FastAPI:
    app = FastAPI(title="Venue hub", version="0.1.0", lifespan=lifespan,
                  description="Tickets, check-in rules, online check-in and whitelists for the gates.")
    app.state.settings = settings
    app.add_exception_handler(HubError, _hub_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(MalformedError, _malformed)
    for module in (routes_admin, routes_catalog, routes_checkin, routes_cards, routes_emergency, routes_provisioning,
                   routes_kiosk, routes_rules, routes_boxoffice, routes_reports, routes_live,
                   routes_exports):
        app.include_router(module.router, prefix=API_PREFIX)
    app.state.kiosk = routes_kiosk.make_desk(settings)  # rate limits and the SMS gateway
    app.include_router(routes_console.router)  # GET /console: the staff web console
    app.include_router(routes_metrics.router)  # GET /metrics: Prometheus (hub/metrics.py)
    return app
