"""The run states a lane's own commits wrote, or are about to write (speculation, checked).

Consecutive batches of a partition usually share a few runs (a session's events straddle the
batch boundary). Without this, the next batch must wait for the previous commit to land before
it can read those runs back: the fold and the commit script take turns instead of overlapping.
Here each commit *publishes* the run states it folded, before its script runs; the next batch
folds on them at once and only reads the runs nobody here published.

A publication is only a guess until its commit lands with exactly that write set. A batch that
folded on one checks, right before it writes (its turn comes after the publisher's), that every
publication it used landed; if one did not (its commit conflicted and was folded again, or
failed), it throws its fold away and takes the safe path: read everything back, fold again. Each
fold is published, the safe one too, and a batch that finds its predecessor's guess doomed waits
for that commit instead: one miss costs the batches already folded on it, not every later one.
Against other writers (replicas), the commit's compare-and-set on run versions still holds: a
landed publication is the state in Redis until someone else bumps the run's version, which only
grows, so a stale entry fails the check instead of being written over.

Entries are kept for a while after they land (`ttl_s`, `limit` runs): a run that comes back
soon folds without a read. One cache per lane; a run belongs to one partition, and a partition
to one lane.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from services.aggregator.runs import Facts

RunState = tuple[Facts, dict[str, Any], str]  # facts, view, version (the run hash's `n`)


@dataclass(eq=False)
class Publication:
    """One fold's run states, as its commit is about to write them. `sources`: the
    publications it folded on, kept only until it lands or fails."""

    states: dict[str, RunState]
    sources: list[Publication] = field(default_factory=list)
    landed: bool = False
    failed: bool = False

    def settle(self, landed: bool) -> None:
        self.landed, self.failed, self.sources = landed, not landed, []

    def doomed(self) -> bool:
        """True when it cannot land as published: it, or a guess it folded on, failed."""
        return self.failed or any(p.doomed() for p in self.sources)


@dataclass(eq=False)
class Claim:
    """A commit's place in line for its runs. The batches after it wait for its first fold,
    or for its commit when that fold is doomed (so a miss is paid once, not by every batch
    after it)."""

    partition: int
    folded: asyncio.Event = field(default_factory=asyncio.Event)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    publication: Publication | None = None

    async def settled(self) -> None:
        await self.folded.wait()
        if self.publication is None or self.publication.doomed():
            await self.done.wait()


@dataclass
class Known:
    """What a batch may assume about some of its runs instead of reading them."""

    states: dict[str, RunState]
    sources: list[Publication]

    def valid(self) -> bool:
        """True when every publication these states came from has landed as published."""
        return all(p.landed for p in self.sources)


class RunCache:
    def __init__(self, limit: int = 20_000, ttl_s: float = 120.0) -> None:
        self.limit = limit
        self.ttl_s = ttl_s
        # (partition, run id) -> the latest claim on it, and when it was made; oldest first.
        # An OrderedDict: popping a plain dict's first items leaves holes that every later
        # `next(iter(...))` walks over again.
        self._latest: OrderedDict[tuple[int, str], tuple[Claim, float]] = OrderedDict()

    def claim(self, partition: int, run_ids: Iterable[str]) -> tuple[Claim, list[Claim]]:
        """A new commit's claim on `run_ids`, and the earlier claims on them it must wait for
        (their first fold, not their commit)."""
        now = time.monotonic()
        mine = Claim(partition)
        earlier: dict[int, Claim] = {}
        for run_id in run_ids:
            key = (partition, run_id)
            found = self._latest.get(key)
            if found is not None:
                if now - found[1] < self.ttl_s:
                    earlier[id(found[0])] = found[0]
                self._latest.move_to_end(key)
            self._latest[key] = (mine, now)
        self._evict(now)
        return mine, list(earlier.values())

    def known(self, partition: int, run_ids: Iterable[str], earlier: list[Claim]) -> Known:
        """The published states of `run_ids` in the earlier claims (after `Claim.settled`)."""
        states: dict[str, RunState] = {}
        sources: dict[int, Publication] = {}
        for claim in earlier:
            publication = claim.publication
            if publication is None:
                continue  # it failed before folding: those runs are read from Redis
            for run_id in run_ids:
                state = publication.states.get(run_id)
                if state is not None:
                    states[run_id] = state
                    sources[id(publication)] = publication
        return Known(states, list(sources.values()))

    @staticmethod
    def publish(
        claim: Claim, states: dict[str, RunState], sources: list[Publication]
    ) -> Publication:
        """A fold's states, for the batches after `claim` (the latest fold replaces earlier)."""
        publication = claim.publication = Publication(states, list(sources))
        claim.folded.set()
        return publication

    def _evict(self, now: float) -> None:
        latest = self._latest
        while len(latest) > self.limit:
            latest.popitem(last=False)
        while latest:
            _, (_, at) = next(iter(latest.items()))
            if now - at < self.ttl_s:
                break
            latest.popitem(last=False)
