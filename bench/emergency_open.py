"""Benchmark: emergency open-all, from the security POST to the hub seeing every gate confirmed.

    .venv/bin/python bench/emergency_open.py [--gates 50,200] [--cycles 20]

A private Mosquitto and ``python -m hub`` run as in the other hub benchmarks. The simulated gates run
in ONE separate process (this script with ``--simulate``), one aiomqtt client per gate with its own
identity and Last Will: each publishes its retained status, subscribes to the emergency command,
verifies the envelope's Ed25519 signature with the hub's public keys, checks ``seq > last applied``
and publishes its retained ``EmergencyState`` signed with its own Ed25519 key (``seal_device``, as
``gate_agent/link.py`` does) — what a real gate does, apart from driving the relay. Every simulated gate
is registered at the hub first (``POST /api/v1/provisioning/devices`` with its public key, as ops
would), so the hub verifies each state under the registered key before it stores it (issue 10).
``--unsigned`` measures the pre-issue-10 path for comparison instead: a hub with ``[devices]
accept_unregistered = true``, gates unregistered, plain JSON states.
The bench polls ``GET /api/v1/emergency`` until every gate of the run is confirmed for the new seq,
for open and clear in turn. Prints one JSON object as its last line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
import nacl.signing
import paho.mqtt.client as paho

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _hubproc import ACCEPT_UNREGISTERED, BenchHub
from raw import raw_mqtt_round_trip_ms, raw_verify_us

from protocol.device_signed import KIND_EMERGENCY_STATE, is_device_signed, peek_body, seal_device
from protocol.emergency import KIND_EMERGENCY, EmergencyCommand, EmergencyState
from protocol.envelope import open_envelope
from protocol.errors import ProtocolError
from protocol.keys import Keyring
from protocol.messages import GateStatus, dump_message
from protocol.topics import Topics

TOPICS = Topics("venue")
POLL = 0.1  # s between board polls (the figure comes from the hub's confirmed_at, not the poll)


def gate_key(seed: bytes, device_id: str) -> nacl.signing.SigningKey:
    """A simulated gate's own key, the same in the driver (which registers it) and in the simulator."""
    return nacl.signing.SigningKey(hashlib.sha256(seed + device_id.encode()).digest())


# -- the simulated gates (a separate process) -------------------------------------------------------
async def one_gate(client: aiomqtt.Client, device_id: str, group: int, channel: int, keyring: Keyring,
                   key: nacl.signing.SigningKey | None) -> None:
    last = 0
    async for message in client.messages:
        try:
            _kind, payload = open_envelope(bytes(message.payload), keyring,  # type: ignore[arg-type]
                                           kinds={KIND_EMERGENCY})
            cmd = EmergencyCommand.from_wire(payload)
        except ProtocolError as exc:
            print(f"{device_id}: refused command: {exc}", file=sys.stderr)
            continue
        if cmd.seq <= last:
            continue
        last = cmd.seq
        opened = cmd.opens(group, channel)
        state = EmergencyState(device_id=device_id, state="open" if opened else "normal", seq=cmd.seq,
                               cause="command" if opened else None, at=time.time())
        payload = (seal_device(KIND_EMERGENCY_STATE, state.model_dump(mode="json"), device_id, key)
                   if key is not None else state.model_dump_json().encode())
        await client.publish(TOPICS.emergency_state(device_id), payload, qos=1, retain=True)


async def simulate(port: int, tag: str, n: int, group: int, channel: int, keyring: Keyring,
                   seed: bytes | None) -> None:
    """``seed``: the gates' keys (see :func:`gate_key`); None: unsigned states (``--unsigned``)."""
    async with contextlib.AsyncExitStack() as stack:
        gates = []
        for i in range(n):
            device_id = f"{tag}-{i:03d}"
            offline = dump_message(GateStatus(device_id=device_id, state="offline", at=0))
            client = await stack.enter_async_context(aiomqtt.Client(
                "127.0.0.1", port, identifier=device_id, protocol=aiomqtt.ProtocolVersion.V5,
                will=aiomqtt.Will(TOPICS.status(device_id), offline, qos=1, retain=True),
                socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]))  # as the gate agent does
            await client.subscribe(TOPICS.emergency_command(), qos=1)
            await client.publish(TOPICS.status(device_id), dump_message(GateStatus(
                device_id=device_id, state="online", at=time.time(), group_id=group, channel_id=channel)),
                qos=1, retain=True)
            gates.append((client, device_id))
        print(f"ready {n}", flush=True)
        await asyncio.gather(*(one_gate(c, d, group, channel, keyring, gate_key(seed, d) if seed is not None else None)
                               for c, d in gates))


