"""The hub's signed answer to a handheld's online check (``POST /api/v1/checkins/online``).

The hub seals what a handheld acts on (reason, persons, credit) into an envelope of kind
``checkin.online_answer`` bound to the device and to the event id the handheld made for this scan, and
returns it base64-encoded in the answer's ``signed`` field. A handheld takes an online answer only if
that envelope verifies with the hub keyring it already holds and names its own device id and the event
id it sent; anything else (no signature, a key it does not trust, an answer for another scan or another
device) and it decides offline. So whoever answers on the hub's address without the hub's key (a
spoofed hub, a captive portal, a replayed answer) cannot admit anyone.

    >>> text = seal_answer(OnlineAnswer(event_id=eid, device_id="hh-1", ticket_id=7, reason=Reason.ADMITTED,
    ...                                 persons=1, at=now), signer)
    >>> answer = open_answer(text, keyring, device_id="hh-1", event_id=eid)
"""

from __future__ import annotations

import base64
import binascii

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from protocol.bounds import DEVICE_ID_PATTERN, EVENT_ID_PATTERN, OptId, UnixTime
from protocol.envelope import open_envelope, seal
from protocol.errors import MalformedError, SignatureError
from protocol.keys import Keyring, Signer
from protocol.reasons import Reason

KIND_ONLINE_ANSWER = "checkin.online_answer"
MAX_SIGNED_CHARS = 4096  # a signed answer is ~400 characters; anything far bigger is not one


class OnlineAnswer(BaseModel):
    """What the hub decided for one scan of one device (the fields a handheld acts on)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: str = Field(pattern=EVENT_ID_PATTERN, description="the event id the handheld sent for this scan")
    device_id: str = Field(pattern=DEVICE_ID_PATTERN, description="the device the check was recorded under")
    ticket_id: OptId = None
    reason: Reason
    persons: int = Field(0, ge=0, le=255, description="persons admitted; 0 unless admitted")
    credit: bool = False
    at: UnixTime = Field(description="hub time of the decision")


def seal_answer(answer: OnlineAnswer, signer: Signer) -> str:
    """The signed envelope of ``answer``, as base64 text (for a JSON field)."""
    return base64.b64encode(seal(KIND_ONLINE_ANSWER, answer.model_dump(mode="json"), signer)).decode("ascii")


def open_answer(text: object, keyring: Keyring, *, device_id: str, event_id: str) -> OnlineAnswer:
    """Verify ``text`` (the ``signed`` field) and check it answers ``device_id``'s scan ``event_id``.

    Raises :class:`SignatureError` for a bad or unknown-key signature, :class:`MalformedError` for a
    missing or undecodable one or one that answers another device or another scan."""
    if not isinstance(text, str) or not text or len(text) > MAX_SIGNED_CHARS:
        raise MalformedError("the online answer carries no signed envelope")
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MalformedError("the online answer's signed envelope is not base64") from exc
    _kind, payload = open_envelope(data, keyring, kinds={KIND_ONLINE_ANSWER})
    try:
        answer = OnlineAnswer.model_validate(payload)
    except ValidationError as exc:
        raise MalformedError(f"the signed online answer does not parse: {exc.errors()[0].get('msg')}") from exc
    if answer.device_id != device_id:
        raise MalformedError(f"the signed online answer is for device {answer.device_id!r}, not {device_id!r}")
    if answer.event_id != event_id:
        raise MalformedError(f"the signed online answer is for event {answer.event_id!r}, not {event_id!r}")
    return answer


__all__ = ["KIND_ONLINE_ANSWER", "OnlineAnswer", "SignatureError", "open_answer", "seal_answer"]
