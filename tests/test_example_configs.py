"""The example configuration files in docs/ stay valid, and a bad key is named in the error."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "docs" / "examples"


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=60, cwd=cwd)


def test_example_hub_config_validates(tmp_path: Path) -> None:
    out = run("-m", "hub", "--config", str(EXAMPLES / "hub.toml"), "--validate-config", cwd=tmp_path)
    assert out.returncode == 0, out.stderr


def test_example_gate_config_validates(tmp_path: Path) -> None:
    (tmp_path / "var" / "hub").mkdir(parents=True)
    (tmp_path / "var" / "hub" / "keys.json").write_text(json.dumps({"1": "A" * 43 + "="}))
    out = run("-m", "gate_agent", "--config", str(EXAMPLES / "gate.toml"), "--validate-config", cwd=tmp_path)
    assert out.returncode == 0, out.stderr + out.stdout


def test_a_misspelt_key_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "gate.toml"
    bad.write_text((EXAMPLES / "gate.toml").read_text().replace("status_interval", "status_intervall"))
    out = run("-m", "gate_agent", "--config", str(bad), "--validate-config", cwd=tmp_path)
    assert out.returncode == 2 and "status_intervall" in out.stderr + out.stdout
    bad_hub = tmp_path / "hub.toml"
    bad_hub.write_text((EXAMPLES / "hub.toml").read_text().replace("[mqtt]\nhost", "[mqtt]\nhots"))
    out = run("-m", "hub", "--config", str(bad_hub), "--validate-config", cwd=tmp_path)
    assert out.returncode == 2 and "hots" in out.stderr + out.stdout
