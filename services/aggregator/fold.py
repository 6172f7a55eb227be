"""The pure fold of one partition's batch into one write set.

`prepare` parses entries (a bad one is set aside, the others go on) and names the dedup markers
and runs the store must read; `fold` takes what was read and returns everything to write:
pre-aggregated stats increments (one per distinct field), history items, final run facts/views,
markers, feed entries and notification occurrences. No I/O here.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson

from services.aggregator import events as ev
from services.aggregator import runs
from services.aggregator.cost import cost_usd, to_nanos
from shared import histogram, stats
from shared import history as hist
from shared.notifications import Occurrence

Feed = tuple[str, bytes]


@dataclass
class Prepared:
    events: list[ev.Event] = field(default_factory=list)
    bad: list[tuple[str, str]] = field(default_factory=list)  # (stream id, reason)

    def digests(self) -> list[bytes]:
        return list(dict.fromkeys(e.digest for e in self.events))

    def run_ids(self) -> list[str]:
        found = (runs.run_of(e) for e in self.events)
        return list(dict.fromkeys(r[0] for r in found if r is not None))


@dataclass
class RunChange:
    facts: runs.Facts
    view: dict[str, Any]
    before: dict[str, Any] | None  # the view when the batch started
    names: list[str] = field(default_factory=list)  # lifecycle names seen during the batch


@dataclass
class WriteSet:
    done: list[str] = field(default_factory=list)  # stream ids to XACK (applied or duplicate)
    failed: list[tuple[str, str]] = field(default_factory=list)  # not applied: retried later
    markers: list[bytes] = field(default_factory=list)
    stats: Counter[str] = field(default_factory=Counter)
    eps: Counter[int] = field(default_factory=Counter)  # arrival second -> events
    since_ms: int | None = None
    history: list[tuple[str, bytes, list[tuple[str, str]]]] = field(default_factory=list)
    runs: dict[str, RunChange] = field(default_factory=dict)
    children: set[tuple[str, str]] = field(default_factory=set)  # (parent, child)
    feed: list[Feed] = field(default_factory=list)
    occurrences: list[Occurrence] = field(default_factory=list)
    applied: int = 0
    duplicates: int = 0


def prepare(entries: list[tuple[str, bytes]]) -> Prepared:
    out = Prepared()
    for stream_id, raw in entries:
        try:
            out.events.append(ev.parse(stream_id, raw))
        except ev.BadEvent as exc:
            out.bad.append((stream_id, str(exc)))
    return out


def fold(
    prepared: Prepared,
    applied: set[bytes],
    stored_runs: dict[str, tuple[runs.Facts, dict[str, Any]]],
) -> WriteSet:
    ws = WriteSet(failed=list(prepared.bad))
    seen = set(applied)
    for event in prepared.events:
        if event.digest in seen:
            ws.duplicates += 1
            ws.done.append(event.stream_id)
            continue
        try:
            effect = _effect(event, ws, stored_runs)
        except Exception as exc:  # noqa: BLE001 - one bad event must not block the batch
            ws.failed.append((event.stream_id, f"{type(exc).__name__}: {exc}"))
            continue
        seen.add(event.digest)
        _accumulate(ws, event, *effect)
    for run_id, change in ws.runs.items():
        ws.feed.extend(_run_feed(change))
        del run_id
    return ws


def _effect(
    event: ev.Event,
    ws: WriteSet,
    stored: dict[str, tuple[runs.Facts, dict[str, Any]]],
) -> tuple[Counter[str], RunChange | None, list[Occurrence]]:
    """Everything one event changes, computed without touching `ws` (so it may raise safely)."""
    counters: Counter[str] = Counter()
    change: RunChange | None = None
    occurrences: list[Occurrence] = []
    run = runs.run_of(event)
    if run is not None:
        run_id, kind, _ = run
        previous = ws.runs.get(run_id)
        if previous is not None:
            facts, view, before = previous.facts, previous.view, previous.before
        elif run_id in stored:
            facts, view = stored[run_id]
            before = view
        else:
            facts, view, before = runs.new_facts(run_id, kind), None, None
        ev.complete_name(event, runs.get(facts, "name"))
        new_facts = runs.merge(facts, event)
        new_view = runs.render(new_facts)
        names = runs.lifecycle(view, new_view)
        change = RunChange(new_facts, new_view, before, (previous.names if previous else []) + names)
        if kind == "llmonitor":
            _run_counters(counters, view, new_view)
            if runs.state(new_view) == "failed" and runs.state(view) != "failed":
                occurrences.append(_run_failed(new_view, event))
        _state_counters(counters, view, new_view)
    _event_counters(counters, event)
    if event.source != ev.LLMONITOR and event.failed:
        occurrences.append(_event_failed(event))
    return counters, change, occurrences


def _event_counters(c: Counter[str], event: ev.Event) -> None:
    c[stats.TOTAL] += 1
    c[stats.event_type(event.event_type)] += 1
    c[stats.status(event.status)] += 1
    c[stats.source(event.source)] += 1
    model = event.model
    if model:
        c[stats.model(model, "n")] += 1
        if event.failed:
            c[stats.model(model, "err")] += 1
    if event.source == ev.LLMONITOR:
        return  # LLMonitor tokens, cost and durations come from its run (_run_counters)
    prompt, completion = ev.webhook_tokens(event)
    _usage(c, model, prompt, completion, +1)
    duration = ev.duration_ms(event)
    if duration is not None and model:
        _duration(c, model, duration)


def _usage(c: Counter[str], model: str | None, prompt: int, completion: int, sign: int) -> None:
    if not prompt and not completion:
        return
    c[stats.TOKENS_PROMPT] += sign * prompt
    c[stats.TOKENS_COMPLETION] += sign * completion
    price = cost_usd(model, prompt, completion) if model else None
    if price is not None:
        c[stats.COST] += sign * to_nanos(price)
    if model:
        c[stats.model(model, "tp")] += sign * prompt
        c[stats.model(model, "tc")] += sign * completion
        if price is not None:
            c[stats.model(model, "cost")] += sign * to_nanos(price)
            c[stats.model(model, "priced")] += sign


def _duration(c: Counter[str], model: str, duration_ms: float) -> None:
    c[stats.model(model, "dn")] += 1
    c[stats.model(model, "ds")] += round(duration_ms)
    c[stats.model(model, f"h{histogram.bucket(duration_ms)}")] += 1


def _run_counters(c: Counter[str], before: dict[str, Any] | None, after: dict[str, Any]) -> None:
    """LLMonitor usage is the run's: take back what the old view contributed, add the new."""
    if before is not None:
        t = before["tokens"]
        _usage(c, before["model"], t["prompt"], t["completion"], -1)
    t = after["tokens"]
    _usage(c, after["model"], t["prompt"], t["completion"], +1)
    if after["duration_ms"] is not None and (before is None or before["duration_ms"] is None):
        if after["model"]:
            _duration(c, after["model"], after["duration_ms"])


