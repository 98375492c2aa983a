"""RFID at the gate: real nfcpy over its udp driver reading a Type 3 tag emulated in another process.

The card decisions themselves (wrong channel, expired, revoked, per-day count) go through the real
Checker and SQLite store; only the tap is made directly there, without a reader.
"""

from __future__ import annotations

import asyncio
import io
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import ndef
import nfc
import pytest

from gate_agent.actuator import LoggingActuator
from gate_agent.checkin import Checker, Station
from gate_agent.config import RfidConfig
from gate_agent.rfid import NfcpyOptions, NfcpyReader, RfidRead, checker_handler, make_reader, token_in
from gate_agent.store import Store
from gate_agent.sync import Outcome, apply, verify
from protocol.cards import CardEntry, card_key
from protocol.keys import Keyring, Signer
from protocol.messages import CheckinEvent
from protocol.reasons import Reason
from protocol.whitelist import Delta, Snapshot, WhitelistEntry
from tests.gate_helpers import ADULT, CHANNEL, GROUP, NOW, PERF, eventually, rules, seal_delta, seal_snapshot, token

ROOT = Path(__file__).resolve().parent.parent
IDM = bytes.fromhex("03FEFFE011223344")
KEY = card_key(IDM)


def card(card_id: int = 5, *, channels: frozenset[int] = frozenset({CHANNEL}), per_day: int = 1,
         until: float = NOW + 86400, revoked: bool = False) -> CardEntry:
    return CardEntry(KEY, card_id, "annual", int(NOW - 86400), int(until), channels, per_day, revoked)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def emulated_tag(*ndef_args: str) -> Iterator[str]:
    """A Type 3 tag with IDM (and NDEF text/URI records) on udp; yields the reader path."""
    port = free_udp_port()
    proc = subprocess.Popen([sys.executable, "-m", "tests.nfc_emulator", str(port), IDM.hex(), *ndef_args],
                            cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().startswith("emulator ready")
        yield f"udp:localhost:{port}"
    finally:
        proc.terminate()
        proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "gate") as s:
        yield s


def make_checker(store: Store, signer: Signer, cards: list[CardEntry], channel: int = CHANNEL,
                 tickets: tuple[int, ...] = ()) -> Checker:
    """A checker on a store that installed a signed snapshot with these cards (and tickets)."""
    snap = Snapshot(GROUP, 3, NOW, rules(), [WhitelistEntry(t, PERF, ADULT) for t in tickets], cards)
    kind, body = verify(seal_snapshot(snap, signer), Keyring.of(signer))
    assert apply(kind, body, store, GROUP) is Outcome.INSTALLED
    return Checker(Station("gate-1", GROUP, channel), store, Keyring.of(signer),
                   LoggingActuator("gate-1", out=io.StringIO()), clock=lambda: NOW)


async def read_with(path: str, checker: Checker, *, debounce_s: float, want: int,
                    linger: float = 0.0) -> tuple[list[CheckinEvent], NfcpyReader]:
    """Run a reader on ``path`` until ``want`` events were decided (and ``linger`` seconds more)."""
    events: list[CheckinEvent] = []
    handle = checker_handler(checker)

    async def on_read(read: RfidRead) -> None:
        event = await handle(read)
        assert isinstance(event, CheckinEvent)
        events.append(event)

    reader = NfcpyReader(NfcpyOptions(path, ("212F",), debounce_s=debounce_s, retry_s=0.2), on_read)
    task = asyncio.create_task(reader.run())
    try:
        await eventually(lambda: len(events) >= want, timeout=10, what=f"{want} rfid reads")
        await asyncio.sleep(linger)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return events, reader


async def test_ndef_ticket_token_is_decided_like_a_qr_scan_once_per_presentation(
        store: Store, signer: Signer) -> None:
    checker = make_checker(store, signer, [], tickets=(7,))
    text = token(signer, 7)
    with emulated_tag(text, "https://theatre.example/t/x") as path:
        events, reader = await read_with(path, checker, debounce_s=5.0, want=1, linger=2.5)
    assert reader.health() == "ok"
    assert len(events) == 1 and reader.reads == 1  # held on the reader for seconds: one read
    e = events[0]
    assert (e.reason, e.source, e.ticket_id, e.card_id) == (Reason.ADMITTED, "nfc", 7, None)


