"""Shared by the hub benchmarks: a private Mosquitto and a hub process with a show set up."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.broker import Mosquitto  # noqa: E402
from tests.support.processes import HubProcess  # noqa: E402
from tests.support.scenario import seed_show  # noqa: E402


class BenchHub:
    """Mosquitto plus ``python -m hub`` (logging warnings only) in ``workdir``."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.broker = Mosquitto(workdir / "mosquitto")
        self.hub: HubProcess | None = None
        self.base = ""

    def start(self) -> None:
        self.broker.start()
        self.hub = HubProcess(self.workdir / "hub", self.broker.port, log_level="WARNING")
        self.hub.start()
        self.base = self.hub.base_url + "/api/v1"

    def admin_headers(self) -> dict[str, str]:
        assert self.hub is not None
        return {"Authorization": str(self.hub.api.headers["Authorization"])}

    def setup_show(self, _headers: dict[str, str] | None = None) -> dict[str, int]:
        assert self.hub is not None
        show = seed_show(self.hub)
        return {"performance": show.performance_id, "adult": show.adult_type, "group": show.group_id,
                "channel": show.channel_id}

    def stop(self) -> None:
        if self.hub is not None:
            self.hub.stop()
            self.hub.api.close()
        self.broker.stop()
