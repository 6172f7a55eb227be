"""The SSE cursor: round trip, strict parsing, and the resume semantics of a single position."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared import cursor
from shared.cursor import MAX_SEQ, NOTHING, Cursor, CursorError, Position

pytestmark = pytest.mark.unit

epochs = st.text(alphabet="0123456789abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=16)
partitions = st.integers(1, 1024)
ms = st.integers(0, 2**48)
seqs = st.one_of(st.integers(0, 5), st.integers(0, MAX_SEQ))


@st.composite
def cursors(draw: st.DrawFn) -> Cursor:
    parts = draw(partitions)
    pos = Position(draw(ms), draw(seqs), draw(st.integers(0, parts + 1)))
    return Cursor(draw(epochs), parts, pos)


@st.composite
def layout_positions(draw: st.DrawFn, streams: int = 4) -> Position:
    return Position(
        draw(st.integers(1, 6)), draw(st.integers(0, 3)), draw(st.integers(0, streams - 1))
    )


@given(cursors())
def test_round_trip(c: Cursor) -> None:
    text = cursor.encode(c)
    assert cursor.decode(text) == c


@given(cursors())
def test_wire_form_is_header_safe_and_short(c: Cursor) -> None:
    text = cursor.encode(c)
    assert set(text) <= set("0123456789abcdefghijklmnopqrstuvwxyz.")
    assert len(text) <= cursor.MAX_TEXT


@given(st.text(max_size=120))
def test_decode_never_raises_anything_but_cursor_error(text: str) -> None:
    try:
        cursor.decode(text)
    except CursorError:
        pass


@pytest.mark.parametrize(
    "text",
    ["", "0abc.1.0.0.0", "1abc.1.0.0", "1abc.1.0.0.3", "1ABC.1.0.0.0", "1abc.0.0.0.0",
     "1abc.1.0.0.0\r\nx", "1abc.1.0.0.0 ", "1" + "a" * 17 + ".1.0.0.0", "1abc.1.zzzzzzzzzzzzz.0.0"],
)  # fmt: skip
def test_decode_rejects(text: str) -> None:
    with pytest.raises(CursorError):
        cursor.decode(text)


def test_encode_refuses_an_unsafe_epoch() -> None:
    with pytest.raises(ValueError):
        cursor.encode(Cursor("a\nb", 1, Position(1, 0, 0)))


@given(layout_positions(), layout_positions())
def test_seen_is_exactly_delivery_order(seen_up_to: Position, entry: Position) -> None:
    """A client that saw everything up to `seen_up_to` has seen `entry` iff it came no later."""
    after = cursor.vector(seen_up_to, 4)
    assert cursor.is_seen(after, entry) == (entry <= seen_up_to)


@given(layout_positions(), layout_positions())
def test_advance_is_the_later_position(a: Position, b: Position) -> None:
    assert cursor.advance(cursor.vector(a, 4), b) == cursor.vector(max(a, b), 4)


@given(st.lists(layout_positions(), min_size=1, max_size=5), layout_positions())
def test_nothing_past_the_horizon_is_seen(progress: list[Position], entry: Position) -> None:
    after = [NOTHING] * 4
    for pos in progress:
        after = cursor.advance(after, pos)
    if entry > cursor.horizon(after):
        assert not cursor.is_seen(after, entry)


@given(st.tuples(st.integers(0, 2**40), seqs))
def test_successor_and_predecessor_are_inverse(sid: tuple[int, int]) -> None:
    assert cursor.predecessor(cursor.successor(sid)) == sid
    if sid != NOTHING:
        assert cursor.successor(cursor.predecessor(sid)) == sid
        assert cursor.predecessor(sid) < sid < cursor.successor(sid)


def test_stream_ids() -> None:
    assert cursor.parse_id(b"1700000000000-3") == (1700000000000, 3)
    assert cursor.format_id((5, 0)) == "5-0"
    assert cursor.successor((5, MAX_SEQ)) == (6, 0)
    assert cursor.predecessor((0, 0)) == NOTHING


def test_safe_bound_holds_back_the_current_millisecond_and_truncated_streams() -> None:
    assert cursor.safe_bound(100, 3, []) == Position(99, MAX_SEQ, 2)
    truncated = [Position(50, 7, 1), Position(60, 0, 0)]
    assert cursor.safe_bound(100, 3, truncated) == Position(50, 7, 1)


def test_covered_per_stream() -> None:
    pos = Position(10, 0, 1)
    assert cursor.vector(pos, 3) == [(10, 0), (10, 0), (9, MAX_SEQ)]


@pytest.mark.parametrize(
    ("start", "first", "max_deleted", "length", "cap", "lost"),
    [
        ((5, 0), (3, 0), (0, 0), 10, 100, False),  # Redis 7: nothing deleted
        ((5, 0), (9, 0), (8, 0), 10, 100, True),  # Redis 7: entries from 5-0 on were trimmed
        ((5, 0), (9, 0), (4, 9), 10, 100, False),  # Redis 7: only older ones were trimmed
        ((5, 0), (9, 0), None, 10, 100, False),  # Redis 6.2: under its cap, never trimmed
        ((5, 0), (9, 0), None, 100, 100, True),  # Redis 6.2: at its cap and below the first
        ((5, 0), (5, 0), None, 100, 100, False),  # Redis 6.2: the first entry is the next one
        ((5, 0), None, None, 0, 100, False),  # empty stream
    ],
)  # fmt: skip
def test_lost(
    start: tuple[int, int], first: tuple[int, int] | None, max_deleted: tuple[int, int] | None,
    length: int, cap: int, lost: bool,
) -> None:  # fmt: skip
    assert cursor.lost(start, first=first, max_deleted=max_deleted, length=length, cap=cap) is lost
