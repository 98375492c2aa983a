"""Keys with purposes (issue 10 item 1): the ticket key cannot sign envelopes, the control key cannot sign
tokens, the legacy keys file still loads, key files are created atomically, 0600, never overwritten."""

from __future__ import annotations

import json
import multiprocessing
import os
from pathlib import Path

import pytest

from protocol.emergency import KIND_EMERGENCY, EmergencyCommand
from protocol.envelope import open_envelope, peek_kid, reseal, seal
from protocol.errors import MalformedError, SignatureError
from protocol.keys import Keyring, Signer
from protocol.provisioning import KeysPayload
from protocol.token import TicketToken, decode_token, encode_token

TOKEN = TicketToken(1, 2, 3, 0, 2**32 - 1)


def rings() -> tuple[Signer, Signer, Keyring]:
    ticket, control = Signer.generate(1), Signer.generate(2)
    ring = Keyring.of(ticket, purposes={"ticket"}).merged(Keyring.of(control, purposes={"control"}))
    return ticket, control, ring


def test_each_key_signs_only_what_its_purpose_allows() -> None:
    ticket, control, ring = rings()
    assert decode_token(encode_token(TOKEN, ticket), ring).ticket_id == 1
    with pytest.raises(SignatureError, match="not trusted for ticket"):
        decode_token(encode_token(TOKEN, control), ring)  # a control key cannot mint tickets
    cmd = EmergencyCommand(1, 1.0, "mallory", "x", open_all=True)
    assert open_envelope(seal(KIND_EMERGENCY, cmd.to_wire(), control), ring)[0] == KIND_EMERGENCY
    with pytest.raises(SignatureError, match="not trusted for control"):
        open_envelope(seal(KIND_EMERGENCY, cmd.to_wire(), ticket), ring)  # a ticket key cannot open gates
    assert ring.kids("ticket") == [1] and ring.kids("control") == [2] and ring.kids() == [1, 2]


def test_keys_file_format_round_trips_and_the_legacy_form_means_all_purposes() -> None:
    ticket, control, ring = rings()
    entries = ring.to_entries()
    assert entries == {"1": {"key": ticket.public_key_b64, "purposes": ["ticket"]},
                       "2": {"key": control.public_key_b64, "purposes": ["control"]}}
    assert Keyring.from_b64(json.loads(json.dumps(entries))).to_purposes() == ring.to_purposes()
    legacy = Keyring.from_b64({"1": ticket.public_key_b64})  # a single-key hub's file
    assert legacy.to_purposes() == {"1": ["control", "ticket"]}
    decode_token(encode_token(TOKEN, ticket), legacy)
    open_envelope(seal("x", {}, ticket), legacy)
    for bad in ({"1": {"key": ticket.public_key_b64, "purposes": ["root"]}},
                {"1": {"key": ticket.public_key_b64, "purposes": []}},
                {"256": ticket.public_key_b64}, {"1": "not base64!"}):
        with pytest.raises(MalformedError):
            Keyring.from_b64(bad)
    payload = KeysPayload(version=1, keys=entries, issued_at=1.0)
    assert payload.keyring().to_purposes() == ring.to_purposes()


def test_reseal_keeps_the_body_and_signs_with_the_new_key() -> None:
    old, new = Signer.generate(2), Signer.generate(3)
    data = seal("whitelist.delta", {"seq": 5}, old)
    again = reseal(data, new)
    assert peek_kid(again) == 3 and again.split(b"\n", 1)[1] == data.split(b"\n", 1)[1]
    assert open_envelope(again, Keyring.of(new, purposes={"control"})) == ("whitelist.delta", {"seq": 5})
    assert reseal(again, new) is again


def _create(path: str, kid: int, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    out.put(Signer.load_or_create(Path(path), kid).public_key_b64)


def test_two_processes_creating_the_key_at_once_get_the_same_key(tmp_path: Path) -> None:
    for attempt in range(10):
        path = tmp_path / f"k{attempt}" / "control.key"
        ctx = multiprocessing.get_context("fork")
        out: multiprocessing.Queue = ctx.Queue()  # type: ignore[type-arg]
        procs = [ctx.Process(target=_create, args=(str(path), 2, out)) for _ in range(4)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(10)
        keys = {out.get(timeout=5) for _ in procs}
        assert keys == {Signer.load(path).public_key_b64}, f"attempt {attempt}: different keys {keys}"
        assert path.stat().st_mode & 0o777 == 0o600
        assert [f.name for f in path.parent.iterdir()] == ["control.key"]  # no temp file left behind


def test_a_key_file_is_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "signing.key"
    first = Signer.load_or_create(path, 1)
    with pytest.raises(FileExistsError):
        Signer.generate(1).save(path)
    assert Signer.load_or_create(path, 1).public_key_b64 == first.public_key_b64
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    with pytest.raises(MalformedError):
        Signer.load_or_create(tmp_path / "x.key", 256)
