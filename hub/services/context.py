"""What every service needs: the database, the signing key, topics, a clock and a publisher."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, insert

from hub.config import LoginSettings
from hub.db import Database
from hub.metrics import HubMetrics
from hub.tables import audit_log
from protocol.keys import CONTROL, TICKET, Keyring, Signer
from protocol.topics import Topics

log = logging.getLogger(__name__)

Publish = Callable[[str, bytes], None]
Outgoing = tuple[str, bytes]


def _drop(topic: str, _payload: bytes) -> None:
    log.debug("no MQTT bridge; not publishing to %s", topic)


def _alone(_topic: str, _arg: str) -> None:
    """One hub process (SQLite, or no cluster link yet): there is no other hub to tell."""


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated user behind a request (or a system actor such as the MQTT bridge)."""

    user_id: int | None
    username: str
    role: str
    device_id: str | None = None  # a device's own login: the only device id it may act as


SYSTEM = Principal(None, "system", "admin")


@dataclass
class HubContext:
    db: Database
    signer: Signer  # the control key: every envelope the hub signs (never ticket tokens, unless single-key)
    topics: Topics = field(default_factory=Topics)
    clock: Callable[[], float] = time.time
    token_ttl: float = 12 * 3600.0
    login: LoginSettings = field(default_factory=LoginSettings)  # throttling, lock-out, security-role sessions
    publish: Publish = _drop  # thread-safe; called only after the transaction committed
    keyring: Keyring = field(init=False)
    rules_cache: dict[Any, Any] = field(default_factory=dict)  # hub.services.rulebook: rules, scopes
    rules_generation: int = 0  # bumped by every rulebook.forget: a load that straddles one is not cached
    # tells every other hub process on the database to drop a cached thing (hub/cluster.py: PostgreSQL NOTIFY);
    # thread-safe, called after the change committed: ("rules", ""), ("user", "<id>"), ("session", "<hash>"), ...
    broadcast: Callable[[str, str], None] = _alone
    session_cache: dict[str, tuple[Principal, float]] = field(default_factory=dict)  # token hash -> (who, until)
    ticket_signer: Signer | None = None  # the ticket key (tokens only); None: ``signer`` does both (legacy/tests)
    metrics: HubMetrics = field(default_factory=HubMetrics)  # this hub's own registry (GET /metrics)

    def __post_init__(self) -> None:
        if self.ticket_signer is None or self.ticket_signer.kid == self.signer.kid:
            self.ticket_signer = self.signer
            self.keyring = Keyring.of(self.signer)  # one key, all purposes
        else:
            self.keyring = Keyring.of(self.ticket_signer, purposes={TICKET}).merged(
                Keyring.of(self.signer, purposes={CONTROL}))

    @property
    def token_signer(self) -> Signer:
        """The key ticket tokens are signed with."""
        return self.ticket_signer or self.signer

    def publish_all(self, outgoing: Iterable[Outgoing]) -> None:
        for topic, payload in outgoing:
            self.publish(topic, payload)

    def audit(self, conn: Connection, who: Principal, action: str, target: str, detail: str = "") -> None:
        conn.execute(insert(audit_log).values(at=self.clock(), username=who.username, action=action,
                                              target=target, detail=detail[:1000]))


def row_dict(row: Any) -> dict[str, Any]:
    return dict(row._mapping)
