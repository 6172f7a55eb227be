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

from services.aggregator import alerts, runs
from services.aggregator import events as ev
from services.aggregator.cost import nanos as cost_nanos
from services.aggregator.counters import ERR, N, Tally
from shared import stats
from shared.notifications import Occurrence

Feed = tuple[str, bytes]


@dataclass
class Prepared:
    events: list[ev.Event] = field(default_factory=list)
    bad: list[tuple[str, str]] = field(default_factory=list)  # (stream id, reason)

    def digests(self) -> list[str]:
        return list(dict.fromkeys(e.digest for e in self.events))

    def run_ids(self) -> list[str]:
        return list(dict.fromkeys(e.run[0] for e in self.events if e.run is not None))


@dataclass
class RunChange:
    facts: runs.Facts
    before: dict[str, Any] | None  # the stored view when the batch started
    names: list[str] = field(default_factory=list)  # lifecycle names seen during the batch
    view: dict[str, Any] = field(default_factory=dict)  # rendered once, at the end of the batch
    feed: list[str] = field(default_factory=list)  # the batch's `run.*` feed entries
    was_ms: int | None = None  # the stored first arrival (index score), None for a new run
    _json: bytes = b""

    def encoded(self) -> bytes:
        """The view as JSON, encoded once for the run hash and every feed entry."""
        if not self._json:
            self._json = orjson.dumps(self.view)
        return self._json

    def error(self) -> bytes:
        """The `error` of a `run.failed` entry, as JSON."""
        return orjson.dumps(self.view.get("error"))

    def entries(self) -> list[Feed]:
        """The feed entries: `{"run": view}`, plus `"error"` for run.failed (the commit script
        builds the same bytes from the view and the error)."""
        view = self.encoded()
        return [
            (name, b'{"run":' + view + b',"error":' + self.error() + b"}")
            if name == "run.failed"
            else (name, b'{"run":' + view + b"}")
            for name in self.feed
        ]


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
    occurrences: list[Occurrence] = field(default_factory=list)
    applied: int = 0
    duplicates: int = 0

    @property
    def feed(self) -> list[Feed]:
        """The `run.*` feed entries, run by run. Every history item is also an `event` feed
        entry, ahead of these: the commit writes it from the history item's bytes."""
        return [entry for change in self.runs.values() for entry in change.entries()]


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
    tally = Tally()
    seen = set(applied)
    for event in prepared.events:
        if event.digest in seen:
            ws.duplicates += 1
            ws.done.append(event.stream_id)
            continue
        try:
            step, occurrences, usage = _effect(event, ws.runs, stored_runs)
        except Exception as exc:  # noqa: BLE001 - one bad event must not block the batch
            ws.failed.append((event.stream_id, f"{type(exc).__name__}: {exc}"))
            continue
        seen.add(event.digest)
        _count(tally, event, usage)
        _accumulate(ws, event, step, occurrences)
    for change in ws.runs.values():
        # Rendered once per run and batch; counters move by (final - stored), which adds up to
        # the same totals as moving them event by event.
        change.view = runs.render(change.facts)
        if change.facts["kind"] == "llmonitor":
            _run_counters(tally, change.before, change.view)
        old, new = runs.state(change.before), runs.state(change.view)
        if old != new:
            for state, n in ((old, -1), (new, +1)):
                if state:
                    tally.other[stats.runs(state)] += n
        change.feed = _run_feed(change)
    ws.stats = tally.fields()
    return ws


Usage = tuple[int, int, "int | None", "float | None"]  # prompt, completion, nanos, duration
# What an event does to its run: (run id, facts after it, lifecycle names, the run's change
# so far in this batch or None, the stored view, the stored first arrival)
RunStep = tuple[
    str, runs.Facts, list[str], "RunChange | None", "dict[str, Any] | None", "int | None"
]