def _state_counters(c: Counter[str], before: dict[str, Any] | None, after: dict[str, Any]) -> None:
    old, new = runs.state(before), runs.state(after)
    if old != new:
        if old:
            c[stats.runs(old)] -= 1
        if new:
            c[stats.runs(new)] += 1


def _accumulate(
    ws: WriteSet,
    event: ev.Event,
    counters: Counter[str],
    change: RunChange | None,
    occurrences: list[Occurrence],
) -> None:
    ws.applied += 1
    ws.done.append(event.stream_id)
    ws.markers.append(event.digest)
    ws.stats.update(counters)
    ws.eps[event.ms // 1000] += 1
    ws.since_ms = event.ms if ws.since_ms is None else min(ws.since_ms, event.ms)
    raw = event.encoded()
    indexes = [("event_type", event.event_type), ("source", event.source)]
    if event.model:
        indexes.append(("model", event.model))
    ws.history.append((hist.key(event.stream_id), raw, indexes))
    ws.feed.append(("event", raw))
    if change is not None:
        ws.runs[change.facts["id"]] = change
        parent = runs.get(change.facts, "parent")
        if parent:
            ws.children.add((str(parent), change.facts["id"]))
    ws.occurrences.extend(occurrences)


def _run_feed(change: RunChange) -> list[Feed]:
    """One batch's lifecycle entries for a run: each name once, in order, with the final view;
    `run.updated` only when nothing more specific happened."""
    names = list(dict.fromkeys(change.names))
    specific = [n for n in names if n != "run.updated"]
    final = runs.state(change.view)
    chosen = [n for n in specific if n not in ("run.completed", "run.failed") or n == f"run.{final}"]
    if not chosen and change.view != change.before:
        chosen = ["run.updated"]
    out: list[Feed] = []
    for name in chosen:
        payload: dict[str, Any] = {"run": change.view}
        if name == "run.failed":
            payload["error"] = change.view.get("error")
        out.append((name, orjson.dumps(payload)))
    return out


def _message(error: Any) -> str:
    if isinstance(error, dict):
        return str(error.get("message") or error)
    return str(error) if error else ""


def _run_failed(view: dict[str, Any], event: ev.Event) -> Occurrence:
    task = view.get("task_name") or view.get("type") or "run"
    return Occurrence(
        kind="run.failed", severity="error", task_name=str(task), end_reason="failed",
        title=f"{task} failed", body=_message(view.get("error")) or f"run {view['id']} failed",
        run_id=view["id"], occurred_at=event.timestamp, dedup_id=event.id,
    )


def _event_failed(event: ev.Event) -> Occurrence:
    command = str(event.data.get("command") or event.event_type or "event")
    meta = event.metadata
    body = _message(meta.get("error") or meta.get("message")) or (
        f"{event.event_type} event with status {event.status}"
    )
    return Occurrence(
        kind="run.failed", severity="error", task_name=command, end_reason="failed",
        title=f"{command} failed", body=body, run_id=ev.session_id(event) or event.id,
        occurred_at=event.timestamp, dedup_id=event.id,
    )
