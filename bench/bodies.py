"""Request bodies the benchmarks send: pure functions, bytes out.

wrk templates carry `@ID@` placeholders that the Lua script fills with a unique id per request,
so no two events share an id (the aggregator would count a repeated id once). Loader groups
carry `zzE…zz`/`zzS…zz` tokens that survive normalisation verbatim, so one group posted through
ingest becomes a template for millions of stored events (see `bench.loader`).
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson

PLACEHOLDER = "@ID@"
BENCH_APP = "5f0c1e6a-7b7d-4f1e-9a51-benchbench000"  # registered through LLMWATCH_APPS
TIMESTAMP = "2026-01-01T00:00:00.000Z"
MODELS = ("gpt-4o", "gpt-4o-mini", "claude-3-5-sonnet-latest", "qwen2.5-coder:latest")
COMMANDS = ("ask", "chat", "review", "explain")


def watcher_event(
    event_id: str,
    session: str,
    *,
    kind: int = 0,
    model: str = MODELS[0],
    command: str = COMMANDS[0],
) -> dict[str, Any]:
    """A typical LLM Watcher webhook event: request (kind 0), completion (1) or error (2)."""
    event_type, status = (("request", "start"), ("completion", "completed"), ("error", "failed"))[
        kind % 3
    ]
    metadata: dict[str, Any] = {"prompt": "Summarise the design of the service in one line."}
    if kind % 3 == 1:
        metadata.update(tokens=128, prompt_tokens=42, completion_tokens=128)
    if kind % 3 == 2:
        metadata["error"] = "model timed out"
    return {
        "id": event_id,
        "timestamp": TIMESTAMP,
        "event_type": event_type,
        "command": command,
        "status": status,
        "model": model,
        "session_id": session,
        "duration_ms": 0 if kind % 3 == 0 else 812,
        "metadata": metadata,
    }


def single_template() -> bytes:
    """One completion event, for wrk's single-event POSTs."""
    return orjson.dumps(watcher_event(PLACEHOLDER, "s" + PLACEHOLDER, kind=1))


def batch_template(size: int = 100) -> bytes:
    """A `{"batch": true, "events": [...]}` body of `size` events with distinct placeholders."""
    events = [
        watcher_event(
            PLACEHOLDER,
            "s" + PLACEHOLDER,
            kind=i % 2,
            model=MODELS[i % len(MODELS)],
            command=COMMANDS[i % len(COMMANDS)],
        )
        for i in range(size)
    ]
    return orjson.dumps({"batch": True, "events": events})


def event_token(j: int) -> str:
    return f"zzE{j:04d}zz"


def session_token(j: int) -> str:
    return f"zzS{j:04d}zz"


def loader_group() -> list[tuple[str, bytes]]:
    """(path, body) requests whose events form a realistic mix for the aggregator.

    20 events: 8 webhook sessions (request + completion), 1 failed webhook event per group
    (a `run.failed` notification that coalesces), and an LLMonitor llm run (start + end with
    tokensUsage) plus a tool child.
    """
    watcher: list[dict[str, Any]] = []
    j = 0
    for s in range(8):
        for kind in (0, 1):
            watcher.append(
                watcher_event(
                    event_token(j),
                    session_token(s),
                    kind=kind,
                    model=MODELS[s % len(MODELS)],
                    command=COMMANDS[s % len(COMMANDS)],
                )
            )
            j += 1
    watcher.append(watcher_event(event_token(j), session_token(8), kind=2, command="deploy"))
    j += 1
    run, child = session_token(9), session_token(10)
    lunary = [
        {"type": "llm", "event": "start", "runId": run, "name": "gpt-4o-mini", "app": BENCH_APP,
         "timestamp": TIMESTAMP, "input": [{"role": "user", "content": "hello"}], "tags": ["bench"]},
        {"type": "tool", "event": "start", "runId": child, "parentRunId": run, "name": "search",
         "app": BENCH_APP, "timestamp": TIMESTAMP, "input": {"q": "redis streams"}},
        {"type": "llm", "event": "end", "runId": run, "app": BENCH_APP, "timestamp": TIMESTAMP,
         "output": {"role": "assistant", "content": "hi"},
         "tokensUsage": {"prompt": 12, "completion": 3}},
    ]  # fmt: skip
    return [
        ("/api/open-wrapper", orjson.dumps({"batch": True, "events": watcher})),
        ("/api/report", orjson.dumps({"events": lunary})),
    ]


def group_size() -> int:
    return sum(_count(body) for _, body in loader_group())


def _count(body: bytes) -> int:
    parsed = orjson.loads(body)
    return len(parsed["events"]) if isinstance(parsed, dict) and "events" in parsed else 1


def paced_parts(marker: str = "bench_t") -> tuple[bytes, bytes, bytes]:
    """Pieces of a single event carrying its send time: head + id + mid + ns + tail.

    The receiver finds `"bench_t":<ns>` in the SSE frame (top-level extras are kept in
    `metadata`), so the latency is measured from the moment the POST was written. Warm-up
    events use another marker, which the receivers do not count.
    """
    body = watcher_event("@I@", "", kind=1)
    del body["session_id"]
    body[marker] = 1234567890123456789
    raw = orjson.dumps(body).decode()
    head, rest = raw.split("@I@", 1)
    mid, tail = rest.split("1234567890123456789", 1)
    return head.encode(), mid.encode(), tail.encode()


def new_run_id() -> str:
    return uuid.uuid4().hex[:8]
