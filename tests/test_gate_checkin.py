"""The checker and its store: every reason, durable journal/outbox/usage, whitelist application."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gate_agent import sync as wl
from gate_agent.checkin import Checker, Station
from gate_agent.store import Store
from protocol.decision import Decision
from protocol.envelope import open_envelope, seal
from protocol.errors import SignatureError
from protocol.keys import Keyring, Signer
from protocol.reasons import Reason
from protocol.whitelist import KIND_DELTA, Delta, WhitelistEntry
from tests.gate_helpers import (
    CHILD,
    NOW,
    PERF,
    STAFF,
    entries,
    rules,
    seal_delta,
    seal_snapshot,
    snapshot,
    token,
)


class RecordingActuator:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Decision]] = []

    async def admit(self, decision: Decision) -> None:
        self.calls.append(("admit", decision))

    async def reject(self, decision: Decision) -> None:
        self.calls.append(("reject", decision))


@pytest.fixture
def store(tmp_path: Path) -> Store:
    with Store.open(tmp_path / "gate") as s:
        yield s  # type: ignore[misc]


def make_checker(store: Store, keyring: Keyring, channel: int = 1) -> tuple[Checker, RecordingActuator]:
    act = RecordingActuator()
    return Checker(Station("gate-1", 1, channel), store, keyring, act, clock=lambda: NOW), act


def install(store: Store, signer: Signer, keyring: Keyring, items: list[WhitelistEntry], seq: int = 10) -> None:
    kind, body = wl.verify(seal_snapshot(snapshot(items, seq), signer), keyring)
    assert wl.apply(kind, body, store, 1) is wl.Outcome.INSTALLED


async def test_valid_then_again_is_already_used(store: Store, signer: Signer, keyring: Keyring) -> None:
    install(store, signer, keyring, [WhitelistEntry(7, PERF, 3, persons=2)])
    checker, act = make_checker(store, keyring)
    first = await checker.scan(token(signer, 7, persons=2))
    second = await checker.scan(token(signer, 7, persons=2))
    assert first.reason is Reason.ADMITTED and first.persons == 2 and first.offline
    assert second.reason is Reason.ALREADY_USED and second.persons == 0
    assert [c[0] for c in act.calls] == ["admit", "reject"]
    assert [e["seq"] for e in store.journal()] == [0, 1] and store.outbox_count() == 2


@pytest.mark.parametrize(
    ("setup", "reason"),
    [
        ({"ticket": 5}, Reason.UNKNOWN),  # below the newest listed ticket: not one sold after the sync
        ({"entry": WhitelistEntry(7, PERF, 3, revoked=True)}, Reason.REVOKED),
        ({"entry": WhitelistEntry(7, PERF, CHILD)}, Reason.REVOKED),
        ({"perf": 41}, Reason.WRONG_PERFORMANCE),
        ({"channel": 2}, Reason.WRONG_CHANNEL),
        ({"now": NOW - 7200}, Reason.TOO_EARLY),
        ({"now": NOW + 7200}, Reason.TOO_LATE),
        ({"entry": WhitelistEntry(7, PERF, 3, used=1)}, Reason.ALREADY_USED),
        ({"forged": True}, Reason.FORGED),
        ({"text": "HELLO\x00\x01 not a ticket"}, Reason.MALFORMED),
    ],
)
async def test_each_denial_reason(store: Store, signer: Signer, keyring: Keyring,
                                  setup: dict[str, object], reason: Reason) -> None:
    install(store, signer, keyring, [setup.get("entry", WhitelistEntry(7, PERF, 3))])  # type: ignore[list-item]
    checker, act = make_checker(store, keyring, channel=int(setup.get("channel", 1)))  # type: ignore[call-overload]
    text = token(Signer.generate(1) if setup.get("forged") else signer, int(setup.get("ticket", 7)),  # type: ignore[call-overload]
                 perf=int(setup.get("perf", PERF)))  # type: ignore[call-overload]
    text = str(setup.get("text", text))
    now = float(setup.get("now", NOW))  # type: ignore[arg-type]
    event = await checker.scan(text, now=now)
    assert event.reason is reason
    assert [(call, d.reason, d.ticket_id) for call, d in act.calls] == [("reject", reason, event.ticket_id)]
    assert store.journal()[-1]["reason"] == reason.value
    assert event.excerpt == ("HELLO?? not a ticket" if reason is Reason.MALFORMED else None)


async def test_an_altered_token_is_forged(store: Store, signer: Signer, keyring: Keyring) -> None:
    install(store, signer, keyring, entries(3))
    checker, _ = make_checker(store, keyring)
    good = token(signer, 2)
    altered = good[:40] + ("A" if good[40] != "A" else "B") + good[41:]
    assert (await checker.scan(altered)).reason is Reason.FORGED


async def test_without_a_whitelist_tokens_verify_but_decide_unknown(store: Store, signer: Signer,
                                                                    keyring: Keyring) -> None:
    checker, _ = make_checker(store, keyring)
    assert (await checker.scan(token(signer, 1))).reason is Reason.UNKNOWN
    assert (await checker.scan(token(Signer.generate(1), 1))).reason is Reason.FORGED


async def test_the_journal_outbox_and_usage_survive_reopening(tmp_path: Path, signer: Signer,
                                                              keyring: Keyring) -> None:
    with Store.open(tmp_path / "g") as store:
        install(store, signer, keyring, entries(5))
        checker, _ = make_checker(store, keyring)
        ids = [(await checker.scan(token(signer, i))).event_id for i in (1, 2)]
    with Store.open(tmp_path / "g") as store:
        assert [e["event_id"] for e in store.journal()] == ids and store.next_seq() == 2
        assert [e.event_id for e in store.pending(10)] == ids
        assert store.whitelist_seq == 10 and store.entry_count() == 5
        checker, _ = make_checker(store, keyring)
        assert (await checker.scan(token(signer, 1))).reason is Reason.ALREADY_USED
        assert store.acknowledge([ids[0]]) == 1 and store.outbox_count() == 2
        assert len(store.journal()) == 3  # the journal keeps everything


def test_deltas_apply_in_order_replays_are_ignored_and_gaps_reported(store: Store, signer: Signer,
                                                                     keyring: Keyring) -> None:
    install(store, signer, keyring, entries(2), seq=10)

    def send(delta: Delta, by: Signer = signer) -> wl.Outcome:
        return wl.apply(*wl.verify(seal_delta(delta, by), keyring), store, 1)

    assert send(Delta(1, 11, NOW, "sale", WhitelistEntry(50, PERF, 3))) is wl.Outcome.APPLIED
    assert send(Delta(1, 12, NOW, "refund", WhitelistEntry(1, PERF, 3, revoked=True))) is wl.Outcome.APPLIED
    assert store.entry(50) is not None and store.entry(1).revoked  # type: ignore[union-attr]
    assert send(Delta(1, 11, NOW, "void", WhitelistEntry(50, PERF, 3, revoked=True))) is wl.Outcome.DUPLICATE
    assert not store.entry(50).revoked  # type: ignore[union-attr]
    assert send(Delta(1, 14, NOW, "sale", WhitelistEntry(51, PERF, 3))) is wl.Outcome.GAP
    assert store.entry(51) is None and store.whitelist_seq == 12
    assert send(Delta(2, 13, NOW, "sale", WhitelistEntry(52, PERF, 3))) is wl.Outcome.OTHER_GROUP
    new_rules = rules(types=frozenset({STAFF}))
    assert send(Delta(1, 13, NOW, "rules", rules=new_rules)) is wl.Outcome.APPLIED
    assert store.rules == new_rules and store.whitelist_seq == 13
    with pytest.raises(SignatureError):
        send(Delta(1, 14, NOW, "sale", WhitelistEntry(53, PERF, 3)), by=Signer.generate(1))
    assert store.whitelist_seq == 13 and store.entry(53) is None


def test_a_snapshot_with_a_bad_row_changes_nothing(store: Store, signer: Signer, keyring: Keyring) -> None:
    install(store, signer, keyring, entries(3), seq=5)
    body = snapshot(entries(4, start=100), seq=6).to_wire()
    body["entries"].append([1, 2, "x", 4, 5, 6])
    kind, body = open_envelope(seal("whitelist.snapshot", body, signer), keyring)
    with pytest.raises(Exception, match="six or twelve integers"):
        wl.apply(kind, body, store, 1)
    assert store.whitelist_seq == 5 and store.entry_count() == 3 and store.entry(100) is None
    assert wl.apply(*open_envelope(seal(KIND_DELTA, Delta(1, 6, NOW, "sale", WhitelistEntry(9, PERF, 3)).to_wire(),
                                        signer), keyring), store, 1) is wl.Outcome.APPLIED


_RSS_SCRIPT = """
import sys, psutil
from pathlib import Path
import gate_agent.app  # everything the daemon imports
from gate_agent import sync as wl
from gate_agent.store import Store
from protocol.keys import Keyring
keyring = Keyring.from_b64({1: sys.argv[3]})
payload = Path(sys.argv[1]).read_bytes()
with Store.open(Path(sys.argv[2])) as store:
    kind, body = wl.verify(payload, keyring)
    wl.apply(kind, body, store, 1)
    del body, payload
    print(store.entry_count(), psutil.Process().memory_info().rss / 2**20)
