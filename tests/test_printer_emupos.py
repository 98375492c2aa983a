"""The printer agent printing through python-escpos ``Network`` to emupos, an emulated ESC/POS printer.

emupos (Python >= 3.13) runs from .venv313 in its own process; skipped with the install command if absent.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from printer_agent.app import run_printer
from printer_agent.config import load_config
from printer_agent.device import EscposDevice
from protocol.keys import Signer
from tests.gate_helpers import eventually, write_keys
from tests.printer_helpers import PRINTER, decode_qr, emupos_printer, hub_client, job, sealed
from tests.support.broker import Mosquitto


async def test_print_through_emupos_then_paper_out(broker: Mosquitto, tmp_path: Path, signer: Signer) -> None:
    with emupos_printer(tmp_path / "emupos") as emu:
        cfg = load_config(None, device_id=PRINTER, data_dir=tmp_path / "printer",
                          hub_keys_file=write_keys(tmp_path / "keys.json", signer), mqtt={"port": broker.port},
                          status_interval=0.5, poll_interval=0.3,
                          printer={"kind": "network", "host": "127.0.0.1", "port": emu.tcp, "timeout": 2})
        task = asyncio.create_task(run_printer(cfg, device=EscposDevice(cfg.printer)))
        try:
            async with hub_client(broker.port) as hub:
                # online (so subscribed): a job sent before the agent subscribed would be lost
                await eventually(lambda: any(s.state == "online" for s in hub.statuses), timeout=15,
                                 what="the agent online")
                first = job()
                await hub.send(sealed(first, signer))
                await eventually(lambda: hub.result(first.job_id), timeout=15, what="printed")
                assert [r.status for r in hub.result(first.job_id)] == ["printed"]
                await eventually(lambda: emu.receipts(), timeout=5, what="a receipt in emupos")
                _, text = await asyncio.to_thread(emu.api, "GET", "/devices/front/receipts/latest/text")
                assert f"[qr {first.token}]" in text.decode() and "2031-09-12 19:30" in text.decode()
                _, png = await asyncio.to_thread(emu.api, "GET", "/devices/front/receipts/latest/image")
                (tmp_path / "receipt.png").write_bytes(png)
                from PIL import Image

                assert decode_qr(Image.open(tmp_path / "receipt.png")) == [first.token]

                await asyncio.to_thread(emu.api, "PUT", "/devices/front/faults/paper-out")
                await eventually(lambda: any(s.printer and s.printer["paper"] == "out" for s in hub.statuses),
                                 timeout=10, what="heartbeat says paper out")
                second = job()
                await hub.send(sealed(second, signer))
                await eventually(lambda: hub.result(second.job_id), timeout=15, what="paper_out")
                assert [(r.status, r.reason) for r in hub.result(second.job_id)] == [("failed", "paper_out")]
                last = hub.statuses[-1]
                assert last.printer is not None and last.printer["paper"] == "out"
                assert last.health == {"printer": "error"}
                assert len(json.loads(emu.api("GET", "/devices/front/receipts")[1])) == 1
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
