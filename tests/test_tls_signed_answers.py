"""Issue 10 item 7: the hub over HTTPS with the venue CA, its MQTT client over TLS, and signed online answers.

Real processes: ``python -m hub`` serving HTTPS with a server certificate from ``provisioning.tls``'s venue
CA; ``python -m gate_agent`` as a handheld checking online over TLS; a spoofed hub (a local HTTP(S) server
that answers "admitted") that the handheld must not believe; the hub's bridge on a TLS Mosquitto listener.
"""

from __future__ import annotations

import base64
import json
import ssl
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from gate_agent.checkin import Checker, Station
from gate_agent.online import OnlineChecker, OnlineOptions
from gate_agent.store import Store
from protocol.envelope import open_envelope
from protocol.keys import Keyring, Signer
from protocol.online import KIND_ONLINE_ANSWER, OnlineAnswer, seal_answer
from protocol.reasons import Reason
from provisioning.tls import make_ca, make_server_cert
from tests.support.broker import Mosquitto
from tests.support.net import wait_for
from tests.support.processes import GateProcess, HubProcess
from tests.support.scenario import Show, seed_show, sell
from tests.support.secure_broker import SecureMosquitto
from tests.test_gate_handheld import Screen, install_whitelist, keyring_of

PASSWORD = "handheld-pass-1"


@dataclass(frozen=True)
class Venue:
    ca: Path
    ca_key: Path
    dir: Path

    def server_cert(self, name: str) -> tuple[Path, Path]:
        return make_server_cert(self.dir, self.ca, self.ca_key, ["localhost", "127.0.0.1"], name=name)

    def context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca))


@pytest.fixture
def venue(tmp_path: Path) -> Venue:
    ca, key = make_ca(tmp_path / "venue-tls", "test venue CA")
    return Venue(ca, key, tmp_path / "venue-tls")


class TlsHubProcess(HubProcess):
    """``python -m hub`` serving its API over HTTPS (``[http] tls_cert_file``), optionally more [mqtt] keys."""

    def __init__(self, workdir: Path, mqtt_port: int, venue: Venue, mqtt_extra: str = "") -> None:
        super().__init__(workdir, mqtt_port)
        self.venue = venue
        cert, key = venue.server_cert("hub")
        text = self.config.read_text()
        text = text.replace(f"port = {self.http_port}\n",
                            f'port = {self.http_port}\ntls_cert_file = "{cert}"\ntls_key_file = "{key}"\n', 1)
        text = text.replace('prefix = "venue"\n', f'prefix = "venue"\n{mqtt_extra}', 1)
        self.config.write_text(text)
        self.base_url = f"https://127.0.0.1:{self.http_port}"
        self.api.close()
        self.api = httpx.Client(base_url=self.base_url + "/api/v1", timeout=10, verify=venue.context())

    def _healthy(self) -> bool:
        if not self.alive():
            raise AssertionError(f"hub exited:\n{self.logs()[-3000:]}")
        try:
            return self.api.get("/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False


@pytest.fixture
def tls_hub(broker: Mosquitto, tmp_path: Path, venue: Venue) -> Iterator[TlsHubProcess]:
    hub = TlsHubProcess(tmp_path / "hub", broker.port, venue)
    hub.start()
    try:
        hub.call("POST", "/users", json={"username": "hh-staff", "password": PASSWORD, "role": "security",
                                         "device_id": "hh-1"})
        yield hub
    finally:
        hub.stop()  # with the client's keep-alive connection still open: the hub stops anyway
        hub.api.close()


@pytest.fixture
def tls_show(tls_hub: TlsHubProcess) -> Show:
    return seed_show(tls_hub)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "handheld") as s:
        yield s


# -- a spoofed hub ---------------------------------------------------------------------------------

@dataclass
class Spoof:
    """What the fake hub answers to POST /checkins/online; it sees (and records) each request body."""

    mode: str = "unsigned"
    replay: str | None = None  # a real signed answer captured for another scan
    seen: list[dict[str, Any]] = field(default_factory=list)
    foreign: Signer = field(default_factory=lambda: Signer.generate(kid=1))  # same key id, not the hub's key

    def answer(self, body: dict[str, Any]) -> dict[str, Any]:
        self.seen.append(body)
        plain = {"event_id": body.get("event_id"), "reason": "admitted", "admitted": True, "text_en": "Welcome",
                 "text_zh": "欢迎", "ticket_id": None, "persons": 1, "next_at": None, "credit": False, "hint": []}
        if self.mode == "unsigned":
            return plain
        if self.mode == "garbage":
            return {**plain, "signed": base64.b64encode(b"not an envelope").decode()}
        if self.mode == "replay":
            return {**plain, "signed": self.replay}
        device = "hh-2" if self.mode == "other-device" else str(body.get("device_id") or "hh-1")
        forged = OnlineAnswer(event_id=str(body["event_id"]), device_id=device, reason=Reason.ADMITTED, persons=1,
                              at=1.9e9)
        return {**plain, "signed": seal_answer(forged, self.foreign)}


