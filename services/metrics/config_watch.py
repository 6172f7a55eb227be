"""Is llmwatch.toml still what this process loaded? And what a reload may change live.

Polling a content hash (not only the mtime) needs no extra dependency, works on bind mounts and
network file systems, and ignores a `touch` that changes nothing. A missing file hashes to None,
so creating or deleting it counts as a change.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from shared.settings import Settings

# Settings that take effect without a restart: each is read where it is used, at each use.
# Everything else (ports, Redis, partitions, tokens, ingest limits...) needs a restart.
LIVE = (
    "log_level",
    "sample_interval_s",
    "pressure_mem_pct",
    "pressure_cpu_pct",
    "pressure_for_s",
    "sse_ping_s",
    "sse_max_streams",
    "sse_max_per_ip",
    "sse_queue_frames",
    "sse_send_timeout_s",
    "retry_after_s",
)

# Given on the command line (or chosen by `llmwatch up`), so a fresh load never sees them.
_CLI = frozenset({"host", "port", "redis_url", "data_dir"})


def digest(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return None
    except OSError as exc:  # unreadable counts as "not what we loaded"
        return f"unreadable:{type(exc).__name__}"


class ConfigWatch:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.loaded = digest(path)

    def stale(self) -> bool:
        return digest(self.path) != self.loaded

    def mark_loaded(self, value: str | None) -> None:
        self.loaded = value


def apply_live(current: Settings, fresh: Settings) -> tuple[dict[str, Any], list[str]]:
    """Copy the live-applicable settings that changed from `fresh` into `current` (shared by
    every service of the process). Returns (applied {name: new value}, names needing a restart)."""
    applied: dict[str, Any] = {}
    for name in LIVE:
        value = getattr(fresh, name)
        if getattr(current, name) != value:
            setattr(current, name, value)
            applied[name] = value
    restart = sorted(
        name
        for name in type(current).model_fields
        if name not in LIVE and name not in _CLI and getattr(current, name) != getattr(fresh, name)
    )
    return applied, restart
