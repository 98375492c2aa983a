"""Event batches stored in a child process, so a burst of events never competes with the HTTP API for the hub's
interpreter (in a worker thread, 50,000 events took a handheld's online check from 14 ms to 1.9 s at p99:
docs/benchmarks.md, issue 13 item 0).

    worker = IngestWorker(ctx, settings.database_url)
    tasks.spawn("ingest-worker", worker.run)         # starts the child, raises when it dies: restarted
    bridge.store = worker.store                       # await worker.store(batches) -> acks and deltas

The bridge still receives and checks the batches (signatures, the registry: cheap); the child (``spawn``: a
fresh interpreter, never a fork of a process with an event loop and threads) opens its own engine from the
database URL (never migrates: the hub did) and runs :func:`hub.services.ingest.store` for each job, one at a
time, sealing the acks and whitelist deltas with the control key the hub sends it (again after a rotation).
Batches go to it as their JSON, the acks come back as (topic, payload) pairs; the hub's process publishes them
and counts the metrics, after the commit as before.

On SQLite the child writes in the hub's writer turn (:meth:`hub.db.Database.turn`): an online check waits for at
most the one ingest transaction under way, as in one process, and nobody polls SQLite's busy lock. The rules the
child reads (counting scopes, channel rules) it caches until the hub's own cache is dropped (each job names the
hub's ``rules_generation``; under the writer turn no rules change can come between); on PostgreSQL (no writer
turn, row locks) it reads them in each transaction. A child that dies (killed, out of memory) is
logged, "failed" in ``GET /api/v1/health`` (``ingest-worker``) and started again; the batches it had are not
acked (the gates send them again; storing is idempotent by event id), those still queued wait for the new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import pickle
import sys
import time
import traceback
from collections.abc import Sequence
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from hub.db import Database
from hub.services import ingest
from hub.services.context import HubContext, Outgoing
from protocol.messages import EventBatch

log = logging.getLogger(__name__)

_SPAWN = multiprocessing.get_context("spawn")
READY = b"ready"


class WorkerLost(Exception):
    """The ingest child died (or was not running) with a job in hand: nothing acked, the devices re-send."""


class StoreFailed(Exception):
    """The child's transaction failed (rolled back): as :func:`hub.services.ingest.store_batches` raising."""


def shares_database(url: str) -> bool:
    """Can a child process open the same database (not an in-memory SQLite one)?"""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    return parsed.get_backend_name() != "sqlite" or parsed.database not in (None, "", ":memory:")


# --- the child ---------------------------------------------------------------------------------------------------


