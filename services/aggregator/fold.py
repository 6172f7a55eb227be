"""The pure fold of one partition's batch into one write set.

`prepare` parses entries (a bad one is set aside, the others go on) and names the dedup markers
and runs the store must read; `fold` takes what was read and returns everything to write:
pre-aggregated stats increments (one per distinct field), history items, final run facts/views,
markers, feed entries and notification occurrences. No I/O here.
"""

from __future__ import annotations

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
Deltas = list[tuple[str, int]]  # (stats field, amount); summed per field before writing


@dataclass
class Prepared:
    events: list[ev.Event] = field(default_factory=list)
    bad: list[tuple[str, str]] = field(default_factory=list)  # (stream id, reason)

    def digests(self) -> list[str]:
        return list(dict.fromkeys(e.digest for e in self.events))

    def run_ids(self) -> list[str]:
        found = (runs.run_of(e) for e in self.events)
        return list(dict.fromkeys(r[0] for r in found if r is not None))


@dataclass
class RunChange:
    facts: runs.Facts
    before: dict[str, Any] | None  # the stored view when the batch started
    names: list[str] = field(default_factory=list)  # lifecycle names seen during the batch
    view: dict[str, Any] = field(default_factory=dict)  # rendered once, at the end of the batch
    _json: bytes = b""

    def encoded(self) -> bytes:
        """The view as JSON, encoded once for the run hash and every feed entry."""
        if not self._json:
            self._json = orjson.dumps(self.view)
        return self._json


@dataclass
class WriteSet:
    done: list[str] = field(default_factory=list)  # stream ids to XACK (applied or duplicate)
    failed: list[tuple[str, str]] = field(default_factory=list)  # not applied: retried later
    markers: list[str] = field(default_factory=list)
    stats: dict[str, int] = field(default_factory=dict)
    eps: dict[int, int] = field(default_factory=dict)  # arrival second -> events
    since_ms: int | None = None
    history: list[tuple[str, bytes, list[tuple[str, str]]]] = field(default_factory=list)
    runs: dict[str, RunChange] = field(default_factory=dict)
    children: set[tuple[str, str]] = field(default_factory=set)  # (parent, child)
    feed: list[Feed] = field(default_factory=list)  # `event` entries = history items, in order
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
    applied: set[str],
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
    for change in ws.runs.values():
        # Rendered once per run and batch; counters move by (final - stored), which adds up to
        # the same totals as moving them event by event.
        change.view = runs.render(change.facts)
        if change.facts["kind"] == "llmonitor":
            _add(ws.stats, _run_counters(change.before, change.view))
        _add(ws.stats, _state_counters(change.before, change.view))
        ws.feed.extend(_run_feed(change))
    return ws


def _effect(
    event: ev.Event,
    ws: WriteSet,
    stored: dict[str, tuple[runs.Facts, dict[str, Any]]],
) -> tuple[Deltas, RunChange | None, list[Occurrence]]:
    """Everything one event changes, computed without touching `ws` (so it may raise safely)."""
    change: RunChange | None = None
    occurrences: list[Occurrence] = []
    run = runs.run_of(event)
    if run is not None:
        run_id, kind, _ = run
        previous = ws.runs.get(run_id)
        facts: runs.Facts | None
        if previous is not None:
            facts, before, names = previous.facts, previous.before, previous.names
        elif run_id in stored:
            facts, before = stored[run_id]
            names = []
        else:
            facts, before, names = None, None, []
        ev.complete_name(event, runs.get(facts, "name") if facts else None)
        new_facts = runs.merge(facts or runs.new_facts(run_id, kind), event)
        change = RunChange(new_facts, before, names + runs.lifecycle(facts, new_facts))
        newly_failed = (
            runs.facts_state(new_facts) == "failed" and runs.facts_state(facts) != "failed"
        )
        if kind == "llmonitor" and newly_failed:
            occurrences.append(_run_failed(new_facts, event))
    counters = _event_counters(event)
    if event.source != ev.LLMONITOR and event.failed:
        occurrences.append(_event_failed(event))
    return counters, change, occurrences


def _add(target: dict[str, int], deltas: Deltas) -> None:
    for key, amount in deltas:
        target[key] = target.get(key, 0) + amount


