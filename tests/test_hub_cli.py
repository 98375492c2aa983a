"""The command line: validate the config, export keys, create a user, serve until "hub ready"."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx

from tests.support.broker import Mosquitto
from tests.support.net import free_port, wait_for


def hub_cli(config: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB__")}
    return subprocess.run([sys.executable, "-m", "hub", "--config", str(config), *args], input=stdin,
                          capture_output=True, text=True, timeout=30, env=env, check=False)


def write_config(tmp_path: Path, mqtt_port: int, http_port: int) -> Path:
    config = tmp_path / "hub.toml"
    config.write_text(f'database_url = "sqlite:///{tmp_path}/hub.db"\nkey_file = "{tmp_path}/signing.key"\n'
                      f'[http]\nport = {http_port}\n[mqtt]\nport = {mqtt_port}\n')
    return config


def test_validate_export_create_user_and_serve(tmp_path: Path, broker: Mosquitto) -> None:
    http_port = free_port()
    config = write_config(tmp_path, broker.port, http_port)
    assert hub_cli(config, "--validate-config").returncode == 0
    bad = tmp_path / "bad.toml"
    bad.write_text("[http]\nprt = 1\n")
    result = hub_cli(bad, "--validate-config")
    assert result.returncode == 2 and "http.prt" in result.stderr

    keys_file = tmp_path / "keys.json"
    assert hub_cli(config, "export-keys", "--out", str(keys_file)).returncode == 0
    exported = json.loads(keys_file.read_text())
    assert {k: v["purposes"] for k, v in exported.items()} == {"1": ["ticket"], "2": ["control"]}
    assert oct((tmp_path / "signing.key").stat().st_mode & 0o777) == "0o600"
    assert oct((tmp_path / "control.key").stat().st_mode & 0o777) == "0o600"
    seeds = [(tmp_path / f).read_text().split(":", 1)[1].strip() for f in ("signing.key", "control.key")]
    assert hub_cli(config, "create-user", "ada", "--role", "admin", stdin="a-long-password\n").returncode == 0

    proc = subprocess.Popen([sys.executable, "-m", "hub", "--config", str(config)], stderr=subprocess.PIPE,
                            text=True)
    try:
        stderr = proc.stderr
        assert stderr is not None
        lines: list[str] = []

        def ready() -> bool:
            lines.append(stderr.readline())
            return "hub ready" in lines[-1]

        wait_for(ready, timeout=20, what="hub ready")
        r = httpx.post(f"http://127.0.0.1:{http_port}/api/v1/auth/login",
                       json={"username": "ada", "password": "a-long-password"})
        assert r.status_code == 200 and r.json()["role"] == "admin"
        assert "a-long-password" not in "".join(lines)
        assert not any(seed in "".join(lines) for seed in seeds)  # key seeds are never logged
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stderr:
            proc.stderr.close()
