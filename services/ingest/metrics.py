"""Ingest's Prometheus metrics, registered on the app's own registry (`ctx.registry`)."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Metric
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from shared.errors import LlmwatchError
from shared.metrics import LATENCY_BUCKETS

SOURCES = ("webhook", "llmonitor")
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)

# Why a request was refused, by status (the `reason` label of the rejected counter).
REASONS = {
    400: "invalid_json",
    401: "unauthorized",
    403: "unregistered_app",
    408: "body_timeout",
    413: "too_large",
    415: "unsupported_media_type",
    422: "schema",
    429: "rate_limited",
    503: "unavailable",
}


def reason_of(exc: LlmwatchError) -> str:
    """The `reason` label: set on the error (e.g. `backpressure`), else derived from its status."""
    return getattr(exc, "reason", None) or REASONS.get(exc.status, str(exc.status))


class Tally:
    """A histogram in plain ints, for values observed on every request: prometheus-client's
    Histogram takes two locks per observation, this one none (one event loop thread)."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def buckets(self) -> list[tuple[str, float]]:
        """Cumulative (`le`, count) pairs, as the exposition format wants them."""
        out, running = [], 0
        for bound, count in zip(
            (*map(floatToGoString, self.bounds), "+Inf"), self.counts, strict=True
        ):
            running += count
            out.append((bound, float(running)))
        return out


class IngestMetrics:
    """The per-request figures are plain ints (`in_flight`, `accepted`, `publish_seconds`)
    exported by a collector at scrape time; the rarer ones are prometheus-client metrics."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.rejected = Counter(
            "llmwatch_ingest_events_rejected_total",
            "Events refused (a request refused before its events were counted counts as 1)",
            ["source", "reason"],
            registry=registry,
        )
        self.undocumented = Counter(
            "llmwatch_ingest_undocumented_values_total",
            "Accepted events whose field held a value outside the documented set (kept verbatim)",
            ["source", "field"],
            registry=registry,
        )
        self.pipeline_size = Histogram(
            "llmwatch_ingest_pipeline_entries",
            "XADDs sent in one round trip to one Redis master (group commit of concurrent requests)",
            buckets=BATCH_BUCKETS,
            registry=registry,
        )
        self.backlog = Gauge(
            "llmwatch_ingest_stream_backlog",
            "Unconsumed entries per event stream partition, as last sampled",
            ["partition"],
            registry=registry,
        )
        self.in_flight = 0
        self.accepted = dict.fromkeys(SOURCES, 0)
        self.publish_seconds = Tally(LATENCY_BUCKETS)
        registry.register(_HotMetrics(self))

    def count_accepted(self, source: str, n: int) -> None:
        self.accepted[source] += n

    def count_rejected(self, source: str, reason: str, n: int = 1) -> None:
        self.rejected.labels(source, reason).inc(max(1, n))

    def count_undocumented(self, source: str, fields: tuple[str, ...]) -> None:
        for name in fields:
            self.undocumented.labels(source, name).inc()


class _HotMetrics(Collector):
    def __init__(self, metrics: IngestMetrics) -> None:
        self._m = metrics

    def collect(self) -> Iterator[Metric]:
        m = self._m
        accepted = CounterMetricFamily(
            "llmwatch_ingest_events_accepted",
            "Events published to the event stream",
            labels=["source"],
        )
        for source, count in m.accepted.items():
            accepted.add_metric([source], float(count))
        yield accepted
        yield GaugeMetricFamily(
            "llmwatch_ingest_requests_in_flight", "Write requests being handled", m.in_flight
        )
        yield HistogramMetricFamily(
            "llmwatch_ingest_publish_seconds",
            "Time from queueing a request's events to Redis acknowledging their XADDs",
            buckets=m.publish_seconds.buckets(),
            sum_value=m.publish_seconds.sum,
        )