def _event_counters(event: ev.Event) -> Deltas:
    out: Deltas = [
        (stats.TOTAL, 1),
        (stats.event_type(event.event_type), 1),
        (stats.status(event.status), 1),
        (stats.source(event.source), 1),
    ]
    if event.source == ev.LLMONITOR and runs.run_of(event) is not None:
        # Per model, an LLMonitor event counts through its run (_run_counters): the run's name
        # may arrive after its other events, and the totals must not depend on that order.
        return out
    model = event.model
    if model:
        out.append((stats.model(model, "n"), 1))
        if event.failed:
            out.append((stats.model(model, "err"), 1))
    if event.source == ev.LLMONITOR:
        return out
    prompt, completion = ev.webhook_tokens(event)
    _usage(out, model, prompt, completion, +1)
    duration = ev.duration_ms(event)
    if duration is not None and model:
        _duration(out, model, duration)
    return out


def _usage(out: Deltas, model: str | None, prompt: int, completion: int, sign: int) -> None:
    if not prompt and not completion:
        return
    out += ((stats.TOKENS_PROMPT, sign * prompt), (stats.TOKENS_COMPLETION, sign * completion))
    price = cost_usd(model, prompt, completion) if model else None
    nanos = to_nanos(price)
    if price is not None:
        out.append((stats.COST, sign * nanos))
    if model:
        out += (
            (stats.model(model, "tp"), sign * prompt),
            (stats.model(model, "tc"), sign * completion),
        )
        if price is not None:
            out += (
                (stats.model(model, "cost"), sign * nanos),
                (stats.model(model, "priced"), sign),
            )


def _duration(out: Deltas, model: str, duration_ms: float) -> None:
    out += (
        (stats.model(model, "dn"), 1),
        (stats.model(model, "ds"), round(duration_ms)),
        (stats.model(model, f"h{histogram.bucket(duration_ms)}"), 1),
    )


def _run_counters(before: dict[str, Any] | None, after: dict[str, Any]) -> Deltas:
    """LLMonitor usage is the run's: take back what the old view contributed, add the new."""
    out: Deltas = []
    for view, sign in ((before, -1), (after, +1)):
        if view is None:
            continue
        t, model = view["tokens"], view["model"]
        _usage(out, model, t["prompt"], t["completion"], sign)
        if model:
            out.append((stats.model(model, "n"), sign * view["events"]))
            out.append((stats.model(model, "err"), sign * view.get("failed_events", 0)))
    newly_timed = after["duration_ms"] is not None and (
        before is None or before["duration_ms"] is None
    )
    if newly_timed and after["model"]:
        _duration(out, after["model"], after["duration_ms"])
    return out


def _state_counters(before: dict[str, Any] | None, after: dict[str, Any]) -> Deltas:
    old, new = runs.state(before), runs.state(after)
    if old == new:
        return []
    return [(stats.runs(s), n) for s, n in ((old, -1), (new, +1)) if s]


def _accumulate(
    ws: WriteSet,
    event: ev.Event,
    counters: Deltas,
    change: RunChange | None,
    occurrences: list[Occurrence],
) -> None:
    ws.applied += 1
    ws.done.append(event.stream_id)
    ws.markers.append(event.digest)
    _add(ws.stats, counters)
    second = event.ms // 1000
    ws.eps[second] = ws.eps.get(second, 0) + 1
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
    chosen = [
        n for n in specific if n not in ("run.completed", "run.failed") or n == f"run.{final}"
    ]
    if not chosen and change.view != change.before:
        chosen = ["run.updated"]  # e.g. feedback, output, tokens
    view = change.encoded()
    out: list[Feed] = []
    for name in chosen:
        if name == "run.failed":
            error = orjson.dumps(change.view.get("error"))
            out.append((name, b'{"run":' + view + b',"error":' + error + b"}"))
        else:
            out.append((name, b'{"run":' + view + b"}"))
    return out


def _message(error: Any) -> str:
    if isinstance(error, dict):
        return str(error.get("message") or error)
    return str(error) if error else ""


def _run_failed(facts: runs.Facts, event: ev.Event) -> Occurrence:
    task = runs.get(facts, "name") or runs.get(facts, "type") or "run"
    return Occurrence(
        kind="run.failed",
        severity="error",
        task_name=str(task),
        end_reason="failed",
        title=f"{task} failed",
        body=_message(runs.get(facts, "error")) or f"run {facts['id']} failed",
        run_id=facts["id"],
        occurred_at=event.timestamp,
        dedup_id=event.id,
    )


def _event_failed(event: ev.Event) -> Occurrence:
    command = str(event.data.get("command") or event.event_type or "event")
    meta = event.metadata
    body = _message(meta.get("error") or meta.get("message")) or (
        f"{event.event_type} event with status {event.status}"
    )
    return Occurrence(
        kind="run.failed",
        severity="error",
        task_name=command,
        end_reason="failed",
        title=f"{command} failed",
        body=body,
        run_id=ev.session_id(event) or event.id,
        occurred_at=event.timestamp,
        dedup_id=event.id,
    )
