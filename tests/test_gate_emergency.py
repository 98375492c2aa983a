"""Emergency release at the gate: the state machine's rules, its latch in a real SQLite store, the turnstile
held open on gpiozero's MockFactory, the local fire input and button, and checking stopped."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

from gate_agent.actuator import LoggingActuator
from gate_agent.checkin import Checker, Station
from gate_agent.config import EmergencyConfig, GateConfig, TurnstileConfig
from gate_agent.emergency import EmergencyController, EmergencyRelease, Latched, Outcome
from gate_agent.emergency_io import LocalTriggers
from gate_agent.sim import BUTTON_FILE, FIRE_FILE, SimEmergencyPanel, sim_config
from gate_agent.store import Store
from gate_agent.turnstile import GpioTurnstile
from protocol.emergency import KIND_EMERGENCY, EmergencyCommand, EmergencyState
from protocol.envelope import seal
from protocol.keys import Keyring, Signer
from protocol.messages import KIND_ACK
from protocol.whitelist import WhitelistEntry
from tests.gate_helpers import NOW, eventually, rules, snapshot, token

ENTRY_RELAY, EXIT_RELAY, GREEN, RED, BUZZER = 17, 18, 23, 24, 25
FIRE, BUTTON = 5, 6
RELEASED, LOCKED = False, True  # the relay board is active-low


def cmd(seq: int, *, open_all: bool = False, groups: frozenset[int] = frozenset(),
        channels: frozenset[int] = frozenset(), at: float = NOW) -> EmergencyCommand:
    return EmergencyCommand(seq, at + seq, "security", "evacuation", open_all, groups, channels)


# ---- the state machine ------------------------------------------------------------------------


def test_command_opens_then_clear_closes() -> None:
    c = EmergencyController(group_id=1, channel_id=1)
    assert c.command(cmd(1, open_all=True), NOW) is Outcome.APPLIED
    assert (c.status.state, c.status.cause, c.status.seq) == ("open", "command", 1)
    assert c.command(cmd(2), NOW + 1) is Outcome.APPLIED
    assert (c.status.state, c.status.cause, c.status.seq) == ("normal", None, 2)


def test_replayed_and_older_commands_are_ignored() -> None:
    c = EmergencyController(1, 1)
    c.command(cmd(5, open_all=True), NOW)
    c.command(cmd(6), NOW)
    assert c.command(cmd(6), NOW) is Outcome.DUPLICATE  # the same again (the hub's resend)
    assert c.command(cmd(5, open_all=True), NOW) is Outcome.DUPLICATE  # an older one replayed
    assert (c.status.state, c.status.seq) == ("normal", 6)


def test_scope_by_group_and_channel() -> None:
    c = EmergencyController(group_id=1, channel_id=7)
    assert c.command(cmd(1, groups=frozenset({2})), NOW) is Outcome.APPLIED
    assert (c.status.state, c.status.seq) == ("normal", 1)  # another group's gates: applied, stays normal
    c.command(cmd(2, channels=frozenset({7})), NOW)
    assert c.is_open
    c.command(cmd(3, groups=frozenset({1})), NOW)
    assert c.is_open and c.status.cause == "command"
    c.command(cmd(4, groups=frozenset({2})), NOW)
    assert not c.is_open


def test_fire_latches_until_a_later_command_with_the_input_back_to_normal() -> None:
    c = EmergencyController(1, 1)
    assert c.fire(True, NOW)
    assert (c.status.state, c.status.cause) == ("open", "fire")
    assert not c.fire(False, NOW + 1)  # the contact closes again: still open (latched)
    assert c.is_open
    c.command(cmd(1, at=NOW - 100), NOW + 2)  # issued before the alarm: does not clear it
    assert c.is_open and c.status.seq == 1
    c.fire(True, NOW + 3)
    c.command(cmd(2, at=NOW + 10), NOW + 11)  # issued after, but the input is still in alarm
    assert (c.status.state, c.status.cause, c.status.seq) == ("open", "fire", 2)
    c.fire(False, NOW + 12)
    assert c.is_open
    c.command(cmd(3, at=NOW + 20), NOW + 21)  # issued after, input normal: cleared
    assert (c.status.state, c.status.cause, c.status.seq) == ("normal", None, 3)


def test_button_latches_and_a_later_command_clears_it() -> None:
    c = EmergencyController(1, 1)
    c.command(cmd(1, open_all=True), NOW)
    assert c.button(NOW + 5)
    assert c.status.cause == "button"  # a local cause is reported ahead of the hub's
    c.command(cmd(2, open_all=True, at=NOW + 10), NOW + 12)  # issued after the press: the latch goes, the hub's stays
    assert (c.status.state, c.status.cause) == ("open", "command")
    c.button(NOW + 20)
    c.command(cmd(3, at=NOW + 30), NOW + 31)
    assert not c.is_open


def test_fire_stays_the_cause_over_the_button() -> None:
    c = EmergencyController(1, 1)
    c.fire(True, NOW)
    c.button(NOW + 1)
    assert c.status.cause == "fire"


def test_latched_state_round_trips_through_the_store(tmp_path: Path) -> None:
    c = EmergencyController(1, 1)
    c.command(cmd(3, open_all=True), NOW)
    c.button(NOW + 1)
    with Store.open(tmp_path) as store:
        assert store.emergency() is None
        store.save_emergency(c.status.to_dict())
    with Store.open(tmp_path) as store:
        saved = store.emergency()
        assert saved is not None
        assert Latched.from_dict(saved) == c.status
        assert store.whitelist_seq == -1  # the meta key does not disturb the whitelist's


# ---- the release at work: store, turnstile, checker -----------------------------------------------


class Rig:
    def __init__(self, tmp_path: Path, signer: Signer, factory: MockFactory) -> None:
        self.factory = factory
        self.signer = signer
        self.store = Store.open(tmp_path)
        self.turnstile = GpioTurnstile(TurnstileConfig(passage_timeout=5, pulse_ms=20, short_beep_ms=10,
                                                       long_beep_ms=10, reject_lamp_ms=10),
                                       device_id="gate-e", pin_factory=factory, out=io.StringIO())
        self.release = EmergencyRelease("gate-e", 1, 1, self.store, Keyring.of(signer), self.turnstile)
        self.published: list[EmergencyState] = []
        self.connected = True

        async def publish() -> bool:
            if self.connected:
                self.published.append(self.release.state())
            return self.connected

        self.release.bind(publish)
        self.checker = Checker(Station("gate-e", 1, 1), self.store, Keyring.of(signer), self.turnstile,
                               emergency=self.release, clock=lambda: NOW)
        self.turnstile.bind(self.checker.report)

    def pin(self, n: int) -> bool:
        return bool(self.factory.pin(n).state)

    async def send(self, command: EmergencyCommand, signer: Signer | None = None, kind: str = KIND_EMERGENCY) -> None:
        await self.release.on_command(seal(kind, command.to_wire(), signer or self.signer))


@pytest.fixture
async def rig(tmp_path: Path, signer: Signer) -> AsyncIterator[Rig]:
    factory = MockFactory()
    r = Rig(tmp_path, signer, factory)
    await r.turnstile.start()
    try:
        yield r
    finally:
        await r.release.aclose()
        await r.turnstile.aclose()
        r.store.close()
        factory.close()


async def test_signed_open_holds_both_relays_blinks_and_confirms(rig: Rig) -> None:
    await rig.send(cmd(1, open_all=True))
    assert rig.pin(ENTRY_RELAY) is RELEASED and rig.pin(EXIT_RELAY) is RELEASED
    assert rig.published[-1].state == "open" and rig.published[-1].seq == 1
    assert rig.store.emergency() == {**rig.release.controller.status.to_dict()}  # saved
    await asyncio.sleep(0.3)
    assert len({s.state for s in rig.factory.pin(GREEN).states}) == 2  # blinking
    assert len({s.state for s in rig.factory.pin(RED).states}) == 2
    assert len({s.state for s in rig.factory.pin(BUZZER).states}) == 2
    await rig.send(cmd(2))
    assert rig.pin(ENTRY_RELAY) is LOCKED and rig.pin(EXIT_RELAY) is RELEASED  # exit_free stays
    assert not rig.pin(GREEN) and not rig.pin(RED) and not rig.pin(BUZZER)
    assert [(s.state, s.seq) for s in rig.published] == [("open", 1), ("normal", 2)]


async def test_forged_wrong_kind_and_replayed_commands_change_nothing(rig: Rig) -> None:
    await rig.send(cmd(1, open_all=True))
    await rig.send(cmd(2))
    rig.published.clear()
    await rig.send(cmd(3, open_all=True), signer=Signer.generate(kid=1))  # another key, same kid
    await rig.send(cmd(4, open_all=True), kind=KIND_ACK)  # a well-signed message of another kind
    await rig.release.on_command(b"not an envelope")
    assert rig.published == [] and not rig.release.is_open
    await rig.send(cmd(1, open_all=True))  # an older command replayed: ignored, the state confirmed again
    assert not rig.release.is_open and rig.pin(ENTRY_RELAY) is LOCKED
    assert [(s.state, s.seq) for s in rig.published] == [("normal", 2)]


async def test_scans_during_the_emergency_are_journalled_not_admitted(rig: Rig) -> None:
    await rig.send(cmd(1, open_all=True))
    event = await rig.checker.scan(token(rig.signer, 77), "serial")
    assert (event.reason, event.admitted, event.persons, event.ticket_id) == ("emergency", False, 0, 77)
    assert (await rig.checker.scan("garbage", "qr")).reason == "emergency"
    assert (await rig.checker.tap("ab" * 16)).reason == "emergency"
    assert [e["reason"] for e in rig.store.journal()] == ["emergency"] * 3
    assert len(rig.store.pending(10)) == 3  # on their way to the hub
    assert rig.pin(ENTRY_RELAY) is RELEASED and rig.pin(RED) in (True, False)


async def test_an_unfinished_release_is_annulled_when_the_emergency_starts(rig: Rig) -> None:
    snap = snapshot([WhitelistEntry(5, 42, 3, persons=2)])
    rig.store.install_snapshot(snap.group_id, snap.seq, rules(), snap.entries)
    assert (await rig.checker.scan(token(rig.signer, 5, persons=2))).admitted
    await eventually(lambda: rig.turnstile._releasing, what="the release")
    await rig.send(cmd(1, open_all=True))
    reasons = [(e["reason"], e.get("persons")) for e in rig.store.journal()]
    assert reasons == [("admitted", 2), ("annulled", 2)]
    assert rig.pin(ENTRY_RELAY) is RELEASED


async def test_restart_restores_open_before_the_turnstile_starts(tmp_path: Path, signer: Signer) -> None:
    with Store.open(tmp_path) as store:
        c = EmergencyController(1, 1)
        c.fire(True, NOW)
        store.save_emergency(c.status.to_dict())
        factory = MockFactory()
        turnstile = GpioTurnstile(TurnstileConfig(), device_id="gate-r", pin_factory=factory,
                                  out=io.StringIO())
        release = EmergencyRelease("gate-r", 1, 1, store, Keyring.of(signer), turnstile)
        assert release.is_open and release.state().cause == "fire"
        await release.restore()
        assert factory.pin(ENTRY_RELAY).state is RELEASED
        await turnstile.start()
        assert factory.pin(ENTRY_RELAY).state is RELEASED  # start does not lock it again
        await turnstile.aclose()
        factory.close()


async def test_logging_actuator_prints_a_bilingual_line(tmp_path: Path, signer: Signer,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    with Store.open(tmp_path) as store:
        release = EmergencyRelease("hh-1", 1, 1, store, Keyring.of(signer), LoggingActuator("hh-1"))
        await release.on_command(seal(KIND_EMERGENCY, cmd(1, open_all=True).to_wire(), signer))
        await release.on_command(seal(KIND_EMERGENCY, cmd(2).to_wire(), signer))
    out = capsys.readouterr().out
    assert "紧急疏散" in out and "EMERGENCY" in out and "emergency cleared" in out


# ---- local triggers on GPIO ---------------------------------------------------------------------


async def test_nc_fire_contact_opens_on_alarm_and_on_a_cut_wire(rig: Rig) -> None:
    cfg = EmergencyConfig(fire_input_pin=FIRE, button_pin=BUTTON, fire_contact="nc")
    triggers = LocalTriggers(cfg, rig.release.fire, rig.release.button, pin_factory=rig.factory)
    rig.factory.pin(FIRE).drive_low()  # the contact is closed: all is well
    triggers.start()
    assert not rig.release.is_open
    await asyncio.to_thread(rig.factory.pin(FIRE).drive_high)  # open circuit, from another thread
    await eventually(lambda: rig.pin(ENTRY_RELAY) is RELEASED, what="the gate to open")
    assert rig.release.state().cause == "fire"
    await eventually(lambda: rig.published and rig.published[-1].state == "open", what="the confirmation")
    rig.factory.pin(FIRE).drive_low()
    await asyncio.sleep(0.05)
    assert rig.release.is_open  # latched
    await rig.send(cmd(1, at=time.time() + 60))  # the hub clears, after the alarm, with the input normal
    assert not rig.release.is_open and rig.pin(ENTRY_RELAY) is LOCKED
    triggers.close()


async def test_nc_fire_input_in_alarm_at_start_opens_at_once(rig: Rig) -> None:
    triggers = LocalTriggers(EmergencyConfig(fire_input_pin=FIRE), rig.release.fire, rig.release.button,
                             pin_factory=rig.factory)
    triggers.start()  # nothing pulls the pin low: a cut wire
    assert rig.release.is_open and rig.release.state().cause == "fire"
    triggers.close()


async def test_no_contact_and_button(rig: Rig) -> None:
    cfg = EmergencyConfig(fire_input_pin=FIRE, button_pin=BUTTON, fire_contact="no")
    triggers = LocalTriggers(cfg, rig.release.fire, rig.release.button, pin_factory=rig.factory)
    triggers.start()
    assert not rig.release.is_open  # a normally-open contact reads open: normal
    pin = rig.factory.pin(BUTTON)
    await asyncio.to_thread(lambda: (pin.drive_low(), pin.drive_high()))
    await eventually(lambda: rig.release.is_open, what="the button to open the gate")
    assert rig.release.state().cause == "button"
    rig.factory.pin(FIRE).drive_low()  # the contact closes: alarm
    await eventually(lambda: rig.release.state().cause == "fire", what="the fire alarm")
    triggers.close()


async def test_broker_down_the_local_open_is_reported_on_reconnect(rig: Rig) -> None:
    rig.connected = False
    rig.release.button()
    await eventually(lambda: rig.pin(ENTRY_RELAY) is RELEASED, what="the local open")
    assert rig.published == []  # nothing went out; the link publishes state(), signed, when it connects
    state = rig.release.state()
    assert (state.state, state.cause, state.seq) == ("open", "button", 0)


async def test_sim_panel_drives_the_inputs_from_files(tmp_path: Path, rig: Rig) -> None:
    cfg = sim_config(GateConfig(data_dir=tmp_path / "sim")).emergency
    assert (cfg.fire_input_pin, cfg.button_pin) == (FIRE, BUTTON)
    triggers = LocalTriggers(cfg, rig.release.fire, rig.release.button, pin_factory=rig.factory)
    panel = SimEmergencyPanel(rig.factory, cfg, tmp_path / "sim", poll=0.02)
    panel.wire()
    triggers.start()
    assert not rig.release.is_open
    task = asyncio.create_task(panel.run())
    try:
        (tmp_path / "sim" / BUTTON_FILE).touch()
        await eventually(lambda: rig.release.is_open, what="the simulated button")
        assert not (tmp_path / "sim" / BUTTON_FILE).exists()
        (tmp_path / "sim" / FIRE_FILE).touch()
        await eventually(lambda: rig.release.state().cause == "fire", what="the simulated fire alarm")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        triggers.close()
