"""Cost from genai-prices (services/aggregator/cost.py)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from genai_prices import Usage, calc_price

from services.aggregator import cost

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("model", "prompt", "completion", "usd"),
    [
        ("gpt-4o", 1000, 500, "0.0075"),  # $2.50 / $10 per million
        ("gpt-4o-mini", 1000, 500, "0.00045"),  # $0.15 / $0.60 per million
        ("claude-3-5-sonnet-20241022", 1000, 500, "0.0105"),  # $3 / $15 per million
    ],
)
def test_known_models(model: str, prompt: int, completion: int, usd: str) -> None:
    assert cost.cost_usd(model, prompt, completion) == Decimal(usd)


@pytest.mark.parametrize("model", ["gpt-4o", "o3-mini", "gemini-2.5-pro", "claude-3-5-haiku"])
@pytest.mark.parametrize(("prompt", "completion"), [(1, 1), (12_345, 6_789), (250_000, 1_000)])
def test_same_as_calc_price(model: str, prompt: int, completion: int) -> None:
    expected = calc_price(
        Usage(input_tokens=prompt, output_tokens=completion), model_ref=model
    ).total_price
    assert cost.cost_usd(model, prompt, completion) == expected


def test_unknown_model_is_null() -> None:
    assert cost.cost_usd("qwen2.5-coder:latest", 100, 100) is None
    assert cost.cost_usd(None, 100, 100) is None


def test_nanos_round_trip() -> None:
    assert cost.to_nanos(Decimal("0.0075")) == 7_500_000
    assert cost.to_nanos(None) == 0
    assert cost.from_nanos(7_500_000) == 0.0075


@pytest.mark.parametrize(
    "model", ["gpt-4o", "gpt-4o-mini", "o3-mini", "gemini-2.5-pro", "claude-3-5-haiku", "nope"]
)
@pytest.mark.parametrize(("prompt", "completion"), [(0, 0), (1, 1), (12_345, 6_789), (250_000, 7)])
def test_nanos_and_usd_are_the_exact_cost(model: str, prompt: int, completion: int) -> None:
    price = cost.cost_usd(model, prompt, completion)
    expected = None if price is None else cost.to_nanos(price)
    assert cost.nanos(model, prompt, completion) == expected
    assert cost.usd(model, prompt, completion) == (None if price is None else float(price))
