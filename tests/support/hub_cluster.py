"""Several hub processes on one PostgreSQL database, behind HAProxy (deploy/haproxy/hub.cfg), as issue 13 runs
them: one PostgreSQL server and one Mosquitto the test starts, N ``python -m hub`` (each its own work
directory and MQTT client id ``hub-<i>``, all the same database and the same ticket and control keys), and
HAProxy on a free port with the repository's config as an operator installs it (servers and ports given
through its environment variables). Everything is always stopped; a hub may be kill -9'd and restarted.

Used by tests/test_hub_cluster.py and bench/failover.py.
"""

from __future__ import annotations

import csv
import getpass
import grp
import io
import itertools
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.broker import Mosquitto
from tests.support.net import free_ports, port_open, stop_process, wait_for
from tests.support.postgres import PostgresServer, server_bin
from tests.support.processes import ADMIN_PASSWORD, HubProcess

ROOT = Path(__file__).resolve().parents[2]
HAPROXY_CFG = ROOT / "deploy" / "haproxy" / "hub.cfg"
_databases = itertools.count(1)


def haproxy_binary() -> str | None:
    found = shutil.which("haproxy") or "/usr/sbin/haproxy"
    return found if os.path.exists(found) else None


class HAProxy:
    """``haproxy -db -f deploy/haproxy/hub.cfg`` in the foreground, its variables naming the test's hubs."""

    def __init__(self, workdir: Path, servers: list[str], port: int, stats_port: int) -> None:
        binary = haproxy_binary()
        if binary is None:
            raise RuntimeError("haproxy is not installed: run scripts/setup.sh (apt-get install haproxy)")
        self.binary = binary
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.port, self.stats_port = port, stats_port
        self.log = workdir / "haproxy.log"
        self.env = {**os.environ, "HUB_LB_BIND": f"127.0.0.1:{port}", "HUB_LB_STATS": f"127.0.0.1:{stats_port}"}
        if os.geteuid() != 0:  # HAProxy may only drop to another user as root: stay who we are
            self.env["HUB_LB_USER"] = getpass.getuser()
            self.env["HUB_LB_GROUP"] = grp.getgrgid(os.getgid()).gr_name
        for i, server in enumerate(servers, start=1):
            self.env[f"HUB_{i}"] = server
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        checked = subprocess.run([self.binary, "-c", "-f", str(HAPROXY_CFG)], env=self.env, capture_output=True,
                                 text=True, timeout=30)
        if checked.returncode != 0:
            raise RuntimeError(f"haproxy -c refused {HAPROXY_CFG}:\n{checked.stdout}\n{checked.stderr}")
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([self.binary, "-db", "-f", str(HAPROXY_CFG)], env=self.env,
                                         stdout=out, stderr=subprocess.STDOUT)
        wait_for(lambda: self._alive() and port_open(self.port), timeout=10, what=f"haproxy on port {self.port}")

    def _alive(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            raise AssertionError(f"haproxy exited:\n{self.logs()[-3000:]}")
        return True

    def logs(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def servers(self) -> dict[str, str]:
        """HAProxy's view of each hub: {"hub1": "UP", "hub2": "DOWN", ...} (the stats page's CSV)."""
        text = httpx.get(f"http://127.0.0.1:{self.stats_port}/stats;csv", timeout=2).text.lstrip("# ")
        return {row["svname"]: row["status"] for row in csv.DictReader(io.StringIO(text))
                if row["pxname"] == "hubs" and row["svname"] not in ("FRONTEND", "BACKEND")}

    def stop(self) -> None:
        stop_process(self.proc, signal.SIGTERM, timeout=5)
        self.proc = None


class HubCluster:
    """``size`` hubs on one PostgreSQL database behind HAProxy; ``hub_config``: TOML tables appended to every
    hub's config file (not ``[http]`` or ``[mqtt]``, which the file already has: use ``env`` for those,
    e.g. ``HUB__MQTT__SESSION_EXPIRY``)."""

    def __init__(self, workdir: Path, postgres: PostgresServer, size: int = 2, hub_config: str = "",
                 env: dict[str, str] | None = None, log_level: str = "INFO", broker: Any = None) -> None:
        self.workdir = workdir
        self.postgres = postgres
        self.database_url = postgres.create_database(f"cluster{next(_databases)}_{os.getpid()}")
        # a broker the caller runs (a central broker venues are bridged to), or one of its own
        self._own_broker = broker is None
        self.broker: Any = Mosquitto(workdir / "mosquitto") if broker is None else broker
        self.lb_port, self.stats_port, *http_ports = free_ports(2 + size)
        self.hubs: list[HubProcess] = []
        for i, port in enumerate(http_ports, start=1):
            hub = HubProcess(workdir / f"hub-{i}", self.broker.port, http_port=port, log_level=log_level,
                             env={"HUB__DATABASE_URL": self.database_url, "HUB__MQTT__CLIENT_ID": f"hub-{i}",
                                  # HAProxy runs here: its X-Forwarded-For names the client (deploy/haproxy)
                                  "HUB__HTTP__TRUSTED_PROXIES": '["127.0.0.1"]',
                                  # shared subscriptions: the broker drops a dead hub's share after 5 s, not an
                                  # hour (docs/scaling.md)
                                  "HUB__MQTT__SESSION_EXPIRY": "5", **(env or {})})
            if hub_config:
                with hub.config.open("a") as f:
                    f.write(hub_config)
            self.hubs.append(hub)
        self.haproxy = HAProxy(workdir / "haproxy", [f"127.0.0.1:{p}" for p in http_ports], self.lb_port,
                               self.stats_port)
        self.lb_url = f"http://127.0.0.1:{self.lb_port}"
        self.lb = httpx.Client(base_url=self.lb_url + "/api/v1", timeout=10)  # logged in as admin by start()

    # -- life cycle ------------------------------------------------------------------------------------------

    def start(self) -> None:
        if self._own_broker:
            self.broker.start()
        first = self.hubs[0]
        first.start()  # creates the schema, the bootstrap admin and the ticket and control keys
        for hub in self.hubs[1:]:
            self._share_keys(first, hub)
            hub.start()
        keys = {h.keys_file.read_text() for h in self.hubs}
        assert len(keys) == 1, f"the hubs publish different keys: {keys}"
        self.haproxy.start()
        wait_for(lambda: set(self.haproxy.servers().values()) == {"UP"}, timeout=10, what="every hub UP in haproxy")
        self.lb.headers["Authorization"] = f"Bearer {self.login('admin', ADMIN_PASSWORD)}"

    @staticmethod
    def _share_keys(source: HubProcess, target: HubProcess) -> None:
        """The first hub's ticket key and control key, copied (mode kept: 0600) to where ``target`` reads them
        (key_file = <workdir>/signing.key; control key: control.key next to it, hub/config.py)."""
        for name in ("signing.key", "control.key"):
            shutil.copy2(source.workdir / name, target.workdir / name)

    def stop(self) -> None:
        errors: list[BaseException] = []
        own = [self.broker.stop] if self._own_broker else []
        for stop in [self.haproxy.stop, *(h.stop for h in self.hubs), *own]:
            try:
                stop()
            except Exception as exc:  # stop everything, then report the first failure
                errors.append(exc)
        for hub in self.hubs:
            hub.api.close()
        self.lb.close()
        if errors:
            raise errors[0]

    def kill(self, i: int) -> float:
        """kill -9 hub ``i`` (0-based); returns time.monotonic() of the kill."""
        hub = self.hubs[i]
        assert hub.proc is not None, f"hub {i + 1} is not running"
        hub.proc.send_signal(signal.SIGKILL)
        at = time.monotonic()
        hub.proc.wait(10)
        hub.proc = None
        return at

    def restart(self, i: int) -> None:
        """Start hub ``i`` again (after kill or stop) and wait until HAProxy has it UP again."""
        hub = self.hubs[i]
        if hub.alive():
            hub.stop()
        hub.start()
        wait_for(lambda: self.haproxy.servers().get(f"hub{i + 1}") == "UP", timeout=10,
                 what=f"hub{i + 1} UP in haproxy")

    # -- reading the cluster ------------------------------------------------------------------------------------

    def health(self, i: int, timeout: float = 1.0) -> dict[str, Any] | None:
        """Hub ``i``'s own GET /api/v1/health (not through HAProxy), or None if it does not answer 200."""
        hub = self.hubs[i]
        if not hub.alive():
            return None
        try:
            r = httpx.get(hub.base_url + "/api/v1/health", timeout=timeout)
        except httpx.HTTPError:
            return None
        body: dict[str, Any] = r.json() if r.status_code == 200 else {}
        return body or None

    def leader(self) -> int | None:
        """The index of the hub whose /health says ``"cluster": {"leader": true}``; None if none does (an
        AssertionError if several do: two leaders at once is the bug this looks for)."""
        leaders = [i for i in range(len(self.hubs))
                   if ((self.health(i) or {}).get("cluster") or {}).get("leader") is True]
        assert len(leaders) <= 1, f"several hubs say they are leader: {[self.hubs[i].base_url for i in leaders]}"
        return leaders[0] if leaders else None

    def wait_leader(self, timeout: float = 10.0, other_than: int | None = None) -> int:
        """Wait until one hub (not ``other_than``) says it is leader; its index."""
        def elected() -> int | None:
            i = self.leader()
            return None if i is None or i == other_than else i + 1  # + 1: hub 0 is truthy too

        found = wait_for(elected, timeout=timeout, interval=0.05, what="an elected leader")
        assert found is not None
        return found - 1

    def login(self, username: str, password: str, via: str | None = None) -> str:
        """A login token from ``POST /auth/login`` through HAProxy (or at the base URL ``via``)."""
        r = httpx.post((via or self.lb_url) + "/api/v1/auth/login", json={"username": username, "password": password},
                       timeout=10)
        assert r.status_code == 200, f"login {username}: {r.status_code} {r.text}"
        return str(r.json()["token"])

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """An admin request through HAProxy; asserts a 2xx answer."""
        r = self.lb.request(method, path, **kwargs)
        assert r.status_code < 300, f"{method} {path}: {r.status_code} {r.text}"
        return r.json() if r.content else None

    def logs(self) -> str:
        """Every hub's log and HAProxy's, for a failure message."""
        parts = [f"--- hub-{i + 1} ---\n{h.logs()[-3000:]}" for i, h in enumerate(self.hubs)]
        return "\n".join([*parts, f"--- haproxy ---\n{self.haproxy.logs()[-2000:]}"])


def cluster_prerequisites() -> str | None:
    """Why a cluster cannot run here (a missing binary), or None."""
    if server_bin() is None:
        return "PostgreSQL server binaries (initdb, pg_ctl) not found under /usr/lib/postgresql/*/bin"
    if haproxy_binary() is None:
        return "haproxy is not installed (scripts/setup.sh installs it)"
    return None


def run_cluster(workdir: Path, postgres: PostgresServer, **kwargs: Any) -> Iterator[HubCluster]:
    """Start a :class:`HubCluster`, yield it, always stop it (for fixtures)."""
    cluster = HubCluster(workdir, postgres, **kwargs)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def hub_cluster(tmp_path: Path, postgres: PostgresServer) -> Iterator[HubCluster]:
    """Two hubs on the module's PostgreSQL behind HAProxy (tests/support/postgres.py ``postgres``)."""
    reason = cluster_prerequisites()
    if reason:
        pytest.skip(reason)
    yield from run_cluster(tmp_path, postgres)
