"""Helpers for the aggregator tests: normalised DashboardEvents (the shape ingest writes) and
publishing them to the partitioned event streams, as ingest would."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from services.aggregator.consumer import Consumer
from services.aggregator.metrics import AggregatorMetrics
from shared import keys
from shared.schemas import LLMONITOR_EVENT_MAP
from shared.settings import Settings

LLMONITOR_MAP = LLMONITOR_EVENT_MAP


def webhook(
    event_type: str = "request",
    status: str = "start",
    *,
    command: str = "ask",
    model: str | None = "gpt-4o",
    metadata: dict[str, Any] | None = None,
    timestamp: str = "2026-01-01T00:00:00.000Z",
    id: str | None = None,
) -> dict[str, Any]:
    return {
        "id": id or str(uuid.uuid4()),
        "timestamp": timestamp,
        "event_type": event_type,
        "command": command,
        "status": status,
        "model": model,
        "metadata": dict(metadata or {}),
        "source": "webhook",
    }


def llmonitor(
    event: str,
    run_id: str,
    *,
    type: str = "llm",
    name: str | None = None,
    timestamp: str = "2026-01-01T00:00:00.000Z",
    **fields: Any,
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "type": type,
        "event": event,
        "app": "app-1",
        "runId": run_id,
        "timestamp": timestamp,
        **fields,
    }
    if name is not None:
        meta["name"] = name
    event_type, status = LLMONITOR_MAP[event]
    return {
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{run_id}|{event}|{timestamp}")),
        "timestamp": timestamp,
        "event_type": event_type,
        "command": f"{type}:{name}" if name else type,
        "status": status,
        "model": name if type == "llm" and name else None,
        "metadata": meta,
        "source": "llmonitor",
    }


def routing_key(event: dict[str, Any]) -> str:
    meta = event.get("metadata") or {}
    return str(meta.get("runId") or meta.get("session_id") or event["id"])


async def publish(redis: Redis, settings: Settings, events: list[dict[str, Any]]) -> list[str]:
    """XADD each event to its partition's stream; returns the stream ids."""
    async with redis.pipeline(transaction=False) as pipe:
        for event in events:
            partition = keys.partition_for(routing_key(event), settings.partitions)
            pipe.xadd(keys.events_stream(partition), {keys.EVENT_FIELD: orjson.dumps(event)})
        ids = await pipe.execute()
    return [i.decode() for i in ids]


def consumer(redis: Redis, settings: Settings, name: str | None = None) -> Consumer:
    return Consumer(redis, settings, AggregatorMetrics.create(CollectorRegistry()), name=name)
