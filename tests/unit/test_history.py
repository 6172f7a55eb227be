"""History members (shared/history.py): their encoding sorts like the stream ids it comes from."""

from __future__ import annotations

import orjson
import pytest

from shared import history

pytestmark = pytest.mark.unit


def test_history_member_encoding_orders_like_stream_ids() -> None:
    ids = ["1-0", "1-10", "2-0", "10-3", "1700000000000-1"]
    assert sorted(ids, key=history.key) == sorted(ids, key=lambda i: tuple(map(int, i.split("-"))))
    assert history.unkey(history.key("1700000000000-7")) == (1_700_000_000_000, 7)
    assert orjson.loads(history.encode({"a": 1})) == {"a": 1}
