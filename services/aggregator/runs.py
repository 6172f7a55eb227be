"""Runs as mergeable facts (pure).

A run is built from its events in whatever order they arrive (end before start, child before
parent, a replica applying an older batch late). So the stored form is not the run but *facts*
whose merge is commutative, associative and idempotent per event:

- times: `start` = min over start events, `end` = max over end/error events, `created` = min
  over all events, `first_ms` = min arrival (index score);
- flags: `running`, `ended`, `failed` are ORs (failed wins over success);
- values (name, type, app, parent, input, output, error, model, token counts, extra): registers
  holding `[rank, value]`; a value replaces another only with a higher rank
  `(priority of the event kind, timestamp, event id)`, so the winner does not depend on order;
- `tags`: set union; `feedback`: one register per key; webhook token sums: plain sums (each
  event is applied once).

`render` derives the RunWisp-shaped run from the facts; the tokens estimate and cost are
computed there, so they follow whichever facts are known.
"""

from __future__ import annotations

import logging
from typing import Any

from services.aggregator import cost, tokens
from services.aggregator.events import Event, webhook_tokens
from shared.times import rfc3339

log = logging.getLogger(__name__)

Facts = dict[str, Any]

# LLMonitor event kinds that say something about the lifecycle.
_ENDS = {"end", "error"}


def run_of(event: Event) -> tuple[str, str, str | None] | None:
    """(run id, kind, parent run id) of the run an event belongs to, or None."""
    return event.run


def new_facts(run_id: str, kind: str) -> Facts:
    return {
        "id": run_id,
        "kind": kind,
        "reg": {},
        "tags": [],
        "feedback": {},
        "n": 0,
        "running": False,
        "ended": False,
        "failed": False,
        "start": None,
        "end": None,
        "created": None,
        "first_ms": None,
        "wp": 0,
        "wc": 0,
        "nf": 0,
    }


