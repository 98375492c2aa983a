"""The device register, fed by retained status messages."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from hub.services.context import HubContext, row_dict
from hub.tables import devices, provisioned_devices
from protocol.messages import GateStatus

log = logging.getLogger(__name__)


def record_status(ctx: HubContext, status: GateStatus) -> None:
    values: dict[str, Any] = {"kind": status.kind, "state": status.state, "last_seen": max(status.at, 0.0),
              "group_id": status.group_id, "channel_id": status.channel_id,
              "whitelist_seq": status.whitelist_seq, "outbox": status.outbox, "version": status.version,
              "health": status.health}
    values.update(heard_at=ctx.clock(), interval=status.interval, config_version=status.config_version,
                  set_aside=status.set_aside)  # None: nothing set aside (or a device too old to say)
    if status.printer is not None:
        values["printer"] = status.printer
    if status.state == "offline":  # a Last Will knows only the state; keep what the device said before
        values = {"state": "offline", "last_seen": values["last_seen"]}
    with ctx.db.write() as conn:
        old = conn.execute(select(devices.c.birth, devices.c.reboots, devices.c.state)
                           .where(devices.c.device_id == status.device_id)).first()
        if old is None or old.state != status.state:
            values["state_since"] = ctx.clock()  # online / offline since
        if status.birth is not None and status.state == "online":
            values["birth"] = status.birth
            if old is not None and old.birth is not None and old.birth != status.birth:  # same birth: a reconnect
                values["reboots"] = (old.reboots or 0) + 1
                log.info("device %s restarted (birth %s -> %s)", status.device_id, old.birth, status.birth)
        if old is not None:
            conn.execute(update(devices).where(devices.c.device_id == status.device_id).values(**values))
            return
        try:
            with conn.begin_nested():
                conn.execute(insert(devices).values(device_id=status.device_id, **{"kind": status.kind, **values}))
        except IntegrityError:  # another hub stored this device's first heartbeat at the same moment
            conn.execute(update(devices).where(devices.c.device_id == status.device_id).values(**values))


def list_devices(ctx: HubContext) -> list[dict[str, Any]]:
    """Every device heard of; ``registered``: in the registry and active (else its group and channel are
    only what it claims, and the hub refuses its events)."""
    with ctx.db.read() as conn:
        active = set(conn.execute(select(provisioned_devices.c.device_id)
                                  .where(provisioned_devices.c.status == "active")).scalars())
        return [{**row_dict(r), "registered": r.device_id in active}
                for r in conn.execute(select(devices).order_by(devices.c.device_id))]
