"""The SSE cursor: round trip, strict parsing, the incremental encoder and vector helpers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared import cursor
from shared.cursor import MAX_MS, MAX_SEQ, NOTHING, Cursor, CursorError
from shared.settings import Settings

pytestmark = pytest.mark.unit

epochs = st.text(alphabet="0123456789abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=16)
now = 1_780_000_000_000
sids = st.one_of(
    st.just(NOTHING),
    st.tuples(st.integers(now - 10**8, now), st.integers(0, 3)),  # busy streams, today
    st.tuples(st.integers(0, MAX_MS), st.integers(0, MAX_SEQ)),  # anything Redis could issue
).filter(lambda sid: sid != (0, 0) or sid is NOTHING)


@st.composite
def cursors(draw: st.DrawFn, max_partitions: int = 40) -> Cursor:
    parts = draw(st.integers(1, max_partitions))
    vector = draw(st.lists(sids, min_size=parts + 2, max_size=parts + 2))
    return Cursor(draw(epochs), parts, tuple(vector))


@given(cursors())
def test_round_trip(c: Cursor) -> None:
    assert cursor.decode(cursor.encode(c)) == c


@given(cursors())
def test_wire_form_is_header_safe_and_bounded_by_its_layout(c: Cursor) -> None:
    text = cursor.encode(c)
    assert set(text) <= set("0123456789abcdefghijklmnopqrstuvwxyz.-")
    assert len(text) <= cursor.max_text(c.partitions) <= cursor.MAX_TEXT


def test_the_bound_covers_the_largest_layout() -> None:
    assert cursor.MAX_PARTITIONS == Settings.model_fields["partitions"].metadata[1].le
    widest = (MAX_MS, MAX_SEQ)
    biggest = Cursor("z" * 16, cursor.MAX_PARTITIONS, (NOTHING,) + (widest,) * 1025)
    assert len(cursor.encode(biggest)) <= cursor.MAX_TEXT
    assert cursor.decode(cursor.encode(biggest)) == biggest


def test_busy_streams_cost_a_few_bytes_each() -> None:
    """What README promises: ~40 bytes for one partition, ~5 bytes per partition with many."""
    one = Cursor("a1b2c3d4", 1, ((now, 0), (now - 60_000, 0), (now - 4_000, 1)))
    assert len(cursor.encode(one)) <= 40
    many = Cursor("a1b2c3d4", 1024, tuple((now - 37 * i, i % 2) for i in range(1026)))
    assert len(cursor.encode(many)) <= 6 * 1026


@given(st.text(max_size=120))
def test_decode_never_raises_anything_but_cursor_error(text: str) -> None:
    try:
        cursor.decode(text)
    except CursorError:
        pass


@given(cursors(max_partitions=3), st.data())
def test_a_mangled_cursor_raises_only_cursor_error(c: Cursor, data: st.DataObject) -> None:
    text = cursor.encode(c)
    at = data.draw(st.integers(0, len(text)))
    cut = data.draw(st.integers(0, 3))
    insert = data.draw(st.text(alphabet="0123456789az.-\r\n \x00é", max_size=3))
    mangled = text[:at] + insert + text[at + cut :]
    try:
        again = cursor.decode(mangled)
    except CursorError:
        return
    assert len(again.vector) == cursor.stream_count(again.partitions)


@pytest.mark.parametrize(
    "text",
    ["", "2abc.1.0..", "2abc.1.0.0.0.0", "1abc.1.0.0.0", "2ABC.1.5.0.0.0", "2abc.0.5.",
     "2abc.1.5.0.0.0\r\nx", "2abc.1.5.0.0.0 ", "2" + "a" * 17 + ".1.5.0.0.0",
     "2abc.1.5.6.0.0",  # a stream id below 0
     "2abc.1.0.0..",  # 0-0 spelled out instead of the empty segment
     "2abc.1.5.0-0..",  # sequence 0 written out
     "2abc.1.5.01..",  # a leading zero
     "2abc.1.zzzzzzzzzzzzz...",  # base past 64 bits
     "2abc.1.5.0-zzzzzzzzzzzzz..",  # sequence past 64 bits
     "2abc.sh.5." + "." * 1026,  # 1025 partitions
     "2abc.1.5.0." + "0" * cursor.MAX_TEXT,
     "2abc.1.5.٣..",  # a non-ASCII digit
    ],
)  # fmt: skip
def test_decode_rejects(text: str) -> None:
    with pytest.raises(CursorError):
        cursor.decode(text)


def test_encode_refuses_an_unsafe_epoch_or_a_vector_of_another_layout() -> None:
    with pytest.raises(ValueError):
        cursor.encode(Cursor("a\nb", 1, (NOTHING,) * 3))
    with pytest.raises(ValueError):
        cursor.encode(Cursor("ab", 2, (NOTHING,) * 3))


moves = st.lists(
    st.tuples(st.integers(0, 4), st.integers(now - 5000, now + 5000), st.integers(0, 3)),
    max_size=60,
)


@given(st.lists(sids, min_size=5, max_size=5), moves)
def test_the_encoder_gives_the_running_maximum(start: list[tuple[int, int]], steps: list) -> None:
    """Each stream only moves forward, and every text decodes to exactly the vector so far."""
    enc = cursor.Encoder("e1", 3, start)
    expected = list(start)
    for stream, ms, seq in steps:
        before = cursor.decode(enc.text()).vector
        enc.advance(stream, (ms, seq))
        expected[stream] = max(expected[stream], (ms, seq))
        after = cursor.decode(enc.text()).vector
        assert list(after) == expected == enc.vector
        assert all(b <= a for b, a in zip(before, after, strict=True))  # monotonic


def test_the_encoder_reencodes_one_block_and_follows_the_epoch() -> None:
    enc = cursor.Encoder("e1", 100, [(now, 0)] * 102)
    enc.advance(70, (now + 1, 0))  # one segment in block 2; base unchanged
    assert cursor.decode(enc.text()).vector[70] == (now + 1, 0)
    enc.advance(3, (now + 10 * cursor.REBASE_MS, 5))  # past the base: everything re-encoded
    decoded = cursor.decode(enc.text())
    assert decoded.vector[3] == (now + 10 * cursor.REBASE_MS, 5)
    assert decoded.vector[70] == (now + 1, 0) and decoded.vector[0] == (now, 0)
    enc.set_epoch("e2")
    assert cursor.decode(enc.text()).epoch == "e2"


def test_ahead_and_merged() -> None:
    hub = [(5, 0), (7, 1), NOTHING]
    client = [(5, 0), (7, 2), (1, 0)]
    ahead = cursor.ahead(client, hub)
    assert ahead == {1: (7, 2), 2: (1, 0)}
    assert cursor.merged(hub, ahead) == [(5, 0), (7, 2), (1, 0)]
    assert cursor.merged([(9, 0), (8, 0), (2, 0)], ahead) == [(9, 0), (8, 0), (2, 0)]


def test_stream_ids() -> None:
    assert cursor.parse_id(b"1700000000000-3") == (1700000000000, 3)
    assert cursor.format_id((5, 0)) == "5-0"
    assert cursor.successor((5, MAX_SEQ)) == (6, 0)
    assert cursor.successor(NOTHING) == (0, 1)


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
