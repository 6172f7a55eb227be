"""The commit's argument encoding (services/aggregator/store.py): run records and their index
moves, as scripts.COMMIT reads them."""

from __future__ import annotations

import struct
from typing import Any

import orjson
import pytest

from services.aggregator import store
from services.aggregator.fold import fold, prepare
from shared import keys
from shared.settings import Settings
from tests.aggregator_support import llmonitor

pytestmark = pytest.mark.unit

T = [f"2026-01-01T00:00:0{i}.000Z" for i in range(3)]


def entries(events: list[dict[str, Any]], start: int = 0) -> list[tuple[str, bytes]]:
    return [(f"{1_700_000_000_000 + start + i}-0", orjson.dumps(e)) for i, e in enumerate(events)]


def decoded(p: int, runs_section: tuple[list[str], list[Any]]) -> dict[str, dict[str, Any]]:
    """Run id -> {adds, removes (index keys), feed codes, error} from the runs section."""
    index_keys, flat = runs_section
    out = {}
    for i in range(0, len(flat), 9):
        run_id, _, _, _, _, _, ops, codes, error = flat[i : i + 9]
        moves = struct.unpack(f">{len(ops) // 2}H", ops)
        out[run_id] = {
            "adds": {index_keys[m - 1] for m in moves if not m & store.REMOVE},
            "removes": {index_keys[(m & ~store.REMOVE) - 1] for m in moves if m & store.REMOVE},
            "codes": codes,
            "error": error,
        }
    return out


def test_a_new_run_enters_every_index_and_the_feed_codes_name_its_entries() -> None:
    batch = [llmonitor("start", "r1", name="gpt-4o", timestamp=T[0])]
    writes = fold(prepare(entries(batch)), set(), {})
    runs = decoded(0, store._run_args(0, writes.runs, {"r1": "0"}))
    assert runs["r1"]["adds"] == {
        keys.runs_index(0),
        keys.runs_index(0, "status", "running"),
        keys.runs_index(0, "task_name", "gpt-4o"),
        keys.runs_index(0, "app", "app-1"),
    }
    assert runs["r1"]["removes"] == set() and runs["r1"]["codes"] == "cs"
    assert [name for name, _ in writes.feed] == ["run.created", "run.started"]


def test_a_stored_run_moves_only_between_the_indexes_that_changed() -> None:
    first = fold(prepare(entries([llmonitor("start", "r1", name="t", timestamp=T[0])])), set(), {})
    stored = {r: (c.facts, c.view) for r, c in first.runs.items()}
    error = llmonitor("error", "r1", timestamp=T[1], error={"message": "boom"})
    second = fold(prepare(entries([error], 1)), set(), stored)
    runs = decoded(0, store._run_args(0, second.runs, {"r1": "1"}))
    assert runs["r1"]["removes"] == {keys.runs_index(0, "status", "running")}
    assert runs["r1"]["adds"] == {  # not the index of all runs: its first arrival did not move
        keys.runs_index(0, "status", "ended"),
        keys.runs_index(0, "end_reason", "failed"),
    }
    assert runs["r1"]["codes"] == "f" and orjson.loads(runs["r1"]["error"]) == {"message": "boom"}
    # The script builds run.failed's data from the view and this error, as WriteSet.feed shows.
    ((name, data),) = second.feed
    assert name == "run.failed" and orjson.loads(data)["error"] == {"message": "boom"}


def test_an_earlier_event_moves_the_run_in_every_index() -> None:
    late = fold(
        prepare(entries([llmonitor("start", "r1", name="t", timestamp=T[1])], 5)), set(), {}
    )
    stored = {r: (c.facts, c.view) for r, c in late.runs.items()}
    early = llmonitor("update", "r1", timestamp=T[0])
    moved = fold(prepare(entries([early], 0)), set(), stored)  # arrived first, applied last
    runs = decoded(0, store._run_args(0, moved.runs, {"r1": "1"}))
    assert keys.runs_index(0) in runs["r1"]["adds"]  # rescored: the first arrival moved
    assert keys.runs_index(0, "task_name", "t") in runs["r1"]["adds"]


def test_markers_travel_as_one_string_of_16_character_digests() -> None:
    batch = [llmonitor("start", f"r{i}", name="t", timestamp=T[0]) for i in range(3)]
    writes = fold(prepare(entries(batch)), set(), {})
    versions = {r: "0" for r in writes.runs}
    settings = Settings(redis_url="redis://unused")
    args = store._commit_args(settings, 0, writes, 7, ["b"], versions, ["9-0"])
    markers = args[9]
    assert len(markers) == 16 * 3 and [markers[i : i + 16] for i in (0, 16, 32)] == writes.markers
