"""Sustained resource pressure as a pure state machine.

A resource is *under pressure* while its value stays above its threshold; once that has lasted
`hold_s`, the machine says "raise" exactly once for the episode. Dropping to or below the
threshold ends the episode, so the next sustained stretch raises again (the notification bell
coalesces the repeats into one row).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Pressure:
    since: float | None = None  # when the value went over the threshold (None: it is not over)
    raised: bool = False  # this episode has been reported

    @property
    def active(self) -> bool:
        return self.since is not None


def step(
    state: Pressure, value: float, threshold: float, hold_s: float, now: float
) -> tuple[Pressure, bool]:
    """The state after observing `value` at `now`, and whether to raise a notification now."""
    if value <= threshold:
        return Pressure(), False
    since = state.since if state.since is not None else now
    if not state.raised and now - since >= hold_s:
        return Pressure(since, True), True
    return Pressure(since, state.raised), False
