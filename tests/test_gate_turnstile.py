"""The tripod turnstile driver on gpiozero's MockFactory: the test drives the sensor pins like a patron.

Relays are active-low (the default): a relay pin reads True while locked and False while released;
its history starts with the mock pin's level before the relay claimed it (low).
"""

from __future__ import annotations

import asyncio
import io
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory

from gate_agent import ConfigError
from gate_agent import sync as wl
from gate_agent.checkin import Checker, Station
from gate_agent.config import GateConfig, TurnstileConfig, load_config
from gate_agent.sim import sim_turnstile
from gate_agent.store import Store
from gate_agent.turnstile import GpioTurnstile
from protocol.keys import Keyring, Signer
from protocol.messages import CheckinEvent
from protocol.reasons import Reason
from protocol.whitelist import WhitelistEntry
from tests.gate_helpers import NOW, PERF, eventually, seal_snapshot, snapshot, token

CFG = TurnstileConfig(passage_timeout=0.3, pulse_ms=20, short_beep_ms=20, long_beep_ms=40, reject_lamp_ms=60)
ENTRY_RELAY, EXIT_RELAY, ENTRY_SENSOR, EXIT_SENSOR = 17, 18, 27, 22
GREEN, RED, BUZZER = 23, 24, 25
LOCKED, RELEASED, UNCLAIMED = True, False, False  # active-low relay pin levels


@pytest.fixture
def factory() -> Iterator[MockFactory]:
    f = MockFactory()
    yield f
    f.close()


@pytest.fixture
def store(tmp_path: Path, signer: Signer, keyring: Keyring) -> Iterator[Store]:
    with Store.open(tmp_path / "gate") as s:
        items = [WhitelistEntry(7, PERF, 3), WhitelistEntry(8, PERF, 3), WhitelistEntry(9, PERF, 3, persons=3)]
        kind, body = wl.verify(seal_snapshot(snapshot(items), signer), keyring)
        assert wl.apply(kind, body, s, 1) is wl.Outcome.INSTALLED
        yield s


@dataclass
class Rig:
    """A checker wired to a turnstile on mock pins, as ``run_gate`` wires them."""

    factory: MockFactory
    store: Store
    signer: Signer
    checker: Checker
    turnstile: GpioTurnstile
    out: io.StringIO
    woken: list[tuple[CheckinEvent, int]] = field(default_factory=list)  # (event, thread id) per on_event

    def history(self, pin: int) -> list[bool]:
        return [s.state for s in self.factory.pin(pin).states]

    def level(self, pin: int) -> bool:
        return bool(self.factory.pin(pin).state)

    def pass_through(self, pin: int = ENTRY_SENSOR) -> None:
        """One person turns the arms: the pulled-up sensor contact closes and opens again."""
        self.factory.pin(pin).drive_low()
        self.factory.pin(pin).drive_high()

    async def scan(self, ticket_id: int, persons: int = 1) -> CheckinEvent:
        return await self.checker.scan(token(self.signer, ticket_id, persons=persons))

    async def released(self, times: int = 1) -> None:
        await eventually(lambda: self.out.getvalue().count("released for") >= times, what="a release")

    def reasons(self) -> list[str]:
        return [e["reason"] for e in self.store.journal()]


@pytest.fixture
async def rig(factory: MockFactory, store: Store, signer: Signer, keyring: Keyring,
              request: pytest.FixtureRequest) -> AsyncIterator[Rig]:
    cfg: TurnstileConfig = getattr(request, "param", CFG)
    out = io.StringIO()
    turnstile = GpioTurnstile(cfg, device_id="gate-1", pin_factory=factory, out=out)
    woken: list[tuple[CheckinEvent, int]] = []
    checker = Checker(Station("gate-1", 1, 1), store, keyring, turnstile, clock=lambda: NOW,
                      on_event=lambda e: woken.append((e, threading.get_ident())))
    turnstile.bind(checker.report)
    async with turnstile:
        yield Rig(factory, store, signer, checker, turnstile, out, woken)


async def test_a_passage_confirms_the_admission(rig: Rig) -> None:
    admission = await rig.scan(7)
    await rig.released()
    await asyncio.to_thread(rig.pass_through)  # a sensor edge from another thread, as on real hardware
    await rig.turnstile.idle()
    assert admission.reason is Reason.ADMITTED
    assert rig.history(ENTRY_RELAY) == [UNCLAIMED, LOCKED, RELEASED, LOCKED]  # one pulse for one person
    assert rig.reasons() == ["admitted"]
    assert "passage 1/1" in rig.out.getvalue() and "locked" in rig.out.getvalue()
    assert (await rig.scan(7)).reason is Reason.ALREADY_USED
    assert rig.turnstile.health() == "ok"


