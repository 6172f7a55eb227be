"""Hypothesis strategies shared by the tests."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st


def json_values(width: int = 4, key_size: int = 8, leaves: int = 12) -> st.SearchStrategy[Any]:
    """Any JSON value: scalars (finite numbers, 64-bit integers, text), lists and objects."""
    return st.recursive(
        st.none()
        | st.booleans()
        | st.integers(-(2**63), 2**63 - 1)
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(),
        lambda children: (
            st.lists(children, max_size=width)
            | st.dictionaries(st.text(max_size=key_size), children, max_size=width)
        ),
        max_leaves=leaves,
    )
