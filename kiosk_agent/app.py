"""The kiosk agent's local HTTP side: the touchscreen page and the small API it calls.

Every ``/api`` reply is HTTP 200 with ``{"ok": true, ...}`` or ``{"ok": false, "error": code, ...}``:
Chromium logs every 4xx/5xx fetch as a console error, and a refusal here is an expected outcome that
the page turns into a screen, not a fault.

    app = create_app(load_config(Path("kiosk.toml")))
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field

from confkit.mqtt import BrokerLink, ConnectionStats
from confkit.supervise import Supervisor
from kiosk_agent import __version__
from kiosk_agent.config import KioskConfig
from kiosk_agent.enrolled import Enrolment, kiosk_device_agent
from kiosk_agent.heartbeat import KioskLink
from kiosk_agent.hub_client import HubClient
from kiosk_agent.idreader import IdReader
from kiosk_agent.metrics import KioskMetrics
from kiosk_agent.service import KioskService, Result

log = logging.getLogger(__name__)
STATIC = Path(__file__).resolve().parent / "static"


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CodeIn(_In):
    code: str = Field(pattern=r"^[A-Za-z0-9]{4,32}$")


class PhoneIn(_In):
    phone: str = Field(pattern=r"^\+?\d{5,20}$")


class PhoneLookupIn(PhoneIn):
    otp: str = Field(pattern=r"^\d{4,8}$")


class IdPollIn(_In):
    after: int | None = None


class CollectIn(_In):
    ticket_ids: list[int] = Field(min_length=1, max_length=50)


def _service(request: Request) -> KioskService:
    service: KioskService = request.app.state.service
    return service


router = APIRouter(prefix="/api", tags=["kiosk"])


@router.get("/status")
async def status(request: Request) -> Result:
    cfg: KioskConfig = request.app.state.config
    reader: IdReader | None = request.app.state.reader
    return {**_service(request).status(), "device_id": cfg.device_id, "idle_timeout_s": cfg.ui.idle_timeout_s,
            "id_reader": reader.health() if reader else "disabled"}


@router.post("/lookup/code")
async def lookup_code(body: CodeIn, request: Request) -> Result:
    return await _service(request).lookup_code(body.code.upper())


@router.post("/otp")
async def request_otp(body: PhoneIn, request: Request) -> Result:
    return await _service(request).request_otp(body.phone)


@router.post("/lookup/phone")
async def lookup_phone(body: PhoneLookupIn, request: Request) -> Result:
    return await _service(request).lookup_phone(body.phone, body.otp)


@router.post("/idcard/poll")
async def poll_id_card(body: IdPollIn, request: Request) -> Result:
    return await _service(request).poll_id_card(body.after)


@router.post("/collect")
async def collect(body: CollectIn, request: Request) -> Result:
    return await _service(request).collect(body.ticket_ids)


@router.get("/jobs/{job_id}")
async def job(job_id: str, request: Request) -> Result:
    return await _service(request).job(job_id)


@router.post("/reset")
async def reset(request: Request) -> Result:
    return _service(request).reset()


async def _invalid(_request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"ok": False, "error": "invalid"})


def create_app(cfg: KioskConfig, enrolment: Enrolment | None = None) -> FastAPI:
    """The kiosk agent; its lifespan owns the hub client, the printer poll, the ID-card reader, the broker
    session (``heartbeat``) and, for an enrolled kiosk, its provisioning agent (:mod:`kiosk_agent.enrolled`)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # a background task that dies is logged, "failed" in the heartbeat's health, and restarted with backoff
        async with (HubClient(cfg.hub.url, cfg.hub.username, cfg.hub.password, timeout=cfg.hub.timeout_s) as hub,
                    Supervisor(cfg.device_id) as tasks):
            service = KioskService(hub, cfg.printer_id)
            app.state.service = service
            app.state.tasks = tasks
            tasks.spawn("printer_poll", lambda: service.poll_printer(cfg.printer_poll_s))
            app.state.reader = None
            if cfg.id_reader.enabled:
                reader = IdReader(cfg.id_reader.url, service.on_read, baudrate=cfg.id_reader.baudrate,
                                  reopen_delay=cfg.id_reader.reopen_s)
                app.state.reader = reader
                tasks.spawn("id_reader", reader.run)
            reader_now = app.state.reader

            def health() -> dict[str, str]:
                parts = {"hub": "ok" if service.printer.network else "error",
                         "printer": "ok" if service.printer.in_service else "error"}
                if reader_now is not None:
                    parts["id_reader"] = reader_now.health()
                return {**parts, **tasks.failed()}

            stats = ConnectionStats()  # the heartbeat's broker connections, for the metrics
            link = None
            if cfg.heartbeat:
                link = KioskLink(BrokerLink.from_config(cfg.device_id, cfg.mqtt, cfg.status_interval), health)
                link.stats = stats
                if enrolment is not None:  # before the link runs: the agent's topics are subscribed on connect
                    enrolment.agent = kiosk_device_agent(
                        enrolment.identity_dir, link, enrolment.store, cfg,
                        lambda: {"health": health(), "printer_id": cfg.printer_id}, enrolment.stop)
                    enrolment.agent.start()
                tasks.spawn("heartbeat", link.run)
            metrics = KioskMetrics.start(cfg, service, health, stats)  # [metrics] port; None: 0
            log.info("kiosk %s ready (version %s) on http://%s:%d, printer %s", cfg.device_id, __version__,
                     cfg.ui.host, cfg.ui.port, cfg.printer_id)
            try:
                yield
            finally:
                if link is not None:
                    await link.stop()
                if metrics is not None:
                    await metrics.aclose()
                if enrolment is not None and enrolment.agent is not None:
                    enrolment.agent.close()

    app = FastAPI(title="Kiosk agent", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.config = cfg
    app.add_exception_handler(RequestValidationError, _invalid)
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> Response:
        return Response(status_code=204)

    return app