class _Records(logging.Handler):
    """The child's log: while a job runs, its records go back to the hub with the answer (logged there, in the
    hub's log, as if stored in the hub's process); outside a job, to stderr (the hub's stderr)."""

    LIMIT = 10_000  # records per job

    def __init__(self) -> None:
        super().__init__()
        self.records: list[tuple[str, int, str]] | None = None
        self.setFormatter(logging.Formatter(f"ingest worker {os.getpid()}: %(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        if self.records is None:
            sys.stderr.write(self.format(record) + "\n")
        elif len(self.records) < self.LIMIT:
            self.records.append((record.name, record.levelno, self.format(record) if record.exc_info
                                 else record.getMessage()))

    def take(self) -> list[tuple[str, int, str]]:
        found, self.records = self.records or [], None
        return found


def _child(url: str, prefix: str, level: int, conn: Connection) -> None:
    # imported here: the child pays for them once, off the hub's event loop
    from hub.db import make_engine
    from protocol.keys import Signer
    from protocol.topics import Topics

    records = _Records()
    logging.getLogger().addHandler(records)
    logging.getLogger().setLevel(level)
    clock = [time.time()]
    db = Database(make_engine(url))
    ctx: HubContext | None = None
    try:
        conn.send_bytes(READY)
        while True:
            try:
                job = conn.recv_bytes()
            except EOFError:
                return  # the hub closed the pipe (stopping) or died
            now, key, generation, payloads = pickle.loads(job)
            if key is not None:
                import nacl.signing

                signer = Signer(kid=key[0], key=nacl.signing.SigningKey(key[1]))
                if ctx is None:
                    ctx = HubContext(db, signer, Topics(prefix), clock=lambda: clock[0])
                else:
                    ctx.signer = signer
            if ctx is None:
                conn.send_bytes(pickle.dumps(("error", "no signing key sent yet", "", [])))
                continue
            clock[0] = now  # the hub's clock when it sent the job: received_at, the deltas' time, the acks'
            records.records = []
            if generation is None or generation != ctx.rules_generation:
                ctx.rules_cache.clear()  # the hub's rules cache was dropped since: so is ours
                ctx.rules_generation = generation if generation is not None else ctx.rules_generation + 1
            try:
                batches = [EventBatch.model_validate_json(p) for p in payloads]
                stored = ingest.store(ctx, batches)
            except Exception as exc:
                conn.send_bytes(pickle.dumps(("error", f"{type(exc).__name__}: {exc}", traceback.format_exc(),
                                              records.take())))
                continue
            conn.send_bytes(pickle.dumps(("ok", stored.outgoing, stored.known, stored.now, stored.seconds,
                                          records.take()), protocol=pickle.HIGHEST_PROTOCOL))
    except (BrokenPipeError, ConnectionResetError):
        return  # the hub went away while we answered
    finally:
        db.dispose()


# --- the hub's side ----------------------------------------------------------------------------------------------


def _call(db: Database, conn: Connection, job: bytes) -> Any:
    """One job and its answer (in a worker thread: it blocks, without the GIL, while the child works). On SQLite
    the child writes in this process's writer turn: one writer at a time, an online check first, and neither
    process polls SQLite's busy lock."""
    with db.turn():
        conn.send_bytes(job)
        return pickle.loads(conn.recv_bytes())


class IngestWorker:
    """The child process storing event batches, supervised by the hub (see the module docstring)."""

    def __init__(self, ctx: HubContext, database_url: str, start_timeout: float = 60.0) -> None:
        self.ctx = ctx
        self.url = database_url
        self.start_timeout = start_timeout
        self.pid: int | None = None  # of the running child
        self.starts = 0  # children started so far
        self._conn: Connection | None = None
        self._up = asyncio.Event()  # a child is running and has said it is ready
        self._turn = asyncio.Lock()  # one job at a time on the pipe
        self._key_sent: object = None  # the signer the running child has

    async def run(self) -> None:
        """Start a child and return only by raising when it dies (the hub's Supervisor restarts this)."""
        parent, child = _SPAWN.Pipe()
        process: BaseProcess = _SPAWN.Process(target=_child, name="hub-ingest", daemon=True,
                                              args=(self.url, self.ctx.topics.prefix,
                                                    logging.getLogger().getEffectiveLevel(), child))
        process.start()
        child.close()  # only the child holds its end: its death is an EOF here
        try:
            loop = asyncio.get_running_loop()
            exited: asyncio.Future[None] = loop.create_future()

            def ended() -> None:
                if not exited.done():
                    exited.set_result(None)

            loop.add_reader(process.sentinel, ended)
            try:
                hello = await asyncio.wait_for(asyncio.to_thread(self._hello, parent), self.start_timeout)
                if hello != READY:
                    raise RuntimeError(f"the ingest worker said {hello[:40]!r} instead of ready")
                self._conn, self._key_sent, self.pid = parent, None, process.pid
                self.starts += 1
                self._up.set()
                log.info("ingest worker started (pid %s)", process.pid)
                await exited
            finally:
                loop.remove_reader(process.sentinel)
        finally:
            self._up.clear()
            self._conn, self.pid = None, None
            await asyncio.to_thread(self._stop, process, parent)
        raise WorkerLost(f"the ingest worker (pid {process.pid}) ended with exit code {process.exitcode}; event "
                         "batches it had are not acked (the gates re-send them), starting a new one")

    @staticmethod
    def _hello(conn: Connection) -> bytes:
        try:
            return conn.recv_bytes()
        except EOFError:
            return b"(died while starting)"

    @staticmethod
    def _stop(process: BaseProcess, conn: Connection) -> None:
        conn.close()  # the child reads EOF and ends
        process.join(0.3)
        if process.is_alive():  # still tearing down: what it had in hand is not acked anyway, a rollback loses nothing
            process.terminate()
            process.join(5)
        if process.is_alive():
            log.warning("ingest worker (pid %s) did not stop; killing it", process.pid)
            process.kill()
            process.join(5)

    async def store(self, batches: Sequence[EventBatch]) -> list[Outgoing]:
        """Store ``batches`` in one transaction in the child; the acks and deltas to publish. Waits for a running
        child; raises WorkerLost if it dies meanwhile, StoreFailed if its transaction failed."""
        await self._up.wait()
        async with self._turn:
            conn = self._conn
            if conn is None:
                raise WorkerLost("the ingest worker is not running")
            signer = self.ctx.signer
            key = None if signer is self._key_sent else (signer.kid, bytes(signer.key))
            # rules: the child keeps what it read until the hub's cache is dropped too (a rules change here, or the
            # news of one from another hub); on PostgreSQL (no writer turn) it reads them in each transaction
            fresh = self.ctx.rules_generation if self.ctx.db.serialised else None
            job = pickle.dumps((self.ctx.clock(), key, fresh, [b.model_dump_json().encode() for b in batches]),
                               protocol=pickle.HIGHEST_PROTOCOL)
            try:
                reply = await asyncio.to_thread(_call, self.ctx.db, conn, job)
            except (EOFError, OSError) as exc:
                raise WorkerLost(f"the ingest worker died with {len(batches)} event batch(es) in hand") from exc
            self._key_sent = signer
        for name, level, message in reply[-1]:
            logging.getLogger(name).log(level, "%s", message)
        if reply[0] != "ok":
            raise StoreFailed(f"{reply[1]}\nin the ingest worker: {reply[2]}")
        _, outgoing, known, now, seconds, _records = reply
        ingest.record(self.ctx, batches, ingest.Stored(outgoing, known, now, seconds))
        return list(outgoing)

    def kill(self) -> None:
        """Tests only: kill -9 the running child."""
        if self.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, 9)
