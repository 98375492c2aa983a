"""The printer agent against a real Mosquitto, the test playing the hub with a real Signer."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from printer_agent.app import run_printer
from printer_agent.config import PrinterAgentConfig, load_config
from printer_agent.device import EscposDevice
from printer_agent.service import PrintService
from printer_agent.store import JobStore
from printer_agent.template import TEMPLATE_DIR
from protocol.keys import Keyring, Signer
from tests.gate_helpers import eventually, write_keys
from tests.printer_helpers import PRINTER, hub_client, job, sealed
from tests.support.broker import Mosquitto


def config(tmp_path: Path, port: int, signer: Signer) -> PrinterAgentConfig:
    keys = write_keys(tmp_path / "keys.json", signer)
    return load_config(None, device_id=PRINTER, data_dir=tmp_path / "printer", hub_keys_file=keys,
                       mqtt={"port": port}, status_interval=0.5, poll_interval=0.3)


@asynccontextmanager
async def agent(cfg: PrinterAgentConfig, device: EscposDevice) -> AsyncIterator[None]:
    task = asyncio.create_task(run_printer(cfg, device=device))
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_print_duplicate_forged_expired_and_unknown(broker: Mosquitto, tmp_path: Path, signer: Signer) -> None:
    cfg = config(tmp_path, broker.port, signer)
    dev = EscposDevice(cfg.printer)  # kind "dummy": keeps what it printed
    async with hub_client(broker.port) as hub, agent(cfg, dev):
        await eventually(lambda: any(s.kind == "printer" and s.state == "online" and s.printer
                                     for s in hub.statuses), what="online status")
        good = job()
        await hub.send(sealed(good, signer))
        await eventually(lambda: hub.result(good.job_id), what="printed result")
        assert [r.status for r in hub.result(good.job_id)] == ["printed"]
        assert len(dev.printed) == 1 and good.token.encode() in dev.printed[0]

        await hub.send(sealed(good, signer))                                      # same job id again
        await eventually(lambda: len(hub.result(good.job_id)) == 2, what="duplicate")
        assert hub.result(good.job_id)[1].status == "duplicate" and len(dev.printed) == 1

        forged, other, expired, unknown, badfield = (job(), job(printer_id="printer-2"), job(ttl=-1),
                                                     job(template="nope"), job(fields={"holder": "1"}))
        await hub.send(sealed(forged, Signer.generate(kid=1)))                   # wrong key
        await hub.send(sealed(other, signer))                                     # for another printer
        await hub.send(sealed(expired, signer))
        await hub.send(sealed(unknown, signer))
        await hub.send(sealed(badfield, signer))
        await hub.send(b"garbage")
        expect = {forged.job_id: "bad_signature", other.job_id: "wrong_printer", expired.job_id: "expired",
                  unknown.job_id: "unknown_template", badfield.job_id: "bad_template"}
        await eventually(lambda: all(hub.result(j) for j in expect), what="refusals")
        for job_id, reason in expect.items():
            assert [(r.status, r.reason) for r in hub.result(job_id)] == [("refused", reason)]
        assert len(dev.printed) == 1
        # a forged job does not burn its job id: the real one still prints
        await hub.send(sealed(forged, signer))
        await eventually(lambda: len(hub.result(forged.job_id)) == 2, what="real job after forgery")
        assert hub.result(forged.job_id)[1].status == "printed" and len(dev.printed) == 2

        # the status with the emptied queue and the job's result are published at about the same time
        await eventually(lambda: (p := hub.statuses[-1].printer) is not None and p["queue"] == 0, what="queue 0")
        status = hub.statuses[-1]
        assert status.printer is not None and status.printer["paper"] == "ok" and status.printer["queue"] == 0
        assert status.health == {"printer": "ok"}


async def test_queued_job_survives_restart_and_prints_once(broker: Mosquitto, tmp_path: Path,
                                                           signer: Signer) -> None:
    cfg = config(tmp_path, broker.port, signer)
    queued, interrupted = job(), job()
    # a previous run accepted two jobs and died: one still queued, one in the middle of printing
    with JobStore.open(cfg.data_dir, PRINTER) as store:
        svc = PrintService(PRINTER, store, EscposDevice(cfg.printer), Keyring.of(signer), template_dir=TEMPLATE_DIR)
        assert svc.accept(sealed(interrupted, signer)) is None
        store.mark_printing(interrupted.job_id)
        assert svc.accept(sealed(queued, signer)) is None
        assert store.queue_depth() == 2
    dev = EscposDevice(cfg.printer)
    async with hub_client(broker.port) as hub, agent(cfg, dev):
        await eventually(lambda: hub.result(queued.job_id) and hub.result(interrupted.job_id), what="results")
        await hub.send(sealed(queued, signer))
        await eventually(lambda: len(hub.result(queued.job_id)) == 2, what="duplicate")
    assert [r.status for r in hub.result(queued.job_id)] == ["printed", "duplicate"]
    assert [(r.status, r.reason) for r in hub.result(interrupted.job_id)] == [("failed", "interrupted")]
    assert len(dev.printed) == 1 and queued.token.encode() in dev.printed[0]
    # and again after a second restart: nothing is printed or reported twice
    dev2 = EscposDevice(cfg.printer)
    restarted = time.time()
    async with hub_client(broker.port) as hub2, agent(cfg, dev2):
        # its fresh online status (published once subscribed; not the retained one from before): a job sent
        # before the agent subscribed would be lost (no persistent session) and the test would wait in vain
        await eventually(lambda: any(s.state == "online" and s.at >= restarted for s in hub2.statuses),
                         what="the restarted agent online")
        await hub2.send(sealed(queued, signer))
        await eventually(lambda: hub2.result(queued.job_id), what="duplicate after restart")
        assert [r.status for r in hub2.result(queued.job_id)] == ["duplicate"]
    assert dev2.printed == []


def test_config_file_and_validate(tmp_path: Path) -> None:
    path = tmp_path / "printer.toml"
    path.write_text('device_id = "printer-7"\n[printer]\nkind = "network"\nhost = "10.0.0.9"\ncjk = "raster"\n')
    cfg = load_config(path)
    assert (cfg.device_id, cfg.printer.kind, cfg.printer.host, cfg.printer.cjk) == ("printer-7", "network",
                                                                                    "10.0.0.9", "raster")
    path.write_text('[printer]\nkind = "laser"\n')
    try:
        load_config(path)
    except ValueError as exc:
        assert "printer.kind" in str(exc)
    else:
        raise AssertionError("bad kind accepted")
