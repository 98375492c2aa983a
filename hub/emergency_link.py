"""The MQTT side of emergency release, run by the bridge.

* Device reports (``{prefix}/device/+/emergency``, :class:`~protocol.emergency.EmergencyState`) are
  queued and stored by one writer task, many reports per transaction (200 gates confirming at once
  cost one commit, not 200).
* On every (re)connect the current command is re-published retained, which repairs a broker that lost
  its retained store.
* While an online gate has not confirmed the current command, it is re-published every
  ``resend_interval`` seconds (gates ignore a seq they have applied), naming the missing gates. With several hubs
  on one database only the elected one does this (:mod:`hub.cluster`), and a newly elected hub checks at once.
* With ``spread_local_fire``, a device newly reporting its local fire alarm opens every gate, if it is
  registered with a fire input and its report is signed with its key (:mod:`hub.device_trust`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from pydantic import ValidationError

from hub.config import EmergencySettings
from hub.services import emergency
from hub.services.context import HubContext, Outgoing
from protocol.emergency import EmergencyState
from protocol.errors import MalformedError

if TYPE_CHECKING:
    from hub.device_trust import DeviceTrust

log = logging.getLogger(__name__)
MAX_STATES_PER_TRANSACTION = 2000


def parse_state(device_id: str, data: bytes) -> EmergencyState:
    """Parse one report; raise MalformedError (also when the payload names another device)."""
    try:
        state = EmergencyState.model_validate_json(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "payload"
        raise MalformedError(f"EmergencyState: {where}: {first.get('msg')}") from exc
    if state.device_id != device_id:
        raise MalformedError(f"payload device id {state.device_id!r} differs from the topic's {device_id!r}")
    return state


class EmergencyLink:
    def __init__(self, ctx: HubContext, settings: EmergencySettings, send: Callable[[Outgoing], None],
                 trust: DeviceTrust | None = None) -> None:
        self.ctx = ctx
        self.settings = settings
        self._send = send  # into the bridge's outbox (publishes only while connected)
        self.trust = trust  # None: reports are believed as they come (unit tests of the link alone)
        self._states: asyncio.Queue[EmergencyState] = asyncio.Queue()
        self._fire_inputs: set[str] = set()  # devices whose verified fire reports may open every gate
        self._last_resend = 0.0
        # several hubs on one database (hub/cluster.py): only the elected one re-publishes; kick() when elected
        self.elected: Callable[[], bool] = lambda: True
        self._kick = asyncio.Event()

    def kick(self) -> None:
        """Check for unconfirmed gates now (this hub was just elected: the one before may have died mid-way)."""
        self._last_resend = 0.0
        self._kick.set()

    async def on_state(self, device_id: str, data: bytes) -> None:
        if not data:
            return  # a cleared retained report
        if self.trust is None:
            state, fire_input = parse_state(device_id, data), True
        else:
            state, fire_input = await self.trust.emergency_state(device_id, data)
        (self._fire_inputs.add if fire_input else self._fire_inputs.discard)(device_id)
        self._states.put_nowait(state)

    async def announce(self) -> None:
        """(Re)publish the current command, retained; called on every connect."""
        envelope = await asyncio.to_thread(emergency.current_envelope, self.ctx)
        if envelope is not None:
            self._send((self.ctx.topics.emergency_command(), envelope))
            log.info("re-published the current emergency command after connecting")

    async def run(self, connected: asyncio.Event) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._writer())
            tg.create_task(self._resend_loop(connected))

    async def _writer(self) -> None:
        while True:
            states = [await self._states.get()]
            while len(states) < MAX_STATES_PER_TRANSACTION and not self._states.empty():
                states.append(self._states.get_nowait())
            try:
                fires = await asyncio.to_thread(emergency.store_states, self.ctx, states)
            except Exception:
                log.exception("storing %s emergency state report(s) failed", len(states))
                continue
            for device_id in fires:
                log.warning("device %s reports its local fire alarm: it stands open", device_id)
                if self.settings.spread_local_fire and device_id in self._fire_inputs:
                    try:
                        cmd = await asyncio.to_thread(emergency.spread_fire, self.ctx, device_id)
                    except Exception:
                        log.exception("opening every gate on the fire alarm of %s failed", device_id)
                        continue
                    if cmd is not None:
                        log.warning("fire alarm of %s spread: every gate opened (seq %s)", device_id, cmd.seq)

    async def _resend_loop(self, connected: asyncio.Event) -> None:
        interval = self.settings.resend_interval
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), interval)
            self._kick.clear()
            if not connected.is_set() or not self.elected():
                continue
            try:
                await self._resend_once(interval)
            except Exception:
                log.exception("emergency resend check failed; will retry")

    async def _resend_once(self, interval: float) -> None:
        cmd, missing = await asyncio.to_thread(emergency.unconfirmed_gates, self.ctx)
        now = self.ctx.clock()
        if not missing or now - max(cmd.issued_at, self._last_resend) < interval * 0.9:
            return
        envelope = await asyncio.to_thread(emergency.current_envelope, self.ctx)
        if envelope is None:
            return
        self._last_resend = now
        self._send((self.ctx.topics.emergency_command(), envelope))
        log.warning("emergency command %s not confirmed by %s online gate(s) after %.1f s: %s%s; re-published",
                    cmd.seq, len(missing), now - cmd.issued_at, ", ".join(missing[:20]),
                    " ..." if len(missing) > 20 else "")
