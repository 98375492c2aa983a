"""Several hub processes on one PostgreSQL database: the news between them, and the one elected hub.

* **News** (``LISTEN``/``NOTIFY`` on the channel ``venue_hub``). A hub that changed something the others keep a copy
  of (the rules, a user's sessions, the device registry, the signing keys) calls ``ctx.broadcast(topic, arg)`` after
  its commit; every hub process on the database hears it (itself too, harmlessly) and drops or reloads its copy. A
  hub whose listening connection was lost drops every copy when it is back, since it may have missed news.
* **The elected hub** holds a session-level advisory lock (``pg_try_advisory_lock``) on a connection of its own, and
  runs the work that must run once: re-publishing an emergency command that online gates have not confirmed, the
  offline sweep, pruning shared rate-limit windows. PostgreSQL releases the lock when that connection ends (the hub
  was killed, its machine died); another hub takes it at its next try, every ``[cluster] lease_check`` seconds. The
  elected hub checks its connection as often and stops acting as leader as soon as a check fails or takes longer
  than ``db_timeout`` (it closes the connection, so the lock goes too). Over TCP the server is told to drop a dead
  client within ~10 s (keepalives, ``tcp_user_timeout``), later than the elected hub gives up, so two hubs do not
  act as leader at once; the elected work is repeatable anyway (a re-publish, a sweep).

On SQLite there is one hub process: it is always the elected one and has no one to tell.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from hub.config import ClusterSettings
from hub.services.context import HubContext

log = logging.getLogger(__name__)
CHANNEL = "venue_hub"
MAX_PAYLOAD = 7000  # NOTIFY takes up to 8000 bytes
TOPICS = frozenset({"rules", "user", "session", "registry", "keys", "online", "stored"})
IDS_PER_NOTE = 180  # event ids (up to 32 characters) per "stored" note
EVERYTHING = "*"  # handlers get "" as the argument: drop every copy
# libpq keepalives: a hub notices a dead database connection within seconds, not the kernel's two hours
KEEPALIVES: dict[str, Any] = {"keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2, "keepalives_count": 2}
# ... and the server drops a hub that vanished (its lock goes with it) within ~10 s over TCP
SERVER_KEEPALIVES = ("SET tcp_keepalives_idle = 5", "SET tcp_keepalives_interval = 2",
                     "SET tcp_keepalives_count = 2", "SET tcp_user_timeout = 9000")
Handler = Callable[[str], Awaitable[None] | None]


def conninfo(ctx: HubContext) -> str | None:
    """The libpq connection string of the hub's PostgreSQL database, or None for SQLite."""
    url = ctx.db.engine.url
    if url.get_backend_name() != "postgresql":
        return None
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


