"""A batch's stats counter increments, pre-aggregated in memory (pure).

Every field is a sum (shared/stats.py), so a batch writes one increment per distinct field.
`Tally` adds up the batch in the cheapest shapes first (one counter per event kind, one row of
sums per model, one count per duration bucket) and names the fields once, in `fields()`.
"""

from __future__ import annotations

from collections import Counter

from shared import histogram, stats

# Columns of a model's row of sums, in the order of shared/stats.py's per-model parts.
N, ERR, TP, TC, COST, PRICED, DN, DS = range(8)
_PARTS = ("n", "err", "tp", "tc", "cost", "priced", "dn", "ds")


class Tally:
    def __init__(self) -> None:
        self.kinds: Counter[tuple[str, str, str]] = Counter()  # (event_type, status, source)
        self.models: dict[str, list[int]] = {}
        self.buckets: Counter[tuple[str, int]] = Counter()  # (model, duration bucket)
        self.prompt = 0
        self.completion = 0
        self.cost = 0
        self.other: Counter[str] = Counter()

    def event(self, event_type: str, status: str, source: str) -> None:
        self.kinds[(event_type, status, source)] += 1

    def model(self, name: str) -> list[int]:
        row = self.models.get(name)
        if row is None:
            row = self.models[name] = [0] * 8
        return row

    def usage(self, model: str | None, prompt: int, completion: int, nanos: int | None,
              sign: int = 1) -> None:  # fmt: skip
        """Tokens (and their cost, None when unpriced), taken back with `sign` -1."""
        if not prompt and not completion:
            return
        self.prompt += sign * prompt
        self.completion += sign * completion
        if nanos is not None:
            self.cost += sign * nanos
        if model:
            row = self.model(model)
            row[TP] += sign * prompt
            row[TC] += sign * completion
            if nanos is not None:
                row[COST] += sign * nanos
                row[PRICED] += sign

    def duration(self, model: str, duration_ms: float, sign: int = 1) -> None:
        row = self.model(model)
        row[DN] += sign
        row[DS] += sign * round(duration_ms)
        self.buckets[(model, histogram.bucket(duration_ms))] += sign

    def fields(self) -> dict[str, int]:
        """Field -> increment, without zeros."""
        out: Counter[str] = Counter()
        for (event_type, status, source), n in self.kinds.items():
            out[stats.TOTAL] += n
            out[stats.event_type(event_type)] += n
            out[stats.status(status)] += n
            out[stats.source(source)] += n
        for name, row in self.models.items():
            for part, value in zip(_PARTS, row, strict=True):
                if value:
                    out[stats.model(name, part)] += value
        for (name, bucket), n in self.buckets.items():
            out[stats.model(name, f"h{bucket}")] += n
        out[stats.TOKENS_PROMPT] += self.prompt
        out[stats.TOKENS_COMPLETION] += self.completion
        out[stats.COST] += self.cost
        out.update(self.other)
        return {field: n for field, n in out.items() if n}
