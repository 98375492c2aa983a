"""Signed envelopes and whitelist payloads: verified before anything is parsed or installed."""

from __future__ import annotations

import pytest

from protocol.envelope import open_envelope, peek_kind, seal
from protocol.errors import MalformedError, SignatureError
from protocol.keys import Keyring, Signer
from protocol.messages import CheckinEvent, EventBatch, parse_message
from protocol.topics import Topics
from protocol.whitelist import (
    KIND_DELTA,
    KIND_SNAPSHOT,
    ChannelRules,
    Delta,
    GroupRules,
    Snapshot,
    WhitelistEntry,
)

RULES = GroupRules(5, frozenset({42}), {1: ChannelRules(1, frozenset({3}))})


def test_snapshot_round_trips_compressed(signer: Signer, keyring: Keyring) -> None:
    snap = Snapshot(5, 10, 1.5, RULES, [WhitelistEntry(i, 42, 3) for i in range(1000)])
    wire = seal(KIND_SNAPSHOT, snap.to_wire(), signer, compress=True)
    assert len(wire) < 1000 * 10
    kind, payload = open_envelope(wire, keyring, kinds={KIND_SNAPSHOT})
    assert kind == KIND_SNAPSHOT and Snapshot.from_wire(payload) == snap


def test_tampered_body_or_kind_is_refused(signer: Signer, keyring: Keyring) -> None:
    delta = Delta(5, 11, 2.0, "refund", WhitelistEntry(7, 42, 3, revoked=True))
    wire = seal(KIND_DELTA, delta.to_wire(), signer)
    with pytest.raises(SignatureError):
        open_envelope(wire.replace(b'"refund"', b'"sale__"'), keyring)
    with pytest.raises(SignatureError):
        open_envelope(wire.replace(KIND_DELTA.encode(), b"checkin.ack"), keyring)
    assert peek_kind(wire) == KIND_DELTA
    assert Delta.from_wire(open_envelope(wire, keyring)[1]) == delta


def test_envelope_from_a_stranger_is_refused(keyring: Keyring) -> None:
    with pytest.raises(SignatureError):
        open_envelope(seal(KIND_DELTA, {}, Signer.generate(kid=1)), keyring)


@pytest.mark.parametrize("garbage", [b"", b"{}", b"not json\n{}", b'{"v":1}\n', b"\xff\xfe\n\x00"])
def test_garbage_envelopes_are_malformed(keyring: Keyring, garbage: bytes) -> None:
    with pytest.raises(MalformedError):
        open_envelope(garbage, keyring)


def test_delta_without_its_entry_is_malformed() -> None:
    with pytest.raises(MalformedError):
        Delta.from_wire({"group_id": 1, "seq": 1, "at": 0, "op": "sale", "entry": None, "rules": None})


def test_event_batches_refuse_unknown_fields_and_bad_ids() -> None:
    ev = CheckinEvent(event_id="a" * 32, device_id="gate-1", group_id=1, channel_id=1, seq=0,
                      reason="admitted", scanned_at=1.0)  # type: ignore[arg-type]
    good = EventBatch(device_id="gate-1", events=[ev]).model_dump_json()
    assert parse_message(EventBatch, good).events[0] == ev
    with pytest.raises(MalformedError, match="EventBatch"):
        parse_message(EventBatch, good.replace('"seq":0', '"seq":0,"evil":1'))
    with pytest.raises(MalformedError):
        parse_message(EventBatch, good.replace("a" * 32, "zz"))
    with pytest.raises(MalformedError):
        parse_message(EventBatch, b"\x00garbage")


def test_topics_are_built_and_parsed_in_one_place() -> None:
    t = Topics("theatre")
    assert t.events("gate-1") == "theatre/device/gate-1/events"
    assert t.parse_device_topic("theatre/device/gate-1/events") == ("gate-1", "events")
    assert t.group_whitelist(5) == "theatre/group/5/whitelist"
    with pytest.raises(MalformedError):
        t.parse_device_topic("theatre/device/a/b/events")
    with pytest.raises(MalformedError):
        t.events("bad/id")


def test_emergency_command_is_whole_state_and_signed(signer: Signer, keyring: Keyring) -> None:
    from protocol.emergency import KIND_EMERGENCY, EmergencyCommand

    cmd = EmergencyCommand(7, 1.0, "guard-1", "fire in hall B", open_group_ids=frozenset({2}))
    _, body = open_envelope(seal(KIND_EMERGENCY, cmd.to_wire(), signer), keyring, kinds={KIND_EMERGENCY})
    got = EmergencyCommand.from_wire(body)
    assert got == cmd and got.active and got.opens(2, 99) and not got.opens(1, 1)
    assert EmergencyCommand(8, 2.0, "guard-1", "all clear").active is False
    with pytest.raises(SignatureError):
        open_envelope(seal(KIND_EMERGENCY, cmd.to_wire(), Signer.generate(kid=1)), keyring)
    with pytest.raises(MalformedError):
        EmergencyCommand.from_wire({"seq": 1})


def test_card_usage_delta_round_trips_and_must_carry_its_usage() -> None:
    from protocol.whitelist import CardUsage

    delta = Delta(5, 12, 3.0, "card_used", card_used=CardUsage(7, "2026-11-25", 2))
    assert Delta.from_wire(delta.to_wire()) == delta
    with pytest.raises(MalformedError):
        Delta.from_wire({**delta.to_wire(), "card_used": None})
    with pytest.raises(MalformedError):
        Delta.from_wire({**delta.to_wire(), "card_used": [7, "yesterday", 2]})
