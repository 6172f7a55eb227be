"""`llmwatch up --cluster`'s pure rules: partitions per master, and which saved layouts a
restart accepts (the ports must be the old ones, so the shape must be too)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.local_cluster import default_partitions, mismatch

pytestmark = pytest.mark.unit


@given(st.integers(min_value=1, max_value=64))
def test_default_partitions_give_every_master_the_same_share(masters: int) -> None:
    partitions = default_partitions(masters)
    assert partitions % masters == 0 and partitions >= masters


def test_a_layout_restarts_only_as_the_same_shape() -> None:
    saved = {"masters": 3, "replicas": 1, "ports": [1, 2, 3, 4, 5, 6]}
    assert mismatch(saved, 3, 1) is None
    assert mismatch(saved, 3, 0) == "it holds a cluster of 3 masters with 1 replicas each"
    assert mismatch(saved, 2, 1) is not None
    assert (
        mismatch({**saved, "ports": [1, 2]}, 3, 1)
        == "its layout.json lists the wrong number of ports"
    )
    assert mismatch({}, 3, 0) is not None