@pytest.fixture
def spoof_server(venue: Venue, request: pytest.FixtureRequest) -> Iterator[tuple[str, Spoof]]:
    """An HTTPS server with a certificate *from the venue CA* (the worst case: a stolen server key, or a
    handheld configured for plain http) that answers like the hub but without the hub's signing key."""
    spoof = Spoof()
    cert, key = venue.server_cert("spoof")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
            answer = {"token": "spoofed-bearer"} if self.path.endswith("/auth/login") else spoof.answer(body)
            data = json.dumps(answer).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert), str(key))
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", spoof
    finally:
        server.shutdown()
        server.server_close()


def handheld(url: str, show: Show, store: Store, keyring: Keyring, venue: Venue) -> tuple[Checker, OnlineChecker]:
    online = OnlineChecker(OnlineOptions(url=url, username="hh-staff", password=PASSWORD, device_id="hh-1",
                                         channel_id=show.channel_id, timeout=0.5, ca_file=str(venue.ca)))
    return Checker(Station("hh-1", show.group_id, show.channel_id), store, keyring, Screen(), online=online), online


# -- the real hub over HTTPS -------------------------------------------------------------------------

def test_the_hub_serves_https_only_and_signs_its_online_answers(tls_hub: TlsHubProcess, tls_show: Show) -> None:
    with pytest.raises(httpx.HTTPError):  # plain HTTP on the TLS port gets no API
        httpx.get(f"http://127.0.0.1:{tls_hub.http_port}/api/v1/health", timeout=2).raise_for_status()
    with pytest.raises(httpx.ConnectError):  # a client that does not trust the venue CA refuses the hub
        httpx.get(tls_hub.base_url + "/api/v1/health", timeout=2)
    ticket = sell(tls_hub, tls_show)
    login = tls_hub.api.post("/auth/login", json={"username": "hh-staff", "password": PASSWORD}).json()
    event_id = uuid.uuid4().hex
    r = tls_hub.api.post("/checkins/online", headers={"Authorization": f"Bearer {login['token']}"},
                         json={"token": ticket["token"], "channel_id": tls_show.channel_id, "event_id": event_id})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["admitted"] is True and body["reason"] == "admitted"  # the existing fields stay for other clients
    _kind, payload = open_envelope(base64.b64decode(body["signed"]), keyring_of(tls_hub), kinds={KIND_ONLINE_ANSWER})
    assert payload["event_id"] == event_id and payload["device_id"] == "hh-1"
    assert (payload["ticket_id"], payload["reason"], payload["persons"]) == (ticket["id"], "admitted", 1)


async def test_a_handheld_gate_agent_checks_online_over_tls(tls_hub: TlsHubProcess, tls_show: Show,
                                                            broker: Mosquitto, tmp_path: Path, venue: Venue) -> None:
    ticket = sell(tls_hub, tls_show)
    gate = GateProcess(tmp_path / "hh-1", "hh-1", broker.port, tls_hub.keys_file, tls_show.group_id,
                       tls_show.channel_id, env={"GATE__KIND": "handheld"}, extra_config=(
                           f'[online]\nenabled = true\nurl = "{tls_hub.base_url}"\nca_file = "{venue.ca}"\n'
                           f'username = "hh-staff"\npassword = "{PASSWORD}"\n'))
    gate.register(tls_hub, kind="handheld").start()
    try:
        first = gate.scan(ticket["token"])
        again = gate.scan(ticket["token"])
    finally:
        gate.stop_all()
    assert (first.reason, again.reason) == ("admitted", "already_used")
    at_hub = tls_hub.call("GET", "/checkins", params={"ticket_id": ticket["id"]})
    seen = {(e["source"], e["offline"], e["device_id"]) for e in at_hub}
    # answered online over TLS (a second scan may fall back offline if a loaded box misses the 500 ms budget)
    assert ("online", False, "hh-1") in seen and {d for *_, d in seen} == {"hh-1"}, seen
    assert "SECURITY" not in gate.logs()


async def test_a_handheld_refuses_a_hub_whose_certificate_is_not_from_the_venue_ca(
        tls_hub: TlsHubProcess, tls_show: Show, store: Store, tmp_path: Path) -> None:
    other = Venue(*make_ca(tmp_path / "other-venue", "another venue CA"), tmp_path / "other-venue")
    keyring = keyring_of(tls_hub)
    ticket = sell(tls_hub, tls_show)
    install_whitelist(tls_hub, tls_show, store, keyring)
    checker, online = handheld(tls_hub.base_url, tls_show, store, keyring, other)
    try:
        event = await checker.scan(ticket["token"], "qr")
    finally:
        await online.aclose()
    assert (event.reason, event.offline) == ("admitted", True)  # decided offline, on its own whitelist
    assert online.health() == "error" and online.last_problem == "ConnectError"
    assert tls_hub.call("GET", "/checkins", params={"ticket_id": ticket["id"]}) == []  # the hub never saw it


