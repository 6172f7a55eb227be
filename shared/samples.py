"""The seed events: what the LLM Watcher webhook docs and the LLMonitor/Lunary docs show clients
sending. `llmwatch send` posts them for a first look; the tests post them as-is.

Each sample is (path, body). Bodies are built fresh on each call (ids and timestamps are new).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

WATCHER_PATH = "/api/open-wrapper"
LLMONITOR_PATHS = ("/v1/runs/ingest", "/api/report")
DEMO_APP = "llmwatch-demo"
MODEL = "qwen2.5-coder:latest"


def _now(offset_ms: int = 0) -> str:
    t = datetime.now(UTC) + timedelta(milliseconds=offset_ms)
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _watcher(
    event_type: str, command: str, status: str, metadata: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "timestamp": _now(),
        "event_type": event_type,
        "command": command,
        "status": status,
        "model": MODEL,
        "metadata": metadata,
        "source": "webhook",
    }
    body.update(extra)
    return body


def watcher_samples() -> list[tuple[str, dict[str, Any]]]:
    """Every documented webhook pattern: single, batch, request/completion/error/system,
    streaming/setup/status, and the loose variants real clients send."""
    session = str(uuid.uuid4())
    system = _watcher("system", "system", "info", {"detail": "Model cache cleared"})
    system.pop("model")
    batch = {
        "batch": True,
        "events": [
            _watcher("request", "ask", "start", {}, timestamp="2026-01-01T00:00:00.000Z"),
            _watcher(
                "completion",
                "ask",
                "completed",
                {"tokens": 128},
                timestamp="2026-01-01T00:00:01.000Z",
            ),
        ],
    }
    return [
        (WATCHER_PATH, _watcher("request", "ask", "start", {"prompt": "hello world"})),
        (WATCHER_PATH, batch),
        (WATCHER_PATH, _watcher("request", "ask", "start", {"prompt_length": 42})),
        (WATCHER_PATH, _watcher("completion", "ask", "completed", {"tokens": 256, "duration_ms": 1200})),
        (WATCHER_PATH, _watcher("error", "ask", "failed", {"error": "connection refused", "code": 502})),
        (WATCHER_PATH, system),
        (WATCHER_PATH, _watcher("streaming", "ask", "running", {"tokens_so_far": 16})),
        (WATCHER_PATH, _watcher("setup", "setup", "info", {"detail": "model pulled"})),
        (WATCHER_PATH, _watcher("status", "health", "info", {"ollama": "up"})),
        # Loose real-world variants: no id/timestamp, aliases, top-level session_id/duration_ms.
        (WATCHER_PATH, {"event_type": "request", "command": "chat", "status": "start", "model": MODEL,
                        "session_id": session, "metadata": {"prompt": "hi"}}),
        (WATCHER_PATH, {"event_type": "streaming", "command": "chat", "status": "streaming", "model": MODEL,
                        "session_id": session, "tokens_so_far": 32, "metadata": {}}),
        (WATCHER_PATH, {"event_type": "completion", "command": "chat", "status": "complete", "model": MODEL,
                        "session_id": session, "duration_ms": 850, "metadata": {"tokens": 64}}),
        (WATCHER_PATH, {"event_type": "system", "command": "chat", "status": "end",
                        "session_id": session, "metadata": {"action": "chat_session_end"}}),
    ]  # fmt: skip


def llmonitor_samples(app: str = DEMO_APP) -> list[tuple[str, dict[str, Any] | list[Any]]]:
    """An agent run with a child llm run and a tool run that fails, then feedback: the shape the
    LLMonitor/Lunary SDKs post to /v1/runs/ingest (and the older /api/report)."""
    agent, llm, tool = (str(uuid.uuid4()) for _ in range(3))
    messages = [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "What is the weather in Paris?"},
    ]
    events = [
        {"type": "agent", "event": "start", "app": app, "runId": agent, "name": "weather-agent",
         "timestamp": _now(0), "input": "What is the weather in Paris?", "tags": ["demo"]},
        {"type": "llm", "event": "start", "app": app, "runId": llm, "parentRunId": agent,
         "name": "gpt-4o", "timestamp": _now(5), "input": messages,
         "extra": {"temperature": 0.2}, "tags": ["demo"]},
        {"type": "llm", "event": "end", "app": app, "runId": llm, "parentRunId": agent,
         "timestamp": _now(900), "output": {"role": "assistant", "content": "Let me check."},
         "tokensUsage": {"prompt": 24, "completion": 5}},
        {"type": "tool", "event": "start", "app": app, "runId": tool, "parentRunId": agent,
         "name": "get_weather", "timestamp": _now(910), "input": {"city": "Paris"}},
        {"type": "tool", "event": "error", "app": app, "runId": tool, "parentRunId": agent,
         "timestamp": _now(1400), "error": {"message": "weather API timed out", "stack": "TimeoutError"}},
        {"type": "agent", "event": "end", "app": app, "runId": agent, "timestamp": _now(1500),
         "output": "Sorry, I could not get the weather."},
        # epoch milliseconds, as some SDKs send them
        {"type": "llm", "event": "feedback", "app": app, "runId": llm,
         "timestamp": int(datetime.now(UTC).timestamp() * 1000) + 2000, "feedback": {"thumbs": "up"}},
    ]  # fmt: skip
    return [
        (LLMONITOR_PATHS[0], {"events": events[:3]}),
        (LLMONITOR_PATHS[1], events[3:5]),  # the bare-array form
        (LLMONITOR_PATHS[0], events[5]),  # the single-object form
        (LLMONITOR_PATHS[1], {"events": [events[6]]}),
    ]


def all_samples(app: str = DEMO_APP) -> list[tuple[str, Any]]:
    return [*watcher_samples(), *llmonitor_samples(app)]