def _min(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else min(a, b)


def _max(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else max(a, b)


def _put(registers: dict[str, Any], name: str, value: Any, prio: int, ts: float, eid: str) -> None:
    """Keep `value` in the register unless it holds one of a higher rank (prio, ts, eid)."""
    if value is None or value == "":
        return
    current = registers.get(name)
    if current is None:
        registers[name] = [[prio, ts, eid], value]
        return
    rank = [prio, ts, eid]
    if rank > current[0]:
        registers[name] = [rank, value]


def get(facts: Facts, name: str) -> Any:
    entry = facts["reg"].get(name)
    return None if entry is None else entry[1]


def merge(facts: Facts, event: Event) -> Facts:
    """A new facts dict with one event folded in (the input is not modified)."""
    out = dict(facts)
    out["reg"] = dict(facts["reg"])  # `feedback` is copied when an event changes it
    ts = event.timestamp
    out["n"] = facts["n"] + 1
    out["nf"] = facts.get("nf", 0) + (1 if event.failed else 0)
    out["created"] = _min(facts["created"], ts)
    out["first_ms"] = event.ms if facts["first_ms"] is None else min(facts["first_ms"], event.ms)
    if event.run is not None and event.run[1] == "llmonitor":
        _merge_llmonitor(out, event.metadata, ts, event.id)
    else:
        _merge_session(out, event, ts)
    return out


def _merge_llmonitor(out: Facts, lm: dict[str, Any], ts: float, eid: str) -> None:
    kind = str(lm.get("event") or "")
    reg = out["reg"]
    start = 2 if kind == "start" else 1
    _put(reg, "name", lm.get("name"), start, ts, eid)
    _put(reg, "type", lm.get("type"), 1, ts, eid)
    _put(reg, "app", lm.get("app"), 1, ts, eid)
    _put(reg, "parent", lm.get("parentRunId"), 1, ts, eid)
    _put(reg, "input", lm.get("input"), start, ts, eid)
    _put(reg, "extra", lm.get("extra"), start, ts, eid)
    _put(reg, "output", lm.get("output"), 2 if kind == "end" else 1, ts, eid)
    if kind == "start":
        out["running"] = True
        out["start"] = _min(out["start"], ts)
    if kind in _ENDS:
        out["ended"] = True
        out["end"] = _max(out["end"], ts)
    if kind == "error":
        out["failed"] = True
        _put(reg, "error", lm.get("error") or {"message": "error"}, 1, ts, eid)
    usage = lm.get("tokensUsage")
    if isinstance(usage, dict):
        end = 2 if kind == "end" else 1
        _put(reg, "tokens_p", _count(usage.get("prompt")), end, ts, eid)
        _put(reg, "tokens_c", _count(usage.get("completion")), end, ts, eid)
    tags = lm.get("tags")
    if isinstance(tags, list) and tags:
        out["tags"] = sorted(set(out["tags"]) | {str(t) for t in tags})
    feedback = lm.get("feedback")
    if isinstance(feedback, dict):
        registers = out["feedback"] = dict(out["feedback"])
        for key, value in feedback.items():
            _put(registers, str(key), value, 1, ts, eid)


def _merge_session(out: Facts, event: Event, ts: float) -> None:
    reg, eid, status = out["reg"], event.id, event.status
    _put(reg, "name", event.data.get("command"), 2 if status == "start" else 1, ts, eid)
    _put(reg, "model", event.model, 1, ts, eid)
    meta = event.metadata
    _put(reg, "input", meta.get("prompt"), 1, ts, eid)
    _put(reg, "output", meta.get("response", meta.get("output")), 1, ts, eid)
    if status in ("start", "running"):
        out["running"] = True
    if status == "start":
        out["start"] = _min(out["start"], ts)
    if status in ("completed", "failed") or event.event_type == "error":
        out["ended"] = True
        out["end"] = _max(out["end"], ts)
    if event.failed:
        out["failed"] = True
        message = meta.get("error") or meta.get("message") or "failed"
        error = message if isinstance(message, dict) else {"message": str(message)}
        _put(reg, "error", error, 1, ts, eid)
    prompt, completion = webhook_tokens(event)
    out["wp"] = out["wp"] + prompt
    out["wc"] = out["wc"] + completion


def _count(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return max(0, int(value))


def run_tokens(facts: Facts) -> tuple[int, int, bool]:
    """(prompt, completion, estimated): reported counts, else Lunary-style estimates (llm runs)."""
    if facts["kind"] == "session":
        return facts["wp"], facts["wc"], False
    prompt, completion = get(facts, "tokens_p"), get(facts, "tokens_c")
    estimated = False
    if get(facts, "type") == "llm":
        model = get(facts, "name")
        if not prompt:
            guess = _estimate(tokens.prompt_tokens, model, get(facts, "input"), get(facts, "extra"))
            if guess is not None:
                prompt, estimated = guess, True
        if not completion:
            guess = _estimate(tokens.completion_tokens, model, get(facts, "output"))
            if guess is not None:
                completion, estimated = guess, True
    return int(prompt or 0), int(completion or 0), estimated


def _estimate(counter: Any, *args: Any) -> int | None:
    """An estimate is a nicety: a tokenizer failure leaves the count unknown, not the run."""
    try:
        return counter(*args)  # type: ignore[no-any-return]
    except Exception:
        log.warning("token estimate failed", exc_info=True)
        return None


def run_model(facts: Facts) -> str | None:
    if facts["kind"] == "session":
        return get(facts, "model")
    return get(facts, "name") if get(facts, "type") == "llm" else None


def render(facts: Facts) -> dict[str, Any]:
    """The run as `/api/runs` shows it (RunWisp field names)."""
    status = "ended" if facts["ended"] else "running" if facts["running"] else "pending"
    start, end = facts["start"], facts["end"] if facts["ended"] else None
    prompt, completion, estimated = run_tokens(facts)
    model = run_model(facts)
    try:
        price = cost.usd(model, prompt, completion) if model else None
    except Exception:
        log.warning("cost lookup failed for %r", model, exc_info=True)
        price = None
    return {
        "id": facts["id"],
        "task_name": get(facts, "name"),
        "type": get(facts, "type") or ("session" if facts["kind"] == "session" else None),
        "app": get(facts, "app"),
        "source": "webhook" if facts["kind"] == "session" else "llmonitor",
        "status": status,
        "end_reason": ("failed" if facts["failed"] else "success") if facts["ended"] else None,
        "start_at": rfc3339(start) if start is not None else None,
        "end_at": rfc3339(end) if end is not None else None,
        "created_at": rfc3339(facts["created"]) if facts["created"] is not None else None,
        "duration_ms": round((end - start) * 1000)
        if start is not None and end is not None
        else None,
        "parent_run_id": get(facts, "parent"),
        "model": model,
        "tags": list(facts["tags"]),
        "input": get(facts, "input"),
        "output": get(facts, "output"),
        "error": get(facts, "error"),
        "feedback": {k: v[1] for k, v in sorted(facts["feedback"].items())} or None,
        "tokens": {"prompt": prompt, "completion": completion, "estimated": estimated},
        "cost_usd": price,
        "events": facts["n"],
        "failed_events": facts.get("nf", 0),
    }


def facts_state(facts: Facts | None) -> str | None:
    """`state` of the run these facts render to, without rendering."""
    if facts is None or not (facts["ended"] or facts["running"]):
        return None
    if not facts["ended"]:
        return "running"
    return "failed" if facts["failed"] else "completed"


def state(view: dict[str, Any] | None) -> str | None:
    """The stats bucket of a run: running, completed, failed (pending and unknown: None)."""
    if view is None or view["status"] == "pending":
        return None
    if view["status"] == "running":
        return "running"
    return "failed" if view["end_reason"] == "failed" else "completed"


def lifecycle(before: Facts | None, after: Facts) -> list[str]:
    """Feed events for one change: run.created, run.started, run.completed|failed, run.updated."""
    return transitions(before is None, facts_state(before), facts_state(after))


def transitions(created: bool, old: str | None, new: str | None) -> list[str]:
    """`lifecycle` from the states before and after (see facts_state)."""
    names: list[str] = []
    if created:
        names.append("run.created")
    if new == "running" and old is None:
        names.append("run.started")
    if new in ("completed", "failed") and old != new:
        names.append(f"run.{new}")
    if not names:
        names.append("run.updated")
    return names
