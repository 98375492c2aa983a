"""Property-based fuzzing of every HTTP route from the app's own OpenAPI (schemathesis): whatever the
input, valid or not (out-of-range numbers, wrong types, odd strings), the hub answers below 500 and
raises nothing. Each route runs without a token and with a staff token, on a hub with a little data.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.core import NOT_SET
from schemathesis.generation import GenerationMode

from hub.app import create_app
from tests.hubkit import Hub, make_settings, run_hub, sell, setup_show
from tests.support.net import free_port

# An endless server-sent events stream: the test client would read it forever. Its filters are those of
# GET /api/v1/live/snapshot (fuzzed here); tests/test_hub_live.py sends it bad input and a bounded max_s.
ENDLESS = {("GET", "/api/v1/live/stream")}
MAX_EXAMPLES = 15  # per route and mode (about 64 routes x 2): about half a minute in all


def _operations() -> list[tuple[str, str]]:
    app = create_app(make_settings(Path("/nonexistent"), 1))  # the schema only; nothing is opened
    ops = [(method.upper(), path) for path, item in app.openapi()["paths"].items() for method in item]
    return sorted(op for op in ops if op not in ENDLESS)


OPERATIONS = _operations()


@pytest.fixture(scope="module")
def fuzz_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Hub, dict[str, dict[str, str]]]]:
    with contextmanager(run_hub)(make_settings(tmp_path_factory.mktemp("fuzz-hub"), free_port()),
                                 wait_mqtt=False) as hub:
        show = setup_show(hub)
        for _ in range(3):
            sell(hub, show)
        yield hub, {"admin": hub.admin, "security": hub.user("sec", "security")}


@pytest.fixture(scope="module")
def schema(fuzz_hub: tuple[Hub, dict[str, dict[str, str]]]) -> Any:
    return schemathesis.openapi.from_dict(fuzz_hub[0].client.app.openapi())  # type: ignore[attr-defined]


def _send(hub: Hub, case: Any, auth: dict[str, str]) -> Any:
    headers = {str(k): str(v) for k, v in (case.headers or {}).items()}
    headers.update(auth)
    kwargs: dict[str, Any] = {"params": case.query or None, "headers": headers}
    if case.body is not NOT_SET:
        body = case.body  # NaN and Infinity too, as a careless client sends them; raw bytes as they are
        kwargs["content"] = bytes(body) if isinstance(body, bytes | bytearray) else json.dumps(body).encode()
        headers["content-type"] = case.media_type or "application/json"
    try:
        url = hub.client.build_request(case.method, case.formatted_path, **kwargs).url
    except (UnicodeError, ValueError):  # a header or URL the client itself cannot send
        return None
    assert url is not None
    return hub.client.request(case.method, case.formatted_path, **kwargs)


@pytest.mark.parametrize("mode", ["anonymous", "staff"])
@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_no_input_makes_a_server_error(fuzz_hub: tuple[Hub, dict[str, dict[str, str]]], schema: Any,
                                       method: str, path: str, mode: str) -> None:
    hub, headers = fuzz_hub
    auth = {} if mode == "anonymous" else headers["security" if path.startswith("/api/v1/emergency/") else "admin"]
    operation = schema[path][method]
    cases = st.one_of(operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
                      operation.as_strategy(generation_mode=GenerationMode.NEGATIVE))

    @settings(max_examples=MAX_EXAMPLES, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(case=cases)
    def check(case: Any) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            response = _send(hub, case, auth)
        if response is not None:
            assert response.status_code < 500, (case.method, case.formatted_path, case.query, case.body,
                                                response.status_code, response.text[:300])

    check()
