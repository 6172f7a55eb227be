from __future__ import annotations

import pytest

from services.stream import feeds
from services.stream.feeds import Feed

pytestmark = pytest.mark.unit


def test_parse_filter() -> None:
    assert feeds.parse_filter(None) is None
    assert feeds.parse_filter(" ") is None
    assert feeds.parse_filter("run.failed, system,,") == frozenset({b"run.failed", b"system"})
    assert feeds.parse_filter("notifications.unread_count_changed") == frozenset(
        {b"notifications.unread_count_changed"}
    )


@pytest.mark.parametrize(
    "bad", ["run failed", "Run.Failed", "a\nb", "x" * 65, ",".join(["a"] * 33), ".x"]
)
def test_parse_filter_rejects(bad: str) -> None:
    with pytest.raises(ValueError):
        feeds.parse_filter(bad)


def test_documented_names_are_valid() -> None:
    assert all(feeds.valid_name(n) for n in feeds.DOCUMENTED)


def test_wants() -> None:
    assert feeds.wants(Feed.EVENTS, None, b"event")
    assert not feeds.wants(Feed.EVENTS, None, b"run.failed")
    assert feeds.wants(Feed.STREAM, None, b"run.failed")
    assert feeds.wants(Feed.STREAM, frozenset({b"system"}), b"system")
    assert not feeds.wants(Feed.STREAM, frozenset({b"system"}), b"event")


def test_entry_and_frames() -> None:
    item = feeds.entry(2, (17, 3), {b"t": b"event", b"d": b'{"id":"x"}'})
    assert item == feeds.Entry(2, (17, 3), b"event", b'{"id":"x"}')
    frame = feeds.frames(item, "2e.1.h.0..")
    assert frame.named == b'id: 2e.1.h.0..\nevent: event\ndata: {"id":"x"}\n\n'
    assert frame.unnamed == b'id: 2e.1.h.0..\ndata: {"id":"x"}\n\n'
    assert (frame.entry, frame.cursor) == (item, "2e.1.h.0..")
    assert feeds.frame_for(Feed.EVENTS, item, "c") == b'id: c\ndata: {"id":"x"}\n\n'
    run = feeds.entry(0, (1, 0), {b"t": b"run.failed", b"d": b"{}"})
    assert feeds.frames(run, "c").unnamed is None


@pytest.mark.parametrize(
    "fields",
    [{b"d": b"{}"}, {b"t": b"event"}, {b"t": b"bad\nname", b"d": b"{}"}, {b"t": b"", b"d": b"{}"}],
)
def test_unusable_entries_are_passed_over(fields: dict[bytes, bytes]) -> None:
    item = feeds.entry(0, (1, 0), fields)
    assert (item.stream, item.id, item.name) == (0, (1, 0), b"")  # a cursor still moves past it
    assert not feeds.wants(Feed.STREAM, None, item.name)
    assert not feeds.wants(Feed.EVENTS, None, item.name)


def test_reset_frame() -> None:
    assert feeds.reset_frame("expired", "2a.1.2.0..").startswith(b"id: 2a.1.2.0..\nevent: reset\n")
    assert feeds.reset_frame("epoch", None).startswith(b"event: reset\ndata: ")