def _effect(
    event: ev.Event,
    changes: dict[str, RunChange],
    stored: dict[str, tuple[runs.Facts, dict[str, Any]]],
) -> tuple[RunStep | None, list[Occurrence], Usage | None]:
    """Everything one event changes, computed without touching the write set (so it may raise
    safely): its run's new facts, its notifications, a webhook event's usage."""
    step: RunStep | None = None
    occurrences: list[Occurrence] = []
    run = event.run
    if run is not None:
        run_id, kind, _ = run
        previous = changes.get(run_id)
        facts: runs.Facts | None
        before: dict[str, Any] | None = None
        was_ms: int | None = None
        if previous is not None:
            facts = previous.facts
        elif run_id in stored:
            facts, before = stored[run_id]
            was_ms = facts["first_ms"]
        else:
            facts = None
        ev.complete_name(event, runs.get(facts, "name") if facts else None)
        new_facts = runs.merge(facts or runs.new_facts(run_id, kind), event)
        old, new = runs.facts_state(facts), runs.facts_state(new_facts)
        step = (
            run_id,
            new_facts,
            runs.transitions(facts is None, old, new),
            previous,
            before,
            was_ms,
        )
        if kind == "llmonitor" and new == "failed" and old != "failed":
            occurrences.append(alerts.run_failed(new_facts, event))
    if event.source == ev.LLMONITOR:
        return step, occurrences, None
    if event.failed:
        occurrences.append(alerts.event_failed(event))
    prompt, completion = ev.webhook_tokens(event)
    model = event.model
    nanos = cost_nanos(model, prompt, completion) if model and (prompt or completion) else None
    return step, occurrences, (prompt, completion, nanos, ev.duration_ms(event))


def _count(tally: Tally, event: ev.Event, usage: Usage | None) -> None:
    tally.event(event.event_type, event.status, event.source)
    if usage is None and event.run is not None:
        # Per model, an LLMonitor event counts through its run (_run_counters): the run's name
        # may arrive after its other events, and the totals must not depend on that order.
        return
    model = event.model
    if model:
        row = tally.model(model)
        row[N] += 1
        if event.failed:
            row[ERR] += 1
    if usage is None:
        return
    prompt, completion, nanos, duration = usage
    tally.usage(model, prompt, completion, nanos)
    if duration is not None and model:
        tally.duration(model, duration)


def _run_counters(tally: Tally, before: dict[str, Any] | None, after: dict[str, Any]) -> None:
    """LLMonitor usage is the run's: take back what the old view contributed, add the new."""
    for view, sign in ((before, -1), (after, +1)):
        if view is None:
            continue
        t, model = view["tokens"], view["model"]
        prompt, completion = t["prompt"], t["completion"]
        nanos = cost_nanos(model, prompt, completion) if model else None
        tally.usage(model, prompt, completion, nanos, sign)
        if model:
            row = tally.model(model)
            row[N] += sign * view["events"]
            row[ERR] += sign * view.get("failed_events", 0)
        # the run's duration too: its model or its start may arrive after its end
        if model and view["duration_ms"] is not None:
            tally.duration(model, view["duration_ms"], sign)


def _accumulate(
    ws: WriteSet,
    event: ev.Event,
    step: RunStep | None,
    occurrences: list[Occurrence],
) -> None:
    ws.applied += 1
    ws.done.append(event.stream_id)
    ws.markers.append(event.digest)
    second = event.ms // 1000
    ws.eps[second] = ws.eps.get(second, 0) + 1
    if ws.since_ms is None or event.ms < ws.since_ms:
        ws.since_ms = event.ms
    indexes = [("event_type", event.event_type), ("source", event.source)]
    if event.model:
        indexes.append(("model", event.model))
    # the history member (shared/history.py's `key`), from the parsed entry id
    ws.history.append((f"{event.ms:016x}{event.seq:016x}", event.encoded(), indexes))
    if step is not None:
        run_id, facts, names, change, before, was_ms = step
        if change is None:
            ws.runs[run_id] = RunChange(facts, before, names, was_ms=was_ms)
        else:
            change.facts = facts
            change.names += names
        parent = runs.get(facts, "parent")
        if parent:
            ws.children.add((str(parent), run_id))
    if occurrences:
        ws.occurrences.extend(occurrences)


def _run_feed(change: RunChange) -> list[str]:
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
    return chosen
