"""The device side of provisioning (hub config, remote commands, hub key rotation): moved to the device runtime.

:class:`confkit.device_agent.DeviceAgent` serves every device kind through a small
:class:`~confkit.device_agent.DeviceHost` interface; the gate's host and its identity/config helpers
(``with_identity``, ``stored_config``, ``with_hub_config``) are in :mod:`gate_agent.enrolled`. The generic
names are re-exported here for existing imports; :mod:`provisioning` never imports a daemon.
"""

from __future__ import annotations

from confkit.device_agent import (
    EXIT_RESTART,
    HUB_OWNED,
    META_BIRTH,
    META_COMMANDS,
    META_CONFIG,
    META_CONFIG_VERSION,
    DeviceAgent,
    DeviceHost,
    RecentErrors,
)

__all__ = ["EXIT_RESTART", "HUB_OWNED", "META_BIRTH", "META_COMMANDS", "META_CONFIG", "META_CONFIG_VERSION",
           "DeviceAgent", "DeviceHost", "RecentErrors"]
