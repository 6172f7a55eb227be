"""How many SSE streams this process holds, in total and per client IP. Pure bookkeeping.

The limits are read from settings at each `acquire`, so a live reload of `sse_max_streams` /
`sse_max_per_ip` applies to the next connection (open streams are never cut by a lower limit).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class StreamLimits:
    total: int = 0
    per_ip: Counter[str] = field(default_factory=Counter)

    def acquire(self, ip: str, max_total: int, max_per_ip: int) -> str | None:
        """Take a slot; None on success, else which limit refused it (`process` or `ip`)."""
        if self.total >= max_total:
            return "process"
        if self.per_ip[ip] >= max_per_ip:
            return "ip"
        self.total += 1
        self.per_ip[ip] += 1
        return None

    def release(self, ip: str) -> None:
        if self.per_ip[ip] <= 0:
            raise ValueError(f"release without acquire for {ip!r}")
        self.total -= 1
        self.per_ip[ip] -= 1
        if self.per_ip[ip] == 0:
            del self.per_ip[ip]