# -- the driver -------------------------------------------------------------------------------------
class StateWatcher:
    """Records when each gate's state report passes the broker (to split gate time from hub time)."""

    def __init__(self, port: int) -> None:
        self.seen: dict[str, tuple[int, float]] = {}
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="bench-watcher", protocol=paho.MQTTv5)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(TOPICS.all_devices("emergency"), qos=1)
        self.client.subscribe(TOPICS.emergency_command(), qos=1)
        self.command_at = 0.0
        self.client.loop_start()

    def _on_message(self, _c: object, _u: object, message: Any) -> None:
        if message.topic == TOPICS.emergency_command():
            self.command_at = time.perf_counter()
            return
        with contextlib.suppress(ValueError, KeyError):
            # a device-signed state (the hub verifies it; this only times it) or, with --unsigned, plain JSON
            data = peek_body(message.payload) if is_device_signed(message.payload) else json.loads(message.payload)
            self.seen[data["device_id"]] = (int(data["seq"]), time.perf_counter())

    def reports(self, tag: str, seq: int) -> tuple[float, float]:
        """(first, last) time a gate of ``tag`` reported ``seq`` or newer."""
        times = [t for d, (s, t) in list(self.seen.items()) if d.startswith(tag + "-") and s >= seq]
        return (min(times), max(times)) if times else (float("nan"), float("nan"))

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def wait_confirmed(api: httpx.Client, tag: str, n: int, seq: int, timeout: float = 10.0) -> float:
    """Wall-clock time at which the hub had stored the last of the ``n`` confirmations of ``seq``.

    Taken from the board's own ``confirmed_at`` (when the hub stored each report), so the polling
    interval neither adds to the figure nor loads the hub while the gates report."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        time.sleep(POLL)
        board = api.get("/emergency").raise_for_status().json()
        mine = [g for g in board["gates"] if g["device_id"].startswith(tag + "-") and g["online"]]
        if len(mine) == n and all(g["confirmed"] and (g["seq"] or 0) >= seq for g in mine):
            return float(max(g["confirmed_at"] for g in mine))
    raise TimeoutError(f"not every one of {n} gates confirmed seq {seq} within {timeout} s")


def pct(samples: list[float], p: int) -> float:
    return round(statistics.quantiles(samples, n=100, method="inclusive")[p - 1], 1)


def run_n(hub: BenchHub, api: httpx.Client, watcher: StateWatcher, show: dict[str, int], n: int,
          cycles: int, signed: bool = True) -> dict[str, Any]:
    assert hub.hub is not None
    tag = f"sim{n}"
    seed = os.urandom(16)
    if signed:
        for i in range(n):  # as ops would: each gate's public key, group and channel
            device_id = f"{tag}-{i:03d}"
            hub.register_gate(device_id, gate_key(seed, device_id), show["group"], show["channel"])
    sim = subprocess.Popen([sys.executable, __file__, "--simulate", str(n), "--port", str(hub.broker.port),
                            "--tag", tag, "--group", str(show["group"]), "--channel", str(show["channel"]),
                            "--keys", str(hub.hub.keys_file), "--seed", seed.hex() if signed else ""],
                           stdout=subprocess.PIPE, text=True)
    try:
        assert sim.stdout is not None
        line = sim.stdout.readline()
        if not line.startswith("ready"):
            raise RuntimeError(f"gate simulator failed: {line!r}")
        wait_for_online(api, tag, n)
        opens: list[float] = []
        clears: list[float] = []
        posts: list[float] = []  # the POST's own round trip
        commands: list[float] = []
        first: list[float] = []  # POST sent -> first gate's open report seen at the broker
        wire: list[float] = []  # POST sent -> last gate's open report seen at the broker
        for _ in range(cycles):
            for action, samples in (("open", opens), ("clear", clears)):
                t0, wall0 = time.perf_counter(), time.time()
                cmd = api.post(f"/emergency/{action}", json={"scope": {"all": True}, "reason": "bench"})
                seq = cmd.raise_for_status().json()["seq"]
                posts.append((time.perf_counter() - t0) * 1000)
                samples.append((wait_confirmed(api, tag, n, seq) - wall0) * 1000)
                if action == "open":
                    t_first, t_last = watcher.reports(tag, seq)
                    first.append((t_first - t0) * 1000)
                    commands.append((watcher.command_at - t0) * 1000)
                    wire.append((t_last - t0) * 1000)
                time.sleep(0.2)
    finally:
        sim.terminate()
        sim.wait(10)
    return {"gates": n, "cycles": cycles, "open_p50_ms": pct(opens, 50), "open_p99_ms": pct(opens, 99),
            "open_max_ms": round(max(opens), 1), "post_p50_ms": pct(posts, 50),
            "command_seen_p50_ms": pct(commands, 50),
            "first_gate_report_p50_ms": pct(first, 50),
            "last_gate_report_p50_ms": pct(wire, 50),
            "last_gate_report_p99_ms": pct(wire, 99), "clear_p50_ms": pct(clears, 50), "clear_p99_ms": pct(clears, 99)}


def wait_for_online(api: httpx.Client, tag: str, n: int, timeout: float = 20.0) -> None:
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        gates = api.get("/emergency").raise_for_status().json()["gates"]
        if sum(1 for g in gates if g["device_id"].startswith(tag + "-") and g["online"]) == n:
            return
        time.sleep(0.1)
    raise TimeoutError(f"{n} simulated gates did not all register")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gates", default="50,200", help="comma-separated gate counts")
    parser.add_argument("--cycles", type=int, default=20, help="open/clear cycles per gate count")
    parser.add_argument("--simulate", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--tag", default="sim", help=argparse.SUPPRESS)
    parser.add_argument("--group", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--channel", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--keys", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--unsigned", action="store_true",
                        help="for comparison: unregistered gates, unsigned states, hub accepting unregistered devices")
    parser.add_argument("--seed", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.simulate:
        keyring = Keyring.from_b64({int(k): v for k, v in json.loads(args.keys.read_text()).items()})
        asyncio.run(simulate(args.port, args.tag, args.simulate, args.group, args.channel, keyring,
                             bytes.fromhex(args.seed) if args.seed else None))
        return
    with tempfile.TemporaryDirectory() as tmp:
        hub = BenchHub(Path(tmp), hub_config=ACCEPT_UNREGISTERED if args.unsigned else "")
        hub.start()
        try:
            show = hub.setup_show()
            admin = httpx.Client(base_url=hub.base, headers=hub.admin_headers(), timeout=10)
            admin.post("/users", json={"username": "guard", "password": "guard-password",
                                       "role": "security"}).raise_for_status()
            token = httpx.post(hub.base + "/auth/login", json={"username": "guard", "password": "guard-password"})
            api = httpx.Client(base_url=hub.base, headers={"Authorization": f"Bearer {token.json()['token']}"},
                               timeout=10)
            watcher = StateWatcher(hub.broker.port)
            try:
                runs = [run_n(hub, api, watcher, show, int(n), args.cycles, not args.unsigned)
                        for n in args.gates.split(",")]
            finally:
                watcher.close()
            raw_rtt = asyncio.run(raw_mqtt_round_trip_ms(hub.broker.port))
            security = hub.security_events()  # refused device messages: should be 0
        finally:
            hub.stop()
    result: dict[str, Any] = {"bench": "emergency_open", "gates_process": "one separate process, one aiomqtt "
                              "client per gate, each verifying the signature", "states": "unsigned, gates "
                              "unregistered, hub accept_unregistered" if args.unsigned else "device-signed, gates "
                              "registered", "runs": runs, "security_events": security,
                              "raw_mqtt_rtt_ms": round(raw_rtt, 2), "raw_verify_us": round(raw_verify_us(), 1)}
    for r in runs:
        print(f"N={r['gates']}: open p50 {r['open_p50_ms']} ms, p99 {r['open_p99_ms']} ms; "
              f"clear p50 {r['clear_p50_ms']} ms, p99 {r['clear_p99_ms']} ms", file=sys.stderr)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
