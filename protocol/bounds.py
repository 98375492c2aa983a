"""The bounds every number and string must respect where it enters (HTTP, MQTT, scanner, config).

One set, shared by the hub's API models, the MQTT message models and the whitelist formats, so a
value the database or a ticket token cannot hold is refused at the edge with a message naming the
field, never deep inside a transaction.

* Ids are database integers (PostgreSQL ``integer``): 1 .. 2**31 - 1.
* A ticket token carries the ticket type in 16 bits and unix seconds in 32 bits (until 2106-02-07).
* Persons per ticket fit the token's 8 bits.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, Field

MAX_ID = 2**31 - 1
MAX_TYPE_ID = 2**16 - 1
MAX_PERSONS = 255
MAX_COUNT = 2**31 - 1
MAX_ENTRIES = 10_000  # entries a rule may allow (total or per day)
MAX_MINUTES = 60 * 24 * 366  # tolerances and cool-downs: at most a year
MAX_SEQ = 2**63 - 1  # device journal sequence (BIGINT)
MIN_UNIX = 0
MAX_UNIX = 2**32 - 1  # the token's u32 seconds
MAX_NAME = 200
MAX_LIST = 1000  # ids in one request (groups, channels, ticket types...)
MAX_JSON_BYTES = 64 * 1024  # a free-form JSON object (device config, command result) once serialised
MAX_JSON_DEPTH = 32
MAX_JSON_INT = 2**63 - 1
DEVICE_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"  # check in Python with fullmatch: "$" also matches before "\n"
EVENT_ID_PATTERN = r"^[0-9a-f]{32}$"

Id = Annotated[int, Field(ge=1, le=MAX_ID)]
OptId = Annotated[int | None, Field(ge=1, le=MAX_ID)]
TypeId = Annotated[int, Field(ge=1, le=MAX_TYPE_ID)]
Persons = Annotated[int, Field(ge=1, le=MAX_PERSONS)]
Count = Annotated[int, Field(ge=0, le=MAX_COUNT)]
Seq = Annotated[int, Field(ge=0, le=MAX_SEQ)]
UnixTime = Annotated[float, Field(ge=MIN_UNIX, le=MAX_UNIX, allow_inf_nan=False)]


def _token_time(value: datetime) -> datetime:
    ts = value.timestamp()
    if not MIN_UNIX <= ts <= MAX_UNIX:
        raise ValueError(f"must lie between {datetime.fromtimestamp(MIN_UNIX, UTC):%Y-%m-%d} and "
                         f"{datetime.fromtimestamp(MAX_UNIX, UTC):%Y-%m-%d} (what a ticket token can carry)")
    return value


TokenDatetime = Annotated[AwareDatetime, AfterValidator(_token_time)]


def _plain_json(value: dict[str, Any]) -> dict[str, Any]:
    """A free-form JSON object the hub stores and re-serves: finite numbers, 64-bit ints, bounded size."""

    def walk(v: Any, depth: int) -> None:
        if depth > MAX_JSON_DEPTH:
            raise ValueError(f"is nested deeper than {MAX_JSON_DEPTH} levels")
        if isinstance(v, bool) or v is None or isinstance(v, str):
            return
        if isinstance(v, int):
            if not -MAX_JSON_INT <= v <= MAX_JSON_INT:
                raise ValueError("holds an integer beyond 64 bits")
        elif isinstance(v, float):
            if not math.isfinite(v):
                raise ValueError("holds NaN or an infinite number")
        elif isinstance(v, dict):
            for item in v.values():
                walk(item, depth + 1)
        elif isinstance(v, list):
            for item in v:
                walk(item, depth + 1)

    walk(value, 1)
    if len(json.dumps(value, ensure_ascii=False).encode()) > MAX_JSON_BYTES:
        raise ValueError(f"is larger than {MAX_JSON_BYTES} bytes as JSON")
    return value


JsonObject = Annotated[dict[str, Any], AfterValidator(_plain_json)]


def in_id_range(value: int) -> bool:
    return 1 <= value <= MAX_ID
