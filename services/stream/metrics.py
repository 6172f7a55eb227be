"""The stream gateway's Prometheus instruments, registered on the app's own registry."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

FANOUT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


@dataclass(frozen=True)
class StreamMetrics:
    streams_open: Gauge
    events_sent: Counter
    clients_dropped: Counter
    refused: Counter
    fanout_latency: Histogram
    reader_entries: Counter
    reader_errors: Counter
    resets: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> StreamMetrics:
        return cls(
            streams_open=Gauge(
                "llmwatch_sse_streams_open", "SSE streams open", ["feed"], registry=registry
            ),
            events_sent=Counter(
                "llmwatch_sse_events_sent", "SSE messages written to clients (pings excluded)",
                ["feed"], registry=registry,
            ),
            clients_dropped=Counter(
                "llmwatch_sse_clients_dropped",
                "SSE clients disconnected for falling behind (queue full or send timeout)",
                ["reason"], registry=registry,
            ),
            refused=Counter(
                "llmwatch_sse_streams_refused", "SSE connections refused with 429", ["limit"],
                registry=registry,
            ),
            fanout_latency=Histogram(
                "llmwatch_sse_fanout_latency_seconds",
                "Feed entry id time (Redis clock) to the frame written to a client socket",
                buckets=FANOUT_BUCKETS, registry=registry,
            ),
            reader_entries=Counter(
                "llmwatch_sse_reader_entries", "Feed entries read by this process's reader",
                registry=registry,
            ),
            reader_errors=Counter(
                "llmwatch_sse_reader_errors", "Feed reads that failed (Redis errors), over every lane",
                registry=registry,
            ),
            resets=Counter(
                "llmwatch_sse_resets", "`reset` events sent instead of a replay", ["reason"],
                registry=registry,
            ),
        )  # fmt: skip
