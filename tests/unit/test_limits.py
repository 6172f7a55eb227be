from __future__ import annotations

import pytest

from services.stream.limits import StreamLimits

pytestmark = pytest.mark.unit


def test_per_ip_then_process_limit() -> None:
    limits = StreamLimits()
    assert limits.acquire("a", 3, 2) is None
    assert limits.acquire("a", 3, 2) is None
    assert limits.acquire("a", 3, 2) == "ip"
    assert limits.acquire("b", 3, 2) is None
    assert limits.acquire("c", 3, 2) == "process"
    limits.release("a")
    assert limits.acquire("c", 3, 2) is None
    assert limits.total == 3


def test_release_returns_the_slot_and_forgets_idle_ips() -> None:
    limits = StreamLimits()
    limits.acquire("a", 10, 10)
    limits.release("a")
    assert limits.total == 0 and "a" not in limits.per_ip
    with pytest.raises(ValueError):
        limits.release("a")