async def test_bare_uid_member_card_admitted_then_used_up_for_the_day(store: Store, signer: Signer) -> None:
    checker = make_checker(store, signer, [card(per_day=1)])
    with emulated_tag() as path:
        events, _ = await read_with(path, checker, debounce_s=0.0, want=2)  # no debounce: taps again
    assert [e.reason for e in events[:2]] == [Reason.ADMITTED, Reason.DAILY_LIMIT]
    assert all(e.card_id == 5 and e.source == "nfc" and e.ticket_id is None for e in events)
    assert events[0].persons == 1
    assert store.card_entries(5, NOW) == 1
    raw = IDM.hex()
    assert not any(raw in str(j).lower() for j in store.journal())  # no raw UID in the journal


async def test_missing_reader_reports_missing_retries_and_recovers(store: Store, signer: Signer) -> None:
    checker = make_checker(store, signer, [card(per_day=3)])
    reader = make_reader(RfidConfig(enabled=True, path="tty:nonexistent", retry_s=0.05), checker)
    task = asyncio.create_task(reader.run())
    await asyncio.sleep(0.3)
    assert reader.health() == "missing" and not task.done()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)

    # a reader that is missing at first and then appears (plugged in): reads resume by themselves
    with emulated_tag() as path:
        attempts: list[str] = []

        def frontend(_path: str) -> nfc.ContactlessFrontend:
            attempts.append(_path)
            return nfc.ContactlessFrontend("tty:nonexistent" if len(attempts) < 3 else path)

        events: list[object] = []

        async def on_read(read: RfidRead) -> None:
            events.append(await checker_handler(checker)(read))

        plugged = NfcpyReader(NfcpyOptions("usb", ("212F",), retry_s=0.05), on_read, frontend=frontend)
        task = asyncio.create_task(plugged.run())
        try:
            await eventually(lambda: events, timeout=10, what="a read after the reader appeared")
            assert plugged.health() == "ok" and len(attempts) == 3
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


@pytest.mark.parametrize(("entry", "channel", "reason"), [
    (None, CHANNEL, Reason.UNKNOWN),
    (card(channels=frozenset({2})), CHANNEL, Reason.WRONG_CHANNEL),
    (card(until=NOW - 1), CHANNEL, Reason.TOO_LATE),
    (card(revoked=True), CHANNEL, Reason.REVOKED),
    (card(per_day=2), CHANNEL, Reason.ADMITTED),
])
async def test_card_decisions_at_the_checker(store: Store, signer: Signer, entry: CardEntry | None,
                                             channel: int, reason: Reason) -> None:
    checker = make_checker(store, signer, [entry] if entry else [], channel)
    event = await checker.tap(KEY)
    assert event.reason is reason
    assert event.card_id == (entry.card_id if entry else None)
    assert store.pending(10)[-1].event_id == event.event_id


async def test_card_delta_then_revocation_applies_at_the_gate(store: Store, signer: Signer) -> None:
    checker = make_checker(store, signer, [])
    keyring = Keyring.of(signer)
    assert (await checker.tap(KEY)).reason is Reason.UNKNOWN
    for seq, entry in ((4, card(per_day=2)), (5, card(per_day=2, revoked=True))):
        kind, body = verify(seal_delta(Delta(GROUP, seq, NOW, "card", card=entry), signer), keyring)
        assert apply(kind, body, store, GROUP) is Outcome.APPLIED
        if seq == 4:
            assert (await checker.tap(KEY)).reason is Reason.ADMITTED
    assert (await checker.tap(KEY)).reason is Reason.REVOKED


def test_token_found_in_text_or_uri_records_only() -> None:
    t = "A" * 114
    assert token_in([ndef.TextRecord(t)]) == t
    assert token_in([ndef.UriRecord(f"https://theatre.example/t/{t}")]) == t
    assert token_in([ndef.UriRecord(f"https://theatre.example/c?t={t}&x=1")]) == t
    assert token_in([ndef.TextRecord("member 0042"), ndef.UriRecord("https://theatre.example/")]) is None
    assert token_in([]) is None
