"""A simulated gate that publishes event batches over MQTT and, as a real gate does, sends every batch not acked
yet again until the hub's ack (published after the commit) names all of its events. Unregistered: the hub must
run with ``[devices] accept_unregistered = true`` (:data:`ACCEPT_UNREGISTERED`); batches are plain JSON.

    gate = ResendingGate("gate-1", show, events=4000)
    await gate.run(broker.port, seconds=60)      # every batch acked, or TimeoutError
    gate.acks                                     # acks received per batch (1 each unless re-sent or doubled)
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable

import aiomqtt

from protocol.messages import CheckinEvent, EventBatch, dump_message
from protocol.reasons import Reason
from protocol.topics import Topics
from tests.support.scenario import Show

ACCEPT_UNREGISTERED = "[devices]\naccept_unregistered = true\n"
BATCH = 200  # events per batch, as gate_agent.link.BATCH_SIZE


def batch_of(device: str, show: Show, n: int, first_seq: int = 1, admit: list[int] | None = None) -> EventBatch:
    """``n`` events of ``device``: admissions of the ticket ids in ``admit`` first, then denials."""
    admit = list(admit or [])
    events = []
    for seq in range(first_seq, first_seq + n):
        ticket = admit.pop(0) if admit else None
        events.append(CheckinEvent(event_id=uuid.uuid4().hex, device_id=device, group_id=show.group_id,
                                   channel_id=show.channel_id, seq=seq,
                                   reason=Reason.ADMITTED if ticket else Reason.ALREADY_USED,
                                   ticket_id=ticket or 1_000_000 + seq, performance_id=show.performance_id,
                                   ticket_type_id=show.adult_type, persons=1 if ticket else 0,
                                   scanned_at=time.time(), offline=True))
    return EventBatch(device_id=device, events=events)


class ResendingGate:
    def __init__(self, device: str, show: Show, events: int, prefix: str = "venue", resend_after: float = 3.0,
                 admit: list[int] | None = None) -> None:
        self.device = device
        self.topics = Topics(prefix)
        self.resend_after = resend_after
        admit = list(admit or [])
        self.batches: list[EventBatch] = []
        for first in range(1, events + 1, BATCH):
            n = min(BATCH, events - first + 1)
            self.batches.append(batch_of(device, show, n, first, admit[:n]))
            admit = admit[n:]
        self.wire = [dump_message(b) for b in self.batches]
        self.ids = [{e.event_id for e in b.events} for b in self.batches]
        self.acks = [0] * len(self.batches)  # acks received per batch
        self.sends = [0] * len(self.batches)
        self.ack_payloads: list[bytes] = []
        self.on_ack: Callable[[int], None] = lambda _i: None  # told the batch index of each ack

    def acked(self) -> int:
        return sum(1 for n in self.acks if n)

    async def run(self, port: int, seconds: float = 60.0, window: int = 8) -> None:
        """Publish every batch (at most ``window`` unacked at once), re-send the unacked every ``resend_after``
        seconds, until every batch is acked."""
        async with aiomqtt.Client("127.0.0.1", port, identifier=self.device, protocol=aiomqtt.ProtocolVersion.V5,
                                  max_queued_incoming_messages=10_000) as client:
            await client.subscribe(self.topics.ack(self.device), qos=1)
            everything = asyncio.Event()

            async def receive() -> None:
                async for message in client.messages:
                    payload = bytes(message.payload)  # type: ignore[arg-type]
                    self.ack_payloads.append(payload)
                    body = json.loads(payload.partition(b"\n")[2])
                    named = set(body["event_ids"])
                    for i, ids in enumerate(self.ids):
                        if ids <= named:
                            self.acks[i] += 1
                            self.on_ack(i)
                    if all(self.acks):
                        everything.set()

            receiver = asyncio.create_task(receive())
            sent_at: dict[int, float] = {}
            try:
                async with asyncio.timeout(seconds):
                    while not everything.is_set():
                        now = time.monotonic()
                        unacked = [i for i, n in enumerate(self.acks) if not n]
                        waiting = [i for i in unacked if i in sent_at and now - sent_at[i] < self.resend_after]
                        for i in unacked:
                            if len(waiting) >= window:
                                break
                            if i in sent_at and now - sent_at[i] < self.resend_after:
                                continue
                            await client.publish(self.topics.events(self.device), self.wire[i], qos=1)
                            sent_at[i] = now
                            self.sends[i] += 1
                            waiting.append(i)
                        await asyncio.sleep(0.02)
            finally:
                receiver.cancel()
