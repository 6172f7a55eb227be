from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.metrics.pressure import Pressure, step

pytestmark = pytest.mark.unit


def run(values: list[tuple[float, float]], threshold: float = 90, hold: float = 60) -> list[bool]:
    state, fired = Pressure(), []
    for now, value in values:
        state, fire = step(state, value, threshold, hold, now)
        fired.append(fire)
    return fired


def test_raises_once_after_the_hold_time() -> None:
    fired = run([(0, 95), (30, 96), (59, 97), (60, 95), (65, 99), (120, 99)])
    assert fired == [False, False, False, True, False, False]


def test_a_dip_restarts_the_clock() -> None:
    assert run([(0, 95), (50, 80), (60, 95), (100, 95), (120, 95)]) == [False] * 4 + [True]


def test_a_new_episode_raises_again() -> None:
    fired = run([(0, 95), (60, 95), (70, 10), (80, 95), (140, 95)])
    assert fired == [False, True, False, False, True]


def test_at_the_threshold_is_not_over() -> None:
    assert run([(0, 90), (100, 90)]) == [False, False]


def test_zero_hold_raises_on_the_first_sample_over() -> None:
    assert run([(0, 91)], hold=0) == [True]


@given(st.lists(st.tuples(st.floats(0, 5), st.floats(0, 100)), max_size=60))
def test_at_most_one_raise_per_episode(steps: list[tuple[float, float]]) -> None:
    now, state, raised_in_episode = 0.0, Pressure(), 0
    for dt, value in steps:
        now += dt
        state, fire = step(state, value, 50, 10, now)
        if not state.active:
            raised_in_episode = 0
        raised_in_episode += fire
        assert raised_in_episode <= 1
        if fire:
            assert state.since is not None and now - state.since >= 10
