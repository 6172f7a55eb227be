"""The local Redis Cluster of `llmwatch up --cluster N [--replicas R]`, for development.

N masters (each with R replicas) from the same redis-server binary as the embedded single server
(`shared.redis_server.EmbeddedCluster`), under `<data_dir>/cluster/`, AOF on. The ports are kept
in `layout.json` there: every node's `nodes.conf` names its peers by port, so a restart must reuse
them, and then the cluster comes back with its data. A data directory holds one cluster shape; asking
for another is refused rather than silently starting an empty cluster beside the old one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from shared.redis_server import EmbeddedCluster

CLUSTER_DIR = "cluster"
LAYOUT_FILE = "layout.json"


class LayoutMismatch(RuntimeError):
    """The data directory holds a cluster of another shape."""


def default_partitions(masters: int) -> int:
    """Two partitions per master: every shard holds some, and one more master later still
    gets partitions without changing the count (which would move runs between streams)."""
    return 2 * masters


def mismatch(saved: dict[str, Any], masters: int, replicas: int) -> str | None:
    """Why a saved layout cannot be started as `masters` × (1 + `replicas`), or None."""
    have = (saved.get("masters"), saved.get("replicas"))
    if have != (masters, replicas):
        return f"it holds a cluster of {have[0]} masters with {have[1]} replicas each"
    ports = saved.get("ports")
    if not isinstance(ports, list) or len(ports) != masters * (1 + replicas):
        return "its layout.json lists the wrong number of ports"
    return None


def layout_path(data_dir: Path) -> Path:
    return Path(data_dir) / CLUSTER_DIR / LAYOUT_FILE


def read_layout(data_dir: Path) -> dict[str, Any] | None:
    path = layout_path(data_dir)
    if not path.exists():
        return None
    try:
        saved = json.loads(path.read_text())
    except ValueError:
        return None
    return saved if isinstance(saved, dict) else None


def start(
    data_dir: Path, masters: int, replicas: int = 0, *, appendfsync: str = "everysec"
) -> EmbeddedCluster:
    """Start (or restart, with its data) the cluster under `data_dir`; returns it running."""
    home = Path(data_dir) / CLUSTER_DIR
    saved = read_layout(data_dir)
    ports: list[int] | None = None
    if saved is not None:
        reason = mismatch(saved, masters, replicas)
        if reason:
            raise LayoutMismatch(
                f"{home.resolve()} cannot start as {masters} masters with {replicas} replicas: "
                f"{reason}. Use that shape, another LLMWATCH_DATA_DIR, or delete {home}"
            )
        ports = [int(p) for p in saved["ports"]]
    cluster = EmbeddedCluster(home, masters=masters, replicas=replicas, appendfsync=appendfsync,
                              ports=ports)  # fmt: skip
    try:
        cluster.start()
    except BaseException as exc:
        cluster.stop()  # the nodes that did start (Ctrl-C, or one node failing, leaves the rest up)
        if ports and isinstance(exc, RuntimeError):
            raise RuntimeError(f"{exc} (a restart needs its old ports {ports} free)") from exc
        raise
    home.mkdir(parents=True, exist_ok=True)
    layout = {"masters": masters, "replicas": replicas, "ports": [n.port for n in cluster.nodes]}
    layout_path(data_dir).write_text(json.dumps(layout) + "\n")
    return cluster
