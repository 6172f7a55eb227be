"""What every figure module shares: the result shape, error-rate checks, small Redis helpers."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import redis as sync_redis

from bench import stats
from bench.bodies import PLACEHOLDER
from bench.procs import Proc, ServiceUnavailable, request
from bench.wrk import WrkResult
from shared import keys

MAX_ERROR_SHARE = 0.01  # past 1 % non-2xx a throughput figure measures errors, not work


def figure(
    name: str,
    title: str,
    *,
    unit: str,
    value: float | None,
    target: str,
    status: str,
    reference: float | None = None,
    reference_name: str | None = None,
    ratio: float | None = None,
    details: dict[str, Any] | None = None,
    error: str | None = None,
) -> dict[str, Any]:
    return {
        "name": name,
        "title": title,
        "unit": unit,
        "value": None if value is None else round(value, 3),
        "reference": None if reference is None else round(reference, 3),
        "reference_name": reference_name,
        "ratio": ratio,
        "target": target,
        "status": status,
        "details": details or {},
        **({"error": error} if error else {}),
    }


def failed(name: str, title: str, unit: str, target: str, exc: BaseException,
           details: dict[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    """A figure that could not be measured: "skipped" if the service is not there, else "error"."""
    status = "skipped" if isinstance(exc, ServiceUnavailable) else "error"
    message = f"{type(exc).__name__}: {exc}"[:2000]
    return figure(name, title, unit=unit, value=None, target=target, status=status,
                  details=details, error=message)  # fmt: skip


def error_share(result: WrkResult) -> float:
    total = result.requests + result.errors.get("connect", 0)
    return result.error_count / total if total else 1.0


def require_clean(result: WrkResult, what: str) -> None:
    share = error_share(result)
    if share > MAX_ERROR_SHARE:
        raise RuntimeError(f"{what}: {100 * share:.1f}% errors {result.errors}")


def write_body(workdir: Path, name: str, body: bytes) -> Path:
    path = workdir / name
    path.write_bytes(body)
    return path


def fill_ids(template: bytes, prefix: str | None = None) -> bytes:
    """A template with each placeholder replaced by a fresh id (for one-off requests)."""
    prefix = prefix or uuid.uuid4().hex[:12]
    pieces = template.split(PLACEHOLDER.encode())
    out = [pieces[0]]
    for k, piece in enumerate(pieces[1:]):
        out += [f"{prefix}-{k}".encode(), piece]
    return b"".join(out)


def redis_client(url: str) -> sync_redis.Redis:
    return sync_redis.Redis.from_url(url, socket_timeout=30)


def events_stream() -> str:
    return keys.events_stream(0)


def expect_ok(proc: Proc, path: str, body: bytes) -> bytes:
    """POST once and insist on 200: a service that is not built yet answers 404 here."""
    status, answer = request(proc.port or 0, "POST", path, body)
    if status != 200:
        raise ServiceUnavailable(f"{proc.name} answered {status} to POST {path}: {answer[:300]!r}")
    return answer


def medians(samples: list[float]) -> float:
    return stats.median(samples) if samples else 0.0


def reset_command_stats(r: Any) -> None:
    r.config_resetstat()


def command_stats(
    r: Any, per: int, *, skip: tuple[str, ...] = ("xinfo", "info", "config")
) -> dict[str, Any]:
    """Redis' own count of each command since the last reset, per `per` events: how many round
    trips and how much server time a figure's work cost (the harness's polling is skipped)."""
    out: dict[str, Any] = {}
    for name, row in sorted(r.info("commandstats").items(), key=lambda kv: -kv[1]["usec"]):
        command = name.removeprefix("cmdstat_")
        if command.split("|")[0] in skip:
            continue
        out[command] = {"calls": row["calls"], "usec": row["usec"],
                        "calls_per_1k_events": round(1000 * row["calls"] / max(1, per), 2)}  # fmt: skip
    return out
