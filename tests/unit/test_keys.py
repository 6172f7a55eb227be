import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared import keys

pytestmark = pytest.mark.unit


def _slot_tag(key: str) -> str:
    start = key.index("{")
    return key[start + 1 : key.index("}", start)]


@given(st.text(), st.integers(min_value=1, max_value=64))
def test_partition_is_stable_and_in_range(routing_key: str, partitions: int) -> None:
    p = keys.partition_for(routing_key, partitions)
    assert 0 <= p < partitions
    assert p == keys.partition_for(routing_key, partitions)


def test_one_partition_is_always_zero() -> None:
    assert {keys.partition_for(str(i), 1) for i in range(100)} == {0}


def test_partitions_spread() -> None:
    seen = {keys.partition_for(f"run-{i}", 8) for i in range(1000)}
    assert seen == set(range(8))


def test_partition_keys_share_one_slot_tag() -> None:
    tags = {
        _slot_tag(keys.events_stream(3)),
        _slot_tag(keys.feed_stream(3)),
        _slot_tag(keys.deadletter_stream(3)),
        _slot_tag(keys.partition_key(3, "stats")),
    }
    assert tags == {keys.partition_tag(3)}
    assert _slot_tag(keys.events_stream(4)) != _slot_tag(keys.events_stream(3))


def test_feed_order_is_partitions_then_notify_then_system() -> None:
    feeds = keys.feed_streams(2)
    assert feeds == [keys.feed_stream(0), keys.feed_stream(1), keys.NOTIFY_FEED, keys.SYSTEM_FEED]


@given(st.integers(min_value=1, max_value=6), st.integers(min_value=1, max_value=96))
def test_partitions_spread_evenly_over_equal_slot_ranges(masters: int, partitions: int) -> None:
    """P partitions over M masters holding equal contiguous slot ranges (what `redis-cli
    --cluster create` and managed clusters do): every master gets P/M of them, give or take one."""
    from redis.crc import key_slot

    counts = [0] * masters
    for p in range(partitions):
        slot = key_slot(keys.events_stream(p).encode())
        counts[slot * masters // keys.SLOTS] += 1
    assert max(counts) - min(counts) <= 2
    assert min(counts) >= partitions // masters - 1
