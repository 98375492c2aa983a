"""Applying signed whitelist messages to the store: snapshots, in-order deltas, gaps, replays.

Only a verified envelope changes anything; a message that fails any check leaves the store as it was.
"""

from __future__ import annotations

import logging
from enum import StrEnum
from typing import Any

from gate_agent.store import Store
from protocol.cards import CardEntry
from protocol.envelope import open_envelope
from protocol.errors import MalformedError
from protocol.keys import Keyring
from protocol.whitelist import KIND_DELTA, KIND_SNAPSHOT, WHITELIST_KINDS, Delta, GroupRules, WhitelistEntry

log = logging.getLogger(__name__)


class Outcome(StrEnum):
    INSTALLED = "installed"  # a snapshot replaced the whitelist
    APPLIED = "applied"  # the next delta was applied
    DUPLICATE = "duplicate"  # seq already covered: a duplicate or a replay, ignored
    GAP = "gap"  # a delta beyond the next seq: a re-sync is needed
    OTHER_GROUP = "other_group"  # not for our check-in group, ignored


def verify(payload: bytes, keyring: Keyring) -> tuple[str, Any]:
    """Open a whitelist envelope. Raises MalformedError or SignatureError (nothing applied)."""
    return open_envelope(payload, keyring, kinds=WHITELIST_KINDS)


def _snapshot_parts(body: Any) -> tuple[int, int, GroupRules, list[Any], list[CardEntry]]:
    """The header of a snapshot body; entries stay raw so 100k of them are never objects at once."""
    try:
        group_id, seq = int(body["group_id"]), int(body["seq"])
        float(body["generated_at"])
        rules = GroupRules.from_wire(body["rules"])
        entries = body["entries"]
        cards = [CardEntry.from_wire(c) for c in body.get("cards") or []]  # absent in old snapshots
    except (KeyError, TypeError, ValueError) as exc:
        raise MalformedError("whitelist snapshot is malformed") from exc
    if not isinstance(entries, list):
        raise MalformedError("whitelist snapshot entries are not a list")
    if rules.group_id != group_id:
        raise MalformedError("whitelist snapshot's rules name another group")
    return group_id, seq, rules, entries, cards


def apply(kind: str, body: Any, store: Store, group_id: int) -> Outcome:
    """Apply a verified whitelist message to ``store`` for our ``group_id``."""
    if kind == KIND_SNAPSHOT:
        snap_group, seq, rules, raw, cards = _snapshot_parts(body)
        if snap_group != group_id:
            log.warning("ignoring a whitelist snapshot for group %s (ours is %s)", snap_group, group_id)
            return Outcome.OTHER_GROUP
        if store.installed and seq < store.whitelist_seq:
            log.debug("ignoring an old whitelist snapshot %s (have %s)", seq, store.whitelist_seq)
            return Outcome.DUPLICATE
        # entries are validated inside the install transaction: one bad row rolls the whole install back
        count = store.install_snapshot(snap_group, seq, rules, (WhitelistEntry.from_wire(r) for r in raw), cards)
        log.info("whitelist snapshot %s installed: %d entries, %d cards", seq, count, len(cards), extra={"seq": seq})
        return Outcome.INSTALLED
    if kind != KIND_DELTA:
        raise MalformedError(f"not a whitelist kind: {kind!r}")
    delta = Delta.from_wire(body)
    if delta.group_id != group_id:
        log.warning("ignoring a whitelist delta for group %s (ours is %s)", delta.group_id, group_id)
        return Outcome.OTHER_GROUP
    if not store.installed:
        log.info("whitelist delta %s before any snapshot: re-sync", delta.seq)
        return Outcome.GAP
    if delta.seq <= store.whitelist_seq:
        log.debug("ignoring whitelist delta %s: already at %s", delta.seq, store.whitelist_seq)
        return Outcome.DUPLICATE
    if delta.seq > store.whitelist_seq + 1:
        log.warning("whitelist gap: got delta %s, have %s", delta.seq, store.whitelist_seq)
        return Outcome.GAP
    store.apply_delta(delta)
    log.info("whitelist delta %s applied (%s)", delta.seq, delta.op,
             extra={"seq": delta.seq, "ticket_id": delta.entry.ticket_id if delta.entry else None})
    return Outcome.APPLIED
