from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.stream import sse

pytestmark = pytest.mark.unit


def _parse(raw: bytes) -> list[dict[str, str]]:
    """A minimal WHATWG event-stream parser, to check what a client would see."""
    events, current, data = [], {}, []
    for line in raw.decode().replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if line == "":
            if data or current:
                events.append({**current, "data": "\n".join(data)})
            current, data = {}, []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data.append(value)
        else:
            current[name] = value
    return events


def test_named_frame_with_id() -> None:
    assert sse.frame(b'{"a":1}', event="run.failed", id="1abc.1.2.3.0") == (
        b'id: 1abc.1.2.3.0\nevent: run.failed\ndata: {"a":1}\n\n'
    )


def test_unnamed_frame() -> None:
    assert sse.frame(b"{}") == b"data: {}\n\n"


@given(
    st.binary(max_size=200).filter(lambda b: b"\0" not in b),
    st.sampled_from([None, "event", "x.y"]),
)
def test_data_survives_any_newlines(payload: bytes, event: str | None) -> None:
    try:
        text = payload.decode()
    except UnicodeDecodeError:
        return
    parsed = _parse(sse.frame(payload, event=event, id="1"))
    assert len(parsed) == 1
    expected = text.replace("\r\n", "\n").replace("\r", "\n")
    assert parsed[0]["data"] == expected
    assert parsed[0].get("event") == event
    assert parsed[0]["id"] == "1"


@pytest.mark.parametrize("bad", ["a\nb", "a\rb", "a\r\nevent: x", "a\0b"])
def test_names_and_ids_cannot_inject(bad: str) -> None:
    with pytest.raises(sse.FrameError):
        sse.frame(b"{}", event=bad)
    with pytest.raises(sse.FrameError):
        sse.frame(b"{}", id=bad)
    with pytest.raises(sse.FrameError):
        sse.comment(bad)


def test_ping_and_keepalive() -> None:
    assert _parse(sse.PING) == [{"event": "ping", "data": "{}"}]
    assert _parse(sse.KEEPALIVE) == []
