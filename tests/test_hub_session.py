"""The hub's own MQTT session is persistent (issue 13, item 0): what a gate sends while the hub is down, even
after a kill -9, is kept by the broker for the hub's session and delivered when the hub is back, without the
gate sending it again."""

from __future__ import annotations

from typing import Any

from protocol.reasons import Reason
from tests.support.broker import Mosquitto
from tests.support.net import wait_for
from tests.support.processes import HubProcess
from tests.support.scenario import Show, sell
from tests.test_hub_live import stand_in_gate


def stored(hub: HubProcess, device_id: str) -> set[str]:
    rows: list[dict[str, Any]] = hub.call("GET", "/checkins", params={"device_id": device_id})
    return {r["event_id"] for r in rows}


def test_a_batch_sent_while_the_hub_was_killed_is_stored_when_it_is_back(hub_process: HubProcess,
                                                                           broker: Mosquitto, show: Show) -> None:
    hub = hub_process
    gate = stand_in_gate(hub, broker, "gate-S1", show.group_id, show.channel_id)
    try:
        ticket = sell(hub, show)
        first = gate.send([gate.event(Reason.ADMITTED, ticket["id"], show)])
        wait_for(lambda: first.events[0].event_id in stored(hub, "gate-S1"), 10, what="the first batch stored")

        hub.kill()  # kill -9: no clean disconnect
        while_down = gate.send([gate.event(Reason.ALREADY_USED, ticket["id"], show)])  # sent once, never again
        hub.start()
        wait_for(lambda: while_down.events[0].event_id in stored(hub, "gate-S1"), 15,
                 what="the batch sent while the hub was down, delivered from its session")
        assert stored(hub, "gate-S1") == {first.events[0].event_id, while_down.events[0].event_id}
    finally:
        gate.close()
