"""Hub ingest of turnstile events: annulments take an admission back (partial ones give persons back as
credit), exits are stored and those naming a ticket count as its exit."""

from __future__ import annotations

import time
import uuid
from typing import Any

from hub.services import ingest
from protocol.envelope import open_envelope
from protocol.messages import CheckinEvent, EventBatch
from protocol.reasons import Reason
from protocol.whitelist import Delta
from tests.hubkit import Hub, hub_fixture, sell, setup_show  # noqa: F401  (fixture)


class Gate:
    """Makes the events one gate device would send, with increasing seqs."""

    def __init__(self, device_id: str, show: dict[str, int]) -> None:
        self.device_id, self.show, self.seq = device_id, show, 0

    def event(self, reason: Reason, ticket_id: int | None, persons: int = 0, **extra: Any) -> CheckinEvent:
        self.seq += 1
        return CheckinEvent(event_id=uuid.uuid4().hex, device_id=self.device_id, group_id=self.show["group"],
                            channel_id=self.show["channel"], seq=self.seq, reason=reason, ticket_id=ticket_id,
                            performance_id=self.show["performance"], ticket_type_id=self.show["adult"],
                            persons=persons, scanned_at=time.time(), **extra)

    def admit(self, ticket_id: int, persons: int = 1) -> CheckinEvent:
        return self.event(Reason.ADMITTED, ticket_id, persons)

    def annul(self, admission: CheckinEvent, persons: int) -> CheckinEvent:
        return self.event(Reason.ANNULLED, admission.ticket_id, persons, annuls=admission.event_id)


def send(hub: Hub, *events: CheckinEvent) -> list[Delta]:
    """Ingest one batch as the MQTT bridge would; return the whitelist deltas it publishes."""
    out = ingest.store_batches(hub.ctx, [EventBatch(device_id=events[0].device_id, events=list(events))])
    deltas = []
    for topic, payload in out:
        if topic.endswith("/whitelist"):
            _kind, body = open_envelope(payload, hub.keyring)
            deltas.append(Delta.from_wire(body))
    return deltas


def used(hub: Hub, ticket_id: int) -> int:
    return int(hub.client.get(f"/api/v1/tickets/{ticket_id}", headers=hub.admin).json()["used"])


def journal(hub: Hub, ticket_id: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = hub.client.get(f"/api/v1/checkins?ticket_id={ticket_id}",
                                                headers=hub.admin).json()
    return sorted(rows, key=lambda r: r["device_seq"])


def test_a_full_annulment_takes_the_admission_back_once(hub: Hub) -> None:
    show = setup_show(hub)
    ticket = sell(hub, show, persons=2)
    gate = Gate("gate-1", show)
    admission = gate.admit(ticket["id"], persons=2)
    send(hub, admission)
    assert used(hub, ticket["id"]) == 1
    annulment = gate.annul(admission, persons=2)
    deltas = send(hub, annulment)
    assert used(hub, ticket["id"]) == 0
    assert [(d.op, d.entry.ticket_id, d.entry.used) for d in deltas if d.entry] == [("used", ticket["id"], 0)]
    assert send(hub, annulment) == [] and used(hub, ticket["id"]) == 0  # a re-sent batch changes nothing
    rows = journal(hub, ticket["id"])
    assert [(r["reason"], r["annuls"]) for r in rows] == [("admitted", None), ("annulled", admission.event_id)]


def test_a_partial_annulment_keeps_the_entry_and_gives_the_persons_back_as_credit(hub: Hub) -> None:
    show = setup_show(hub)
    ticket = sell(hub, show, persons=3)
    gate = Gate("gate-1", show)
    admission = gate.admit(ticket["id"], persons=3)
    send(hub, admission)
    deltas = send(hub, gate.annul(admission, persons=2))
    assert [(d.op, d.entry.used, d.entry.state.credit) for d in deltas if d.entry] == [("used", 1, 2)]
    assert used(hub, ticket["id"]) == 1
    assert [r["persons"] for r in journal(hub, ticket["id"])] == [3, 2]


def test_admission_and_annulment_in_one_batch_and_a_later_readmission_is_no_conflict(hub: Hub) -> None:
    show = setup_show(hub)
    ticket = sell(hub, show)
    gate, other = Gate("gate-1", show), Gate("gate-2", show)
    admission = gate.admit(ticket["id"])
    send(hub, admission, gate.annul(admission, persons=1))  # both were waiting in the gate's outbox
    assert used(hub, ticket["id"]) == 0
    send(hub, other.admit(ticket["id"]))
    assert used(hub, ticket["id"]) == 1
    assert not any(r["conflict"] for r in journal(hub, ticket["id"]))


def test_an_annulment_from_another_device_or_of_a_denial_takes_nothing_back(hub: Hub) -> None:
    show = setup_show(hub)
    ticket = sell(hub, show)
    gate, other = Gate("gate-1", show), Gate("gate-2", show)
    admission = gate.admit(ticket["id"])
    denial = gate.event(Reason.ALREADY_USED, ticket["id"])
    send(hub, admission, denial)
    assert send(hub, other.annul(admission, persons=1)) == []
    assert send(hub, gate.annul(denial, persons=0)) == []
    assert used(hub, ticket["id"]) == 1


def test_exit_passages_are_stored_and_an_exit_naming_the_ticket_is_counted_as_an_exit(hub: Hub) -> None:
    show = setup_show(hub)
    ticket = sell(hub, show)
    gate = Gate("gate-1", show)
    send(hub, gate.admit(ticket["id"]))
    anonymous_exit = gate.event(Reason.EXIT, None, persons=1, direction="exit")
    ticket_exit = gate.event(Reason.EXIT, ticket["id"], persons=1, direction="exit")
    deltas = send(hub, anonymous_exit, ticket_exit)
    assert [(d.entry.used, d.entry.state.exits) for d in deltas if d.entry] == [(1, 1)]  # entries stay 1
    assert used(hub, ticket["id"]) == 1
    rows = hub.client.get("/api/v1/checkins?device_id=gate-1", headers=hub.admin).json()
    exits = [r for r in rows if r["reason"] == "exit"]
    assert len(exits) == 2 and {r["direction"] for r in exits} == {"exit"}
    assert not any(r["conflict"] for r in rows)
