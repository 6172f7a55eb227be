"""Cost in USD from the genai-prices database (pydantic's maintained price package), never from a
hand-kept table. Unknown model -> None (shown as `null`).

Sums are kept in Redis as integer nano-dollars (`to_nanos`), so adding many small costs in any
order gives exactly the same total.
"""

from __future__ import annotations

import functools
from decimal import Decimal

NANOS = 1_000_000_000


@functools.lru_cache(maxsize=16384)
def cost_usd(model: str | None, prompt: int, completion: int) -> Decimal | None:
    if not model:
        return None
    from genai_prices import Usage, calc_price  # deferred: the price snapshot loads on import

    try:
        price = calc_price(Usage(input_tokens=prompt, output_tokens=completion), model_ref=model)
    except LookupError:
        return None
    return Decimal(price.total_price)


def to_nanos(cost: Decimal | None) -> int:
    return 0 if cost is None else int((cost * NANOS).to_integral_value())


def from_nanos(nanos: int) -> float:
    return round(nanos / NANOS, 9)
