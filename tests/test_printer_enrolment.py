"""A printer enrols like any device (issue 11): ``python -m printer_agent --bootstrap`` against a real hub.

The broker is the conftest's anonymous one: the claim login is not checked here (the broker ACLs are
:mod:`tests.test_broker_security`'s); the hub's approval, the device id, the config ack and the
commands go through the real hub and :class:`confkit.device_agent.DeviceAgent` (:mod:`printer_agent.enrolled`).
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from confkit.enrolment import Identity, device_key
from printer_agent.config import load_config
from printer_agent.device import EscposDevice
from printer_agent.enrolled import printer_device_agent
from printer_agent.link import LinkOptions, PrinterLink
from printer_agent.service import PrintService
from printer_agent.store import JobStore
from printer_agent.template import TEMPLATE_DIR
from protocol.envelope import seal
from protocol.keys import Signer
from protocol.provisioning import KIND_KEYS, KeysPayload, key_fingerprint
from tests.printer_helpers import job, sealed
from tests.support.broker import Mosquitto
from tests.support.net import wait_for
from tests.support.processes import HubProcess, _Process


class PrinterProcess(_Process):
    name = "printer"


def test_a_printer_enrols_from_a_bootstrap_comes_online_acks_its_config_and_runs_commands(
        tmp_path: Path, broker: Mosquitto, hub_process: HubProcess) -> None:
    keys = json.loads(hub_process.keys_file.read_text())
    hub_keys = ", ".join(f'"{k}" = {{ key = "{v["key"]}", purposes = {json.dumps(v["purposes"])} }}'
                         for k, v in keys.items())
    bootstrap = tmp_path / "bootstrap.toml"
    bootstrap.write_text(
        f'serial = "PR-0300"\nkind = "printer"\nhardware_model = "tm-t20"\n'
        f'identity_dir = "{tmp_path / "identity"}"\nresend_s = 0.5\nhub_keys = {{ {hub_keys} }}\n'
        f'[broker]\nhost = "127.0.0.1"\nport = {broker.port}\nusername = "claim"\npassword = "claim"\n')
    config = tmp_path / "printer.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\nstatus_interval = 0.5\n[printer]\nkind = "dummy"\n')
    printer = PrinterProcess(tmp_path / "proc")
    printer._spawn(["-m", "printer_agent", "--config", str(config), "--bootstrap", str(bootstrap)])
    try:
        def requested() -> dict[str, Any] | None:
            assert printer.alive(), printer.logs()[-2000:]
            requests = hub_process.call("GET", "/provisioning/requests")
            return dict(requests[0]) if requests else None

        request = wait_for(requested, timeout=10, what="the printer's enrolment request at the hub")
        assert (request["serial"], request["kind"]) == ("PR-0300", "printer")
        hub_process.call("POST", "/provisioning/requests/PR-0300/approve", json={
            "fingerprint": key_fingerprint(request["public_key"]), "device_id": "printer-30", "site": "main",
            "kind": "printer"})

        def device() -> dict[str, Any] | None:
            assert printer.alive(), printer.logs()[-2000:]
            for d in hub_process.call("GET", "/provisioning/devices"):
                if d["device_id"] == "printer-30" and d["online"] and d["birth"] == 1 and not d["config_drift"]:
                    return dict(d)
            return None

        seen = wait_for(device, timeout=10, what="printer-30 online, config acked")
        assert (seen["kind"], seen["serial"]) == ("printer", "PR-0300")

        def run(name: str) -> dict[str, Any]:
            issued = hub_process.call("POST", "/provisioning/devices/printer-30/command", json={"name": name})
            return dict(wait_for(
                lambda: (c := hub_process.call("GET", f"/provisioning/commands/{issued['command_id']}"))["state"]
                != "pending" and c, timeout=5, what=f"the {name} result"))

        diagnostics = run("diagnostics")
        assert diagnostics["state"] == "ok", diagnostics
        assert diagnostics["result"]["queue"] == 0 and diagnostics["result"]["birth"] == 1
        resync = run("resync_whitelist")
        assert resync["state"] == "ok" and "nothing to resync" in resync["result"]["note"]
        assert run("restart")["state"] == "ok"
        assert printer.proc is not None
        assert printer.proc.wait(timeout=5) == 75, printer.logs()[-2000:]
    finally:
        printer.stop()


async def test_a_hub_key_update_replaces_the_keyring_the_print_jobs_are_verified_with(tmp_path: Path) -> None:
    old, new = Signer.generate(1), Signer.generate(2)
    identity_dir = tmp_path / "identity"
    device_key(identity_dir)
    Identity(device_id="printer-31", serial="PR-0301", kind="printer", broker_host="127.0.0.1", broker_port=1883,
             username="printer-31", password=SecretStr("pw"),
             hub_keys={str(old.kid): old.public_key_b64}).save(identity_dir)
    cfg = load_config(None, device_id="printer-31", data_dir=tmp_path / "data")
    keyring = Identity.load(identity_dir).keyring()
    with JobStore.open(cfg.data_dir, cfg.device_id) as store:
        service = PrintService(cfg.device_id, store, EscposDevice(cfg.printer), keyring, template_dir=TEMPLATE_DIR)
        link = PrinterLink(LinkOptions.from_config(cfg.device_id, cfg.mqtt, cfg.status_interval), service)
        agent = printer_device_agent(identity_dir, link, store, keyring, cfg, asyncio.Event())
        assert agent.start() == 1 and link.birth == 1 and store.get_meta("prov_birth") == "1"
        try:
            refused = service.accept(sealed(job(printer_id="printer-31"), new))
            assert refused is not None and refused.reason == "bad_signature"
            body = KeysPayload(version=1, keys={"1": old.public_key_b64, "2": new.public_key_b64},
                               issued_at=time.time())
            await agent.on_keys(seal(KIND_KEYS, body.model_dump(mode="json"), old))
            assert service.keyring is keyring and keyring.kids() == [1, 2]
            assert service.accept(sealed(job(printer_id="printer-31"), new)) is None  # queued: it verifies now
        finally:
            agent.close()
