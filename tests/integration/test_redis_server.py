"""The embedded launcher: AOF on, loopback only, clean stop, data survives a restart."""

import pytest
import redis as sync_redis

from shared.redis_server import EmbeddedRedis, find_redis_server

pytestmark = pytest.mark.integration


def test_finds_a_binary() -> None:
    assert find_redis_server().endswith("redis-server")


def test_aof_persists_across_restart(tmp_path) -> None:
    server = EmbeddedRedis(tmp_path, appendfsync="always").start()
    client = sync_redis.Redis.from_url(server.url)
    assert client.config_get("appendonly")["appendonly"] == "yes"
    client.xadd("s", {"e": "1"})
    client.close()
    port = server.port
    server.kill()  # no flush: appendfsync always must have it on disk already
    again = EmbeddedRedis(tmp_path, port=port).start()
    client = sync_redis.Redis.from_url(again.url)
    assert client.xlen("s") == 1
    client.close()
    again.stop()
    assert again.process is None
