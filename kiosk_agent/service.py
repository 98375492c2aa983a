"""What the kiosk knows and does, apart from HTTP: the current lookup, the ID-card reads, the printer.

One patron uses a kiosk at a time, so the agent keeps the hub's ``lookup_token`` of the current lookup
itself (the browser gets only the ticket list) and forgets it on :meth:`KioskService.reset`.
Every outcome is a plain dict for the UI: ``{"ok": True, ...}`` or ``{"ok": False, "error": code, ...}``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from kiosk_agent.hub_client import HubClient, HubFailure
from kiosk_agent.idcard import BadRead, IdCard

log = logging.getLogger(__name__)

Result = dict[str, Any]
_TICKET_KEYS = ("ticket_id", "performance_name", "starts_at", "ticket_type", "persons", "holder", "status")


@dataclass
class PrinterState:
    """The last thing the hub said about this kiosk's printer, and whether the hub answered at all."""

    network: bool = True
    in_service: bool = False
    reason: str | None = "starting"
    checked_at: float = 0.0
    condition: dict[str, Any] = field(default_factory=dict)


def _failure(exc: HubFailure) -> Result:
    return {"ok": False, "error": exc.code, **exc.details}


class KioskService:
    """The kiosk's operations against the hub; ``printer_id`` is the printer attached to this kiosk."""

    def __init__(self, hub: HubClient, printer_id: str) -> None:
        self.hub = hub
        self.printer_id = printer_id
        self.printer = PrinterState()
        self._lookup_token: str | None = None
        self._read_seq = 0
        self._last_read: IdCard | BadRead | None = None
        # (what, outcome) -> how many: ("lookup" | "collect", "ok" or the error code); "tickets": tickets
        # sent to the printer. Read by the kiosk's metrics (kiosk_agent.metrics).
        self.counts: Counter[tuple[str, str]] = Counter()

    # ---- the printer and the hub's reachability -------------------------------------------------
    async def check_printer(self) -> None:
        try:
            status = await self.hub.printer(self.printer_id)
        except HubFailure as exc:
            if exc.code == "network":
                self.printer.network = False
            else:
                self.printer = PrinterState(network=True, in_service=False, reason=exc.code, checked_at=time.time())
            return
        in_service = bool(status.get("in_service"))
        reason = status.get("reason")
        if in_service != self.printer.in_service or not self.printer.network:
            log.info("printer %s %s (%s)", self.printer_id, "in service" if in_service else "NOT in service", reason)
        self.printer = PrinterState(network=True, in_service=in_service, reason=reason, checked_at=time.time(),
                                    condition={k: v for k, v in status.items() if k not in ("in_service", "reason")})

    async def poll_printer(self, interval: float) -> None:
        while True:
            try:
                await self.check_printer()
            except Exception:
                log.exception("printer status check failed")
            await asyncio.sleep(interval)

    def status(self) -> Result:
        return {"ok": True, "network": self.printer.network, "in_service": self.printer.in_service,
                "reason": self.printer.reason}

    async def _call(self, coro: Any) -> Result:
        try:
            result: Result = await coro
        except HubFailure as exc:
            if exc.code == "network":
                self.printer.network = False
            return _failure(exc)
        self.printer.network = True
        return result

    # ---- lookups ---------------------------------------------------------------------------------
    async def _lookup(self, coro: Any) -> Result:
        self._lookup_token = None
        result = await self._call(coro)
        self.counts["lookup", "ok" if result.get("ok", True) else str(result.get("error"))] += 1
        if not result.get("ok", True):
            return result
        self._lookup_token = result.get("lookup_token")
        tickets = [{k: t.get(k) for k in _TICKET_KEYS} for t in result.get("tickets", [])]
        return {"ok": True, "tickets": tickets}

    async def lookup_code(self, code: str) -> Result:
        return await self._lookup(self.hub.lookup_code(code))

    async def lookup_phone(self, phone: str, otp: str) -> Result:
        return await self._lookup(self.hub.lookup_phone(phone, otp))

    async def request_otp(self, phone: str) -> Result:
        result = await self._call(self.hub.request_otp(phone))
        return result if result.get("ok") is False else {"ok": True}

    # ---- the ID-card reader ----------------------------------------------------------------------
    async def on_read(self, read: IdCard | BadRead) -> None:
        self._read_seq += 1
        self._last_read = read

    async def poll_id_card(self, after: int | None) -> Result:
        """``after=None``: arm, giving the current read number; else the outcome of a newer read, if any."""
        if after is None or self._read_seq <= after or self._last_read is None:
            return {"ok": True, "seq": self._read_seq, "event": None}
        seq, read = self._read_seq, self._last_read
        if isinstance(read, BadRead):
            return {"ok": False, "seq": seq, "error": "bad_read"}
        result = await self._lookup(self.hub.lookup_id_card(read.id_number))
        return {**result, "seq": seq, "event": "card"}

    # ---- collection and printing -----------------------------------------------------------------
    async def collect(self, ticket_ids: list[int]) -> Result:
        if not self.printer.in_service:
            self.counts["collect", "out_of_service"] += 1
            return {"ok": False, "error": "out_of_service", "reason": self.printer.reason}
        if self._lookup_token is None:
            self.counts["collect", "expired"] += 1
            return {"ok": False, "error": "expired"}
        result = await self._call(self.hub.collect(self._lookup_token, ticket_ids, self.printer_id))
        if result.get("ok") is False:
            self.counts["collect", str(result.get("error"))] += 1
            return result
        jobs = result.get("jobs", [])
        self.counts["collect", "ok"] += 1
        self.counts["tickets", "printing"] += len(jobs)
        return {"ok": True, "jobs": jobs}

    async def job(self, job_id: str) -> Result:
        result = await self._call(self.hub.job(job_id))
        if result.get("ok") is False:
            return result
        return {"ok": True, "status": result.get("status"), "reason": result.get("reason")}

    def reset(self) -> Result:
        self._lookup_token = None
        return {"ok": True}
