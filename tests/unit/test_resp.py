"""The publisher's hand-packed commands are byte for byte what redis-py would send."""

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.connection import Connection

from services.ingest import resp

pytestmark = pytest.mark.unit

PACKER = Connection()  # only its pack_command is used: no socket is opened


def redis_py(*args: object) -> bytes:
    return b"".join(PACKER.pack_command(*args))


@given(
    st.lists(
        st.tuples(st.sampled_from(["s", "llmwatch:{p0.40}:events", "ünï:{x}"]), st.binary()),
        max_size=5,
    ),
    st.binary(min_size=1, max_size=3),
)
def test_xadds_are_packed_as_redis_py_packs_them(
    entries: list[tuple[str, bytes]], field: bytes
) -> None:
    heads: dict[str, bytes] = {}
    packed = resp.pack_xadds(heads, field, entries)
    assert packed == [redis_py("XADD", stream, "*", field, value) for stream, value in entries]
    assert set(heads) == {stream for stream, _ in entries}  # each stream's head packed once


@pytest.mark.parametrize(("timeout_ms", "sent"), [(250, 250), (0, 1), (-5, 1)])
def test_wait_never_asks_to_block_forever(timeout_ms: int, sent: int) -> None:
    assert resp.wait(1, timeout_ms) == redis_py("WAIT", 1, sent)
