"""The lane's run cache (services/aggregator/runcache.py): claims, publications, eviction."""

from __future__ import annotations

import asyncio

import pytest

from services.aggregator import runcache

pytestmark = pytest.mark.unit


def test_a_batch_knows_the_runs_earlier_claims_published() -> None:
    cache = runcache.RunCache(limit=100, ttl_s=60)
    one, earlier = cache.claim(0, ["r1", "r2"])
    assert earlier == []
    _, earlier = cache.claim(0, ["r2", "r3"])
    assert earlier == [one]
    runcache.RunCache.publish(one, {"r1": ({"n": 1}, {}, "1"), "r2": ({"n": 2}, {}, "2")}, [])
    known = cache.known(0, ["r2", "r3"], earlier)
    assert set(known.states) == {"r2"} and not known.valid()  # published, not yet landed
    assert one.publication is not None
    one.publication.settle(landed=True)
    assert known.valid()
    _, earlier = cache.claim(1, ["r2"])  # another partition: another run
    assert earlier == []


def test_the_cache_forgets_the_oldest_runs_first() -> None:
    cache = runcache.RunCache(limit=3, ttl_s=60)
    for i in range(5):
        cache.claim(0, [f"r{i}"])
    assert cache.claim(0, ["r0"])[1] == []  # evicted
    assert cache.claim(0, ["r4"])[1] != []
    stale = runcache.RunCache(limit=10, ttl_s=0)
    stale.claim(0, ["r"])
    assert stale.claim(0, ["r"])[1] == []  # past its ttl: read from Redis again


async def test_a_doomed_guess_is_waited_for_not_folded_on() -> None:
    cache = runcache.RunCache(limit=100, ttl_s=60)
    one, _ = cache.claim(0, ["r"])
    two, earlier = cache.claim(0, ["r"])
    first = runcache.RunCache.publish(one, {"r": ({"n": 1}, {}, "1")}, [])
    guess = cache.known(0, ["r"], earlier)
    second = runcache.RunCache.publish(two, {"r": ({"n": 2}, {}, "2")}, guess.sources)
    _, earlier = cache.claim(0, ["r"])  # a third batch, after `two`
    await asyncio.wait_for(earlier[0].settled(), 1)  # `two`'s guess is pending, not doomed
    first.settle(landed=False)  # `one` conflicted: `two`'s fold is doomed
    assert second.doomed() and not guess.valid()
    waiting = asyncio.ensure_future(earlier[0].settled())
    await asyncio.sleep(0.01)
    assert not waiting.done()  # `three` waits for `two` to commit its second fold
    runcache.RunCache.publish(two, {"r": ({"n": 2}, {}, "2")}, []).settle(landed=True)
    two.done.set()
    await asyncio.wait_for(waiting, 1)
    assert cache.known(0, ["r"], earlier).valid()
    assert first.sources == [] and second.sources == [first]  # settled ones let go