"""


def test_a_100k_whitelist_installs_and_stays_on_disk(tmp_path: Path, signer: Signer) -> None:
    envelope = tmp_path / "snap.bin"
    envelope.write_bytes(seal_snapshot(snapshot(entries(100_000)), signer))
    out = subprocess.run([sys.executable, "-c", _RSS_SCRIPT, str(envelope), str(tmp_path / "g"),
                          signer.public_key_b64], capture_output=True, text=True, timeout=60, check=True)
    count, rss_mb = out.stdout.split()
    assert int(count) == 100_000
    # the install time is measured by bench/whitelist_sync.py, not asserted here
    assert float(rss_mb) <= 60, rss_mb


async def test_logging_actuator_prints_one_bilingual_line() -> None:
    import io

    from gate_agent.actuator import LoggingActuator

    out = io.StringIO()
    act = LoggingActuator("gate-1", out=out)
    await act.admit(Decision(Reason.ADMITTED, 7, PERF, 3, persons=2))
    await act.reject(Decision(Reason.ALREADY_USED, 7, PERF, 3))
    assert out.getvalue().splitlines() == [
        "[gate-1] ✔ ADMITTED ticket 7 ×2 — 验票通过，请通行 / Welcome. Please pass.",
        "[gate-1] ✘ ALREADY_USED ticket 7 — 此票已检 / Ticket already used.",
    ]


def test_config_file_env_overrides_and_bad_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gate_agent import ConfigError
    from gate_agent.config import load_config

    path = tmp_path / "gate.toml"
    path.write_text('device_id = "g9"\nchannel_id = 2\n[mqtt]\nport = 1990\npassword = "pw"\n')
    monkeypatch.setenv("GATE__MQTT__PORT", "1884")
    cfg = load_config(path)
    assert (cfg.device_id, cfg.channel_id, cfg.mqtt.port, cfg.scanner.baudrate) == ("g9", 2, 1884, 9600)
    assert "pw" not in repr(cfg) and cfg.mqtt.password.get_secret_value() == "pw"
    path.write_text("[scanner]\nbaud = 1\n")
    with pytest.raises(ConfigError, match=r"scanner\.baud"):
        load_config(path)
    path.write_text("kind = 'kiosk'\n")
    with pytest.raises(ConfigError, match="kind"):
        load_config(path)


async def test_a_handheld_screen_rings_once_to_admit_and_thrice_to_refuse() -> None:
    import io

    from gate_agent.actuator import LoggingActuator

    out = io.StringIO()
    act = LoggingActuator("hh-1", out=out, sound=True)
    await act.admit(Decision(Reason.ADMITTED, 7, PERF, 3, persons=1))
    await act.reject(Decision(Reason.REVOKED, 8, PERF, 3))
    admitted, refused = out.getvalue().splitlines()
    assert admitted.endswith("Please pass.\a") and refused.endswith("box office.\a\a\a")
