"""Cost in USD from the genai-prices database (pydantic's maintained price package), never from a
hand-kept table. Unknown model -> None (shown as `null`).

`calc_price` costs ~70 µs a call, too slow for every event at 20k events/s. Most models are priced
per token, so each model is probed once: when its price is linear in (input, output) tokens at
every probe (including one past the usual long-context tier threshold), later costs are computed
from the two unit prices, exactly as calc_price would; tiered models keep calling calc_price.

Sums are kept in Redis as integer nano-dollars (`to_nanos`), so adding many small costs in any
order gives exactly the same total. `nanos` gives that integer directly: for a linear model whose
unit prices are whole nano-dollars per token (most are) it is integer arithmetic, exactly
`to_nanos(cost_usd(...))` at a fraction of the cost.
"""

from __future__ import annotations

import functools
from decimal import Decimal

NANOS = 1_000_000_000
_PROBES = ((1_000, 0), (0, 1_000), (12_345, 678), (300_000, 50_000))


def _calc(model: str, prompt: int, completion: int) -> Decimal:
    from genai_prices import Usage, calc_price  # deferred: the price snapshot loads on import

    price = calc_price(Usage(input_tokens=prompt, output_tokens=completion), model_ref=model)
    return Decimal(price.total_price)


@functools.lru_cache(maxsize=1024)
def _unit_prices(model: str) -> tuple[Decimal, Decimal] | None | bool:
    """(per input token, per output token) for a linearly priced model, False when the model is
    priced in tiers, None when genai-prices does not know it."""
    try:
        per_in = _calc(model, 1_000_000, 0) / 1_000_000
        per_out = _calc(model, 0, 1_000_000) / 1_000_000
        for prompt, completion in _PROBES:
            if _calc(model, prompt, completion) != per_in * prompt + per_out * completion:
                return False
    except LookupError:
        return None
    return per_in, per_out


@functools.lru_cache(maxsize=16384)
def _tiered(model: str, prompt: int, completion: int) -> Decimal:
    return _calc(model, prompt, completion)


def cost_usd(model: str | None, prompt: int, completion: int) -> Decimal | None:
    if not model:
        return None
    units = _unit_prices(model)
    if units is None:
        return None
    if units is False:
        return _tiered(model, prompt, completion)
    per_in, per_out = units  # type: ignore[misc]
    return per_in * prompt + per_out * completion


@functools.lru_cache(maxsize=1024)
def _nano_units(model: str) -> tuple[int, int] | None:
    """Whole nano-dollars per (input, output) token of a linear model, else None."""
    units = _unit_prices(model)
    if not isinstance(units, tuple):
        return None
    per_in, per_out = (u * NANOS for u in units)
    if per_in != per_in.to_integral_value() or per_out != per_out.to_integral_value():
        return None
    return int(per_in), int(per_out)


def nanos(model: str | None, prompt: int, completion: int) -> int | None:
    """`to_nanos(cost_usd(model, prompt, completion))`, None when the model is not priced."""
    if not model:
        return None
    units = _nano_units(model)
    if units is not None:
        return units[0] * prompt + units[1] * completion
    price = cost_usd(model, prompt, completion)
    return None if price is None else to_nanos(price)


def usd(model: str | None, prompt: int, completion: int) -> float | None:
    """`float(cost_usd(model, prompt, completion))`: both round the same exact price."""
    if not model:
        return None
    units = _nano_units(model)
    if units is not None:
        return (units[0] * prompt + units[1] * completion) / NANOS
    price = cost_usd(model, prompt, completion)
    return None if price is None else float(price)


def to_nanos(cost: Decimal | None) -> int:
    return 0 if cost is None else int((cost * NANOS).to_integral_value())


def from_nanos(nanos: int) -> float:
    return round(nanos / NANOS, 9)