# -- a spoofed hub cannot admit anyone -------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["unsigned", "garbage", "foreign-key", "other-device", "replay"])
async def test_a_spoofed_hub_cannot_admit_a_refunded_ticket(
        mode: str, tls_hub: TlsHubProcess, tls_show: Show, store: Store, venue: Venue,
        spoof_server: tuple[str, Spoof]) -> None:
    url, spoof = spoof_server
    spoof.mode = mode
    keyring = keyring_of(tls_hub)
    refunded = sell(tls_hub, tls_show)
    tls_hub.call("POST", f"/tickets/{refunded['id']}/refund", json={"reason": "test"})
    if mode == "replay":  # a genuine signed "admitted" for another scan of this handheld
        good = sell(tls_hub, tls_show)
        login = tls_hub.api.post("/auth/login", json={"username": "hh-staff", "password": PASSWORD}).json()
        spoof.replay = tls_hub.api.post("/checkins/online", headers={"Authorization": f"Bearer {login['token']}"},
                                        json={"token": good["token"], "channel_id": tls_show.channel_id,
                                              "event_id": uuid.uuid4().hex}).json()["signed"]
    install_whitelist(tls_hub, tls_show, store, keyring)
    checker, online = handheld(url, tls_show, store, keyring, venue)
    try:
        event = await checker.scan(refunded["token"], "qr")
    finally:
        await online.aclose()
    assert spoof.seen, "the handheld asked the spoofed hub"
    assert (event.reason, event.offline) == ("revoked", True)
    assert online.health() == "error" and online.refused_answers == 1
    assert (online.last_problem or "").startswith("unsigned answer")


async def test_a_handheld_gate_agent_does_not_take_a_spoofed_answer(
        hub_process: HubProcess, broker: Mosquitto, tmp_path: Path, venue: Venue,
        spoof_server: tuple[str, Spoof]) -> None:
    url, spoof = spoof_server
    show = seed_show(hub_process)
    refunded = sell(hub_process, show)
    hub_process.call("POST", f"/tickets/{refunded['id']}/refund", json={"reason": "test"})
    gate = GateProcess(tmp_path / "hh-1", "hh-1", broker.port, hub_process.keys_file, show.group_id,
                       show.channel_id, env={"GATE__KIND": "handheld"}, extra_config=(
                           f'[online]\nenabled = true\nurl = "{url}"\nca_file = "{venue.ca}"\n'
                           f'username = "hh-staff"\npassword = "{PASSWORD}"\n'))
    gate.register(hub_process, kind="handheld").start()
    try:
        wait_for(lambda: "snapshot" in gate.logs() and "installed" in gate.logs(), timeout=10,
                 what="whitelist installed")
        decision = gate.scan(refunded["token"])

        def online_health() -> str | None:
            for device in hub_process.call("GET", "/devices"):
                if device["device_id"] == "hh-1" and device.get("health"):
                    return str(device["health"].get("online"))
            return None

        wait_for(lambda: online_health() == "error", timeout=10, what="health online: error at the hub")
    finally:
        gate.stop_all()
    assert spoof.seen and decision.reason == "revoked"
    assert "SECURITY: refused an online answer" in gate.logs()
    events = hub_process.call("GET", "/checkins", params={"ticket_id": refunded["id"]})
    assert [(e["reason"], e["offline"]) for e in events] in ([], [("revoked", True)])  # reported when sent


# -- the hub's own MQTT client over TLS ----------------------------------------------------------------------

def test_the_hub_bridge_connects_to_the_brokers_tls_listener_with_the_venue_ca(
        secure_broker: SecureMosquitto, tmp_path: Path) -> None:
    b = secure_broker
    hub = HubProcess(tmp_path / "hub", b.tls_port)
    hub.config.write_text(hub.config.read_text().replace('prefix = "venue"\n', (
        f'prefix = "venue"\ntls = true\nca_file = "{b.ca_cert}"\n'
        f'username = "{b.admin_user}"\npassword = "{b.admin_password}"\n'), 1))
    hub.start()
    try:
        wait_for(lambda: "MQTT bridge connected" in hub.logs(), timeout=15, what="bridge connected over TLS")
        assert "(TLS)" in hub.logs()
    finally:
        hub.stop()
        hub.api.close()
    # the same hub trusting another venue's CA refuses the broker (and keeps retrying, never connected)
    other_ca, _ = make_ca(tmp_path / "other", "another venue CA")
    hub2 = HubProcess(tmp_path / "hub2", b.tls_port)
    hub2.config.write_text(hub2.config.read_text().replace('prefix = "venue"\n', (
        f'prefix = "venue"\ntls = true\nca_file = "{other_ca}"\n'
        f'username = "{b.admin_user}"\npassword = "{b.admin_password}"\n'), 1))
    hub2.start()
    try:
        wait_for(lambda: "lost or refused" in hub2.logs(), timeout=15, what="TLS refusal")
        assert "MQTT bridge connected" not in hub2.logs()
        assert "certificate verify failed" in hub2.logs() or "CERTIFICATE" in hub2.logs().upper()
    finally:
        hub2.stop()
        hub2.api.close()
