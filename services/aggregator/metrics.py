"""The aggregator's Prometheus metrics, on the app's own registry."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from shared.metrics import LATENCY_BUCKETS


@dataclass
class AggregatorMetrics:
    processed: Counter
    failed: Counter
    deadlettered: Counter
    duplicates: Counter
    conflicts: Counter
    batch_seconds: Histogram
    lag: Gauge
    pending: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry) -> AggregatorMetrics:
        return cls(
            processed=Counter(
                "llmwatch_aggregator_events_processed",
                "Events applied to state, exactly once",
                ["source"],
                registry=registry,
            ),
            failed=Counter(
                "llmwatch_aggregator_events_failed",
                "Event deliveries that failed (retried later)",
                ["reason"],
                registry=registry,
            ),
            deadlettered=Counter(
                "llmwatch_aggregator_deadletters",
                "Entries moved to the dead-letter stream",
                registry=registry,
            ),
            duplicates=Counter(
                "llmwatch_aggregator_duplicates_skipped",
                "Deliveries skipped because the event id was already applied",
                registry=registry,
            ),
            conflicts=Counter(
                "llmwatch_aggregator_commit_conflicts",
                "Optimistic commits retried after a concurrent write",
                registry=registry,
            ),
            batch_seconds=Histogram(
                "llmwatch_aggregator_batch_apply_seconds",
                "Time to fold, commit, notify and acknowledge one batch",
                buckets=LATENCY_BUCKETS,
                registry=registry,
            ),
            lag=Gauge(
                "llmwatch_consumer_lag",
                "Entries not yet delivered to the aggregator group",
                ["partition"],
                registry=registry,
            ),
            pending=Gauge(
                "llmwatch_consumer_pending",
                "Entries delivered but not yet acknowledged",
                ["partition"],
                registry=registry,
            ),
        )
