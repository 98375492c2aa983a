"""The hub follows the devices' Last Will convention (issue 11): a retained presence on
``{prefix}/hub/presence/<client_id>`` says online on every connect, offline when the hub stops, and the
broker publishes the hub's Will (offline) when the hub dies without a word."""

from __future__ import annotations

import queue
from pathlib import Path

import paho.mqtt.client as mqtt

from protocol.messages import HubPresence, parse_message
from tests.support.broker import Mosquitto
from tests.support.processes import HubProcess

TOPIC = "venue/hub/presence/hub"


class Watcher:
    """A paho client subscribed to the hub's presence topic; every message in order."""

    def __init__(self, broker: Mosquitto) -> None:
        self.seen: queue.Queue[HubPresence] = queue.Queue()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="presence-watcher", protocol=mqtt.MQTTv5)
        self.client.on_message = lambda _c, _u, m: self.seen.put(parse_message(HubPresence, m.payload))
        self.client.connect("127.0.0.1", broker.port)
        self.client.subscribe(TOPIC, qos=1)
        self.client.loop_start()

    def next_state(self, timeout: float = 15.0) -> str:
        return self.seen.get(timeout=timeout).state

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def test_the_hub_says_online_offline_when_stopped_and_its_will_says_offline_when_it_dies(
        tmp_path: Path, broker: Mosquitto) -> None:
    hub = HubProcess(tmp_path / "hub", broker.port)
    watcher = Watcher(broker)
    try:
        hub.start()
        assert watcher.next_state() == "online"
        hub.kill()  # no DISCONNECT: the broker publishes the Will
        assert watcher.next_state() == "offline"
        hub.start()
        assert watcher.next_state() == "online"
        hub.stop()  # SIGTERM: the hub says offline itself before its clean disconnect
        presence = watcher.seen.get(timeout=15)
        assert (presence.state, presence.hub_id) == ("offline", "hub")
    finally:
        watcher.close()
        hub.stop()
        hub.api.close()