async def test_nobody_passes_the_admission_is_annulled_and_the_ticket_given_back(rig: Rig) -> None:
    admission = await rig.scan(7)
    await rig.turnstile.idle()  # passage_timeout (0.3 s) runs out
    annulled = CheckinEvent.model_validate(rig.store.journal()[-1])
    assert annulled.reason is Reason.ANNULLED and annulled.annuls == admission.event_id
    assert (annulled.persons, annulled.direction, annulled.ticket_id, annulled.performance_id,
            annulled.ticket_type_id) == (1, "entry", 7, PERF, 3)
    assert annulled.seq == admission.seq + 1 and rig.store.outbox_count() == 2
    assert [e.reason for e, _ in rig.woken] == [Reason.ADMITTED, Reason.ANNULLED]  # the sender was woken
    assert rig.level(ENTRY_RELAY) is LOCKED
    assert "1 of 1 did not pass: annulled ticket 7" in rig.out.getvalue()
    again = await rig.scan(7)
    assert again.reason is Reason.ADMITTED


async def test_a_group_of_three_gets_three_pulses_and_three_passages(rig: Rig) -> None:
    admission = await rig.scan(9, persons=3)
    assert admission.persons == 3
    await rig.released()
    for n in (1, 2, 3):
        await eventually(lambda n=n: rig.history(ENTRY_RELAY)[1:].count(RELEASED) == n, what=f"pulse {n}")
        await asyncio.to_thread(rig.pass_through)
    await rig.turnstile.idle()
    assert rig.history(ENTRY_RELAY) == [UNCLAIMED, LOCKED] + [RELEASED, LOCKED] * 3
    assert rig.reasons() == ["admitted"]
    assert "passage 3/3" in rig.out.getvalue()


async def test_one_of_three_passes_the_two_annulled_may_still_come_in_then_the_ticket_is_used(rig: Rig) -> None:
    admission = await rig.scan(9, persons=3)
    await rig.released()
    await asyncio.to_thread(rig.pass_through)
    await rig.turnstile.idle()
    annulled = rig.store.journal()[-1]
    assert (annulled["reason"], annulled["persons"], annulled["annuls"]) == ("annulled", 2, admission.event_id)
    late = await rig.scan(9, persons=3)  # the two given back come in on the same entry: exactly 2
    assert (late.reason, late.persons, late.credit) == (Reason.ADMITTED, 2, True)
    await rig.released(2)
    for _ in range(2):
        await asyncio.to_thread(rig.pass_through)
    await rig.turnstile.idle()
    assert "passage 2/2" in rig.out.getvalue()
    assert (await rig.scan(9, persons=3)).reason is Reason.ALREADY_USED


@pytest.mark.parametrize("rig", [CFG.model_copy(update={"relay_mode": "hold"})], indirect=True)
async def test_hold_mode_keeps_the_relay_released_until_all_passed(rig: Rig) -> None:
    await rig.scan(9, persons=3)
    await rig.released()
    for _ in range(3):
        assert rig.level(ENTRY_RELAY) is RELEASED
        await asyncio.to_thread(rig.pass_through)
    await rig.turnstile.idle()
    assert rig.history(ENTRY_RELAY) == [UNCLAIMED, LOCKED, RELEASED, LOCKED]
    assert rig.reasons() == ["admitted"]


async def test_an_exit_passage_is_reported_as_an_exit_event(rig: Rig) -> None:
    assert rig.level(EXIT_RELAY) is RELEASED  # exit_free: people leave without asking
    thread = threading.Thread(target=rig.pass_through, args=(EXIT_SENSOR,))  # a plain foreign thread
    thread.start()
    thread.join()
    await eventually(lambda: rig.woken, what="the exit event")
    (event, thread_id), = rig.woken
    assert thread_id == threading.get_ident()  # journalled on the loop thread, not gpiozero's
    assert (event.reason, event.direction, event.ticket_id, event.persons) == (Reason.EXIT, "exit", None, 1)
    assert rig.reasons() == ["exit"] and rig.store.outbox_count() == 1


async def test_lamps_and_buzzer(rig: Rig) -> None:
    await rig.checker.scan("not a ticket")
    await eventually(lambda: rig.history(RED) == [False, True, False], what="the red lamp to go out")
    await eventually(lambda: rig.history(BUZZER) == [False, True, False], what="the long beep")
    assert rig.history(GREEN) == [False]
    await rig.scan(7)
    await rig.released()
    assert rig.level(GREEN) is True and rig.level(RED) is False
    await asyncio.to_thread(rig.pass_through)
    await rig.turnstile.idle()
    await eventually(lambda: rig.history(BUZZER) == [False, True, False, True, False], what="the short beep")
    assert rig.history(GREEN) == [False, True, False]


