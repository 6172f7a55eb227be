"""Hypothesis against the running write routes: arbitrary JSON (and arbitrary bytes) never
yields a 5xx, and every refusal is problem+json."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from services.targets import create_app
from shared.samples import LLMONITOR_PATHS, WATCHER_PATH
from shared.settings import Settings

pytestmark = pytest.mark.integration

PATHS = [WATCHER_PATH, *LLMONITOR_PATHS, "/api/apps"]
FIELDS = [
    "id",
    "timestamp",
    "event_type",
    "command",
    "status",
    "model",
    "metadata",
    "source",
    "batch",
    "events",
    "session_id",
    "type",
    "event",
    "app",
    "runId",
    "parentRunId",
    "name",
    "tags",
    "tokensUsage",
    "error",
    "extra",
    "feedback",
]

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
    | st.sampled_from(["2026-01-01T00:00:00Z", "start", "end", "llm", "registered", ""])
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=5), children, max_size=6)
    ),
    max_leaves=25,
)
hyp = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture
def client(make_settings: Callable[..., Settings]) -> Iterator[TestClient]:
    app = create_app(make_settings(apps=["registered"], max_batch=50), "ingest")
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def check(response: Any) -> None:
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert response.headers["content-type"].startswith("application/problem+json")
        assert orjson.loads(response.content)["status"] == response.status_code


@hyp
@given(path=st.sampled_from(PATHS), body=json_values)
def test_arbitrary_json_never_5xx(client: TestClient, path: str, body: Any) -> None:
    content = json.dumps(body).encode()  # stdlib: big integers too, as any client may send
    check(client.post(path, content=content, headers={"content-type": "application/json"}))


@hyp
@given(
    path=st.sampled_from(PATHS),
    content=st.binary(max_size=200),
    content_type=st.sampled_from([None, "application/json", "text/plain", "application/x+json"]),
)
def test_arbitrary_bytes_never_5xx(
    client: TestClient, path: str, content: bytes, content_type: str | None
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    check(client.post(path, content=content, headers=headers))
