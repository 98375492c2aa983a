"""A config-file gate (``hub_keys_file``, no enrolment) follows the hub's signed key list.

The hub publishes its key list retained on ``{prefix}/hub/keys`` (``protocol.provisioning``), signed by a
key the devices already trust for ``control`` (a rotation is signed by the old control key; after a
retirement by the new one). The gate applies a list only if it verifies and its version is newer than
the one it holds, stores it as ``hub_keys.learned.json`` in its data directory (with a digest of the
configured ``hub_keys_file``, so re-keying the gate by hand replaces what it learned), and trusts exactly
its keys from then on (in place: the checker, the whitelist sync and the emergency release see it at once).

A newer list the gate cannot verify means it has missed a rotation and its old key is retired: it can no
longer verify anything the hub sends. That is never silent: the list's refusal is logged at ERROR on
every delivery, the heartbeat's health says ``keys: stale`` (shown in the hub's device list), and it
stays so until ops give the gate the hub's current keys (``python -m hub export-keys`` into its
``hub_keys_file``) and restart it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from gate_agent.link import Link
from protocol.envelope import open_envelope, peek_version
from protocol.errors import MalformedError, SignatureError
from protocol.keys import Keyring
from protocol.provisioning import KIND_KEYS, KeysPayload, ProvisioningTopics

log = logging.getLogger(__name__)
LEARNED_FILE = "hub_keys.learned.json"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def learned_keys(data_dir: Path, hub_keys_file: Path) -> tuple[int, Keyring] | None:
    """The newest key list this gate learned from the hub, unless ``hub_keys_file`` changed since."""
    path = data_dir / LEARNED_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("base") != _digest(hub_keys_file):
            log.info("hub_keys_file %s changed since the hub key list was learned; using the file", hub_keys_file)
            return None
        return int(data["version"]), Keyring.from_b64(data["keys"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, MalformedError) as exc:
        log.error("the learned hub key list %s does not load (%s); using hub_keys_file", path, exc)
        return None


def _write(path: Path, data: dict[str, Any]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class HubKeysFollower:
    """Serves the hub keys topic on ``link`` for a gate configured with ``hub_keys_file``."""

    def __init__(self, link: Link, keyring: Keyring, data_dir: Path, hub_keys_file: Path, prefix: str) -> None:
        self.link, self.keyring, self.data_dir, self.hub_keys_file = link, keyring, data_dir, hub_keys_file
        self.topic = ProvisioningTopics(prefix).hub_keys()
        learned = learned_keys(data_dir, hub_keys_file)
        self.version = 0
        if learned is not None:
            self.version, ring = learned
            keyring.replace(ring)
            log.info("trusting the hub key list version %s learned from the hub: %s", self.version,
                     ring.to_purposes())

    def start(self) -> None:
        self.link.serve_keys(self.topic, self.on_keys)

    async def on_keys(self, data: bytes) -> None:
        if not data:
            return
        try:
            _kind, body = open_envelope(data, self.keyring, kinds={KIND_KEYS})
        except SignatureError as exc:
            version = peek_version(data)
            if version is not None and version <= self.version:
                log.debug("an older hub key list (version %s) does not verify: ignored", version)
                return
            self.link.suspect_stale(
                "keys", f"hub key list version {version} does not verify with the keys this gate trusts ({exc}): it "
                        f"missed a key rotation; give it the hub's current keys (python -m hub export-keys > "
                        f"{self.hub_keys_file}) and restart it",
                resolved=lambda: version is not None and self.version >= version)
            return
        payload = KeysPayload.model_validate(body)
        if payload.version <= self.version:
            log.debug("hub keys version %d already applied", payload.version)
            return
        ring = payload.keyring()
        _write(self.data_dir / LEARNED_FILE, {"version": payload.version, "keys": payload.model_dump()["keys"],
                                              "base": _digest(self.hub_keys_file)})
        self.version = payload.version
        self.keyring.replace(ring)
        log.warning("hub keys version %d trusted: %s", payload.version, ring.to_purposes())
        await self.link.keys_changed()