class Cluster:
    def __init__(self, ctx: HubContext, hub_id: str, settings: ClusterSettings | None = None) -> None:
        self.ctx = ctx
        self.hub_id = hub_id
        self.settings = settings or ClusterSettings()
        self._conninfo = conninfo(ctx)
        self._handlers: dict[str, list[Handler]] = {}
        self._on_leader: list[Callable[[bool], None]] = []
        self._leader = self._conninfo is None  # SQLite: the only hub
        self._listening = False
        self._leader_since: float | None = time.time() if self._leader else None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.heard = 0  # news heard (for health and tests)
        if self._conninfo is not None:
            ctx.broadcast = self.broadcast

    @property
    def shared(self) -> bool:
        """Is the database shared with other hub processes (PostgreSQL)?"""
        return self._conninfo is not None

    @property
    def leader(self) -> bool:
        """Does this hub run the elected work now?"""
        return self._leader

    def on(self, topic: str, handler: Handler) -> None:
        """Call ``handler(arg)`` on the event loop for each piece of news on ``topic`` ("" : drop everything)."""
        if topic not in TOPICS:
            raise ValueError(f"unknown cluster topic {topic!r}")
        self._handlers.setdefault(topic, []).append(handler)

    def on_leader(self, callback: Callable[[bool], None]) -> None:
        """Call ``callback(is_leader)`` whenever this hub becomes, or stops being, the elected hub."""
        self._on_leader.append(callback)

    def status(self) -> dict[str, Any]:
        return {"hub_id": self.hub_id, "leader": self._leader, "shared_database": self.shared,
                "news": "listening" if self._listening else ("single hub" if not self.shared else "down"),
                "leader_since": self._leader_since}

    # -- telling the others ------------------------------------------------------------------------
    def broadcast(self, topic: str, arg: str = "") -> None:
        """Tell every hub process on the database (thread-safe; call it after the change committed). On the event
        loop the NOTIFY is sent from a worker thread, so the loop never waits on the database."""
        if topic not in TOPICS:
            raise ValueError(f"unknown cluster topic {topic!r}")
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._notify(topic, arg)
            return
        loop.run_in_executor(None, self._notify, topic, arg)

    def _notify(self, topic: str, arg: str) -> None:
        payload = f"{topic}|{arg}"[:MAX_PAYLOAD]
        try:
            with self.ctx.db.engine.connect() as conn:
                conn.execute(text("SELECT pg_notify(:channel, :payload)"), {"channel": CHANNEL, "payload": payload})
                conn.commit()
        except SQLAlchemyError:
            log.exception("could not tell the other hubs about %s %s; they drop their copy when their cache expires",
                          topic, arg[:64])

    def stored(self, event_ids: list[str]) -> None:
        """Events this hub stored (or an online check it decided): the other hubs' live feeds show them too."""
        if not self.shared:
            return
        for i in range(0, len(event_ids), IDS_PER_NOTE):
            self.broadcast("stored", ",".join(event_ids[i:i + IDS_PER_NOTE]))

    # -- running -----------------------------------------------------------------------------------
    async def run(self) -> None:
        """Listen for news and take part in the election until cancelled (SQLite: only wait)."""
        if not self.shared:
            log.info("hub %s is the only hub on its SQLite database: it runs the elected work", self.hub_id)
            await asyncio.Event().wait()
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._listen_loop())
                tg.create_task(self._lease_loop())
        finally:
            self._set_leader(False, "the hub is stopping", stopping=True)

    async def _connect(self) -> Any:
        import psycopg  # the PostgreSQL driver; installed with the hub, needed only on PostgreSQL

        assert self._conninfo is not None
        conn = await asyncio.wait_for(psycopg.AsyncConnection.connect(
            self._conninfo, autocommit=True, application_name=f"venue-hub {self.hub_id}"[:63], **KEEPALIVES),
            self.settings.db_timeout + 5)
        for statement in SERVER_KEEPALIVES:
            await conn.execute(statement)
        return conn

    async def _listen_loop(self) -> None:
        import psycopg

        backoff = 0.5
        while True:
            try:
                conn = await self._connect()
                async with conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self._listening, backoff = True, 0.5
                    log.info("hub %s listens for news from the other hubs", self.hub_id)
                    self._dispatch(EVERYTHING, "")  # what was missed while not listening
                    async for note in conn.notifies():
                        topic, _, arg = note.payload.partition("|")
                        self._dispatch(topic, arg)
            except (psycopg.Error, OSError, TimeoutError) as exc:
                log.warning("hub %s lost its news connection to the database (%s); reconnecting in %.1f s",
                            self.hub_id, exc, backoff)
            finally:
                self._listening = False
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    def _dispatch(self, topic: str, arg: str) -> None:
        self.heard += 1
        handlers = ([(t, h) for t, hs in self._handlers.items() for h in hs] if topic == EVERYTHING
                    else [(topic, h) for h in self._handlers.get(topic, ())])
        if topic != EVERYTHING and topic not in TOPICS:
            log.warning("news on an unknown topic %r from another hub ignored", topic[:40])
            return
        for name, handler in handlers:
            if topic == EVERYTHING and name in ("online", "stored"):
                continue  # nothing to redo for devices heard, or scans stored, while away
            try:
                result = handler(arg)
            except Exception:
                log.exception("handling news %s %s failed", name, arg[:64])
                continue
            if inspect.isawaitable(result):
                task = asyncio.ensure_future(result)
                self._tasks.add(task)
                task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("handling news from another hub failed", exc_info=task.exception())

    async def _lease_loop(self) -> None:
        import psycopg

        conn: Any = None
        timeout = self.settings.db_timeout
        while True:
            try:
                if conn is None:
                    conn = await self._connect()
                if not self._leader:
                    cur = await asyncio.wait_for(conn.execute("SELECT pg_try_advisory_lock(%s)",
                                                              (self.settings.election_key,)), timeout)
                    row = await cur.fetchone()
                    if row is not None and row[0]:
                        self._set_leader(True, "it holds the leader lock")
                else:
                    await asyncio.wait_for(conn.execute("SELECT 1"), timeout)
            except (psycopg.Error, OSError, TimeoutError) as exc:
                self._set_leader(False, f"its lock connection failed ({type(exc).__name__}: {exc})")
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(conn.close(), 1.0)
                conn = None
            except asyncio.CancelledError:
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(conn.close(), 1.0)
                raise
            await asyncio.sleep(self.settings.lease_check)

    def _set_leader(self, leader: bool, why: str, stopping: bool = False) -> None:
        if leader == self._leader:
            return
        self._leader = leader
        self._leader_since = time.time() if leader else None
        if leader:
            log.info("hub %s elected leader (%s): it runs the emergency re-publish and the offline sweep",
                     self.hub_id, why)
        else:
            log.log(logging.INFO if stopping else logging.WARNING, "hub %s is no longer the elected leader: %s",
                    self.hub_id, why)
        for callback in self._on_leader:
            try:
                callback(leader)
            except Exception:
                log.exception("a leader-change callback failed")