async def test_a_scan_during_a_release_is_queued_not_dropped(rig: Rig) -> None:
    first = await rig.scan(7)
    await rig.released()
    second = await rig.scan(8)  # decided and journalled at once; its release waits
    assert second.reason is Reason.ADMITTED and "queued" in rig.out.getvalue()
    await asyncio.to_thread(rig.pass_through)
    await rig.released(times=2)
    await asyncio.to_thread(rig.pass_through)
    await rig.turnstile.idle()
    assert rig.reasons() == ["admitted", "admitted"] and first.ticket_id == 7
    assert rig.out.getvalue().count("passage 1/1") == 2


async def test_entry_passages_while_locked_are_not_counted(rig: Rig) -> None:
    await asyncio.to_thread(rig.pass_through)  # a forced arm before anyone scanned
    await eventually(lambda: rig.turnstile.forced == 1, what="the forced passage")
    await rig.scan(7)
    await rig.turnstile.idle()
    assert rig.reasons() == ["admitted", "annulled"]


async def test_a_failed_relay_write_annuls_at_once_and_reports_error(rig: Rig) -> None:
    rig.turnstile.entry_relay.close()  # the driver now refuses every write
    admission = await rig.scan(7)
    await rig.turnstile.idle()
    assert rig.turnstile.health() == "error"
    assert rig.store.journal()[-1]["annuls"] == admission.event_id


async def test_stopping_mid_release_annuls_the_rest_and_locks(factory: MockFactory, store: Store,
                                                               signer: Signer, keyring: Keyring) -> None:
    turnstile = GpioTurnstile(CFG.model_copy(update={"passage_timeout": 30.0, "relay_mode": "hold"}),
                              device_id="gate-1", pin_factory=factory, out=io.StringIO())
    checker = Checker(Station("gate-1", 1, 1), store, keyring, turnstile, clock=lambda: NOW)
    turnstile.bind(checker.report)
    await turnstile.start()
    await checker.scan(token(signer, 7))
    await checker.scan(token(signer, 8))
    await eventually(lambda: factory.pin(ENTRY_RELAY).state is RELEASED, what="the release")
    await turnstile.aclose()
    journal = store.journal()
    assert [e["reason"] for e in journal] == ["admitted", "admitted", "annulled", "annulled"]
    assert [e["annuls"] for e in journal[2:]] == [journal[0]["event_id"], journal[1]["event_id"]]
    assert factory.pin(ENTRY_RELAY).state is LOCKED and factory.pin(EXIT_RELAY).state is LOCKED


async def test_the_simulated_patron_walks_through(store: Store, signer: Signer, keyring: Keyring,
                                                  tmp_path: Path) -> None:
    cfg = GateConfig(data_dir=tmp_path, turnstile=CFG.model_copy(update={"sim_patron_delay": 0.05}))
    out = io.StringIO()
    turnstile = sim_turnstile(cfg, asyncio.get_running_loop(), out=out)
    checker = Checker(Station("gate-1", 1, 1), store, keyring, turnstile, clock=lambda: NOW)
    turnstile.bind(checker.report)
    async with turnstile:
        await checker.scan(token(signer, 9, persons=3))
        await eventually(lambda: "passage 3/3" in out.getvalue(), what="the patron")
        await turnstile.idle()
    lines = [line.split("turnstile: ")[1] for line in out.getvalue().splitlines() if "⟳" in line]
    assert lines == ["released for 3", "passage 1/3", "passage 2/3", "passage 3/3", "locked"]
    assert [e["reason"] for e in store.journal()] == ["admitted"]


def test_config_turnstile_section(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg: Any = load_config(None, actuator={"kind": "turnstile"}, turnstile={"relay_mode": "hold"})
    assert cfg.actuator.kind == "turnstile" and cfg.turnstile.relay_mode == "hold"
    with pytest.raises(ConfigError, match="distinct"):
        load_config(None, turnstile={"red_lamp_pin": 23})
    with pytest.raises(ConfigError, match=r"turnstile\.relay_mod"):
        load_config(None, turnstile={"relay_mod": "hold"})
    monkeypatch.setenv("GATE__TURNSTILE__PASSAGE_TIMEOUT", "2.5")
    assert load_config(None).turnstile.passage_timeout == 2.5
