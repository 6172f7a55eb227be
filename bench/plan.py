"""How big and how long each figure runs: `smoke` (the test), `quick` (`make bench`), `full`."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path


@dataclass(frozen=True)
class Plan:
    mode: str
    workdir: Path
    duration_s: float  # one wrk / sender measurement
    rounds: int  # reference and subject alternate this many times; medians are reported
    wrk_connections: int
    agg_events: int  # events in the stream both drains read
    latency_clients: int
    latency_rate: int  # events/s
    latency_receivers: int  # receiver processes
    fanout_clients: int
    fanout_receivers: int
    fanout_offered: tuple[int, ...]  # offered deliveries/s, one step each
    growth_small: int
    growth_large: int
    growth_requests: int  # sequential GETs per route and stack, alternating small/large
    profile: bool = False
    warmup_s: float = 1.0  # a discarded load run before each measured one (0: none)
    grace_s: float = 1.0  # after sending, for the last SSE frames to arrive
    idle_s: float = 2.0  # idle SSE clients settle before the gateway's RSS is read
    shard_masters: int = 3  # the cluster side of the shards figure
    shard_partitions: int = 6  # both sides of the shards figure (2 per master)
    shard_events: int = 30_000  # per side and round; > 1 read (partitions × consumer batch)


def make_plan(mode: str, workdir: Path, *, profile: bool = False) -> Plan:
    quick = Plan(
        mode="quick", workdir=workdir, duration_s=5, rounds=1, wrk_connections=64,
        agg_events=60_000, latency_clients=100, latency_rate=1000, latency_receivers=2,
        fanout_clients=1000, fanout_receivers=2, fanout_offered=(50_000, 100_000, 200_000),
        growth_small=10_000, growth_large=100_000, growth_requests=5000,
        profile=profile,
    )  # fmt: skip
    if mode == "quick":
        return quick
    if mode == "full":
        return replace(
            quick, mode="full", duration_s=10, rounds=3, agg_events=300_000,
            fanout_clients=5000, fanout_receivers=4,
            fanout_offered=(50_000, 100_000, 150_000, 200_000, 300_000),
            growth_large=1_000_000, growth_requests=10_000, shard_events=100_000,
        )  # fmt: skip
    if mode == "smoke":
        return replace(
            quick, mode="smoke", duration_s=1, wrk_connections=8, agg_events=2_000,
            latency_clients=4, latency_rate=100, latency_receivers=1,
            fanout_clients=100, fanout_receivers=1, fanout_offered=(5_000,),
            growth_small=200, growth_large=400, growth_requests=100,
            warmup_s=0, grace_s=0.5, idle_s=0.5, shard_events=6_000,
        )  # fmt: skip
    raise ValueError(f"unknown mode {mode!r}")
