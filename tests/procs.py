"""Real processes for the fault tests: `llmwatch serve <target>` on 127.0.0.1 and a private
redis-server, each of which a test can kill with SIGKILL and start again on the same port (and,
for Redis, the same data directory and AOF).

Everything a test starts goes through one `Stack`, which stops it all however the test ends.
Blocking calls (start, kill, wait) are plain functions; async tests wrap them in
`asyncio.to_thread` so the load they generate keeps flowing meanwhile.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
from prometheus_client.parser import text_string_to_metric_families

from shared.redis_server import EmbeddedRedis, free_port

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 30.0


def service_env(**settings: Any) -> dict[str, str]:
    """This environment without the developer's LLMWATCH_*/REDIS_URL, plus `settings` as
    `LLMWATCH_<NAME>` (lists joined by commas). Logs at warning unless told otherwise."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMWATCH_")}
    env.pop("REDIS_URL", None)
    env["LLMWATCH_CONFIG"] = str(ROOT / ".absent-llmwatch.toml")
    env["LLMWATCH_LOG_LEVEL"] = "warning"
    for name, value in settings.items():
        text = ",".join(value) if isinstance(value, list | tuple) else str(value)
        env[f"LLMWATCH_{name.upper()}"] = text
    return env


@dataclass
class Service:
    """One `llmwatch serve <target>` process. `start()` again after `kill()` reuses the port."""

    target: str
    redis_url: str
    logdir: Path
    env: Mapping[str, str]
    port: int = field(default_factory=free_port)
    host: str | None = "127.0.0.1"
    popen: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.logdir / f"{self.target}-{self.port}.log"

    @property
    def pid(self) -> int:
        assert self.popen is not None, f"{self.target} is not running"
        return self.popen.pid

    def argv(self) -> list[str]:
        argv = [sys.executable, "-m", "services.cli", "serve", self.target]
        argv += ["--port", str(self.port), "--redis-url", self.redis_url]
        return argv + (["--host", self.host] if self.host else [])

    def start(self, *, ready: bool = True) -> Service:
        """Spawn the process; wait for /readyz (`ready`) or only /healthz."""
        self.logdir.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(
                self.argv(), cwd=ROOT, env=dict(self.env), stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )  # fmt: skip
        self.starts += 1
        self.wait_for("/readyz" if ready else "/healthz")
        return self

    def wait_for(self, path: str = "/readyz", timeout: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.popen is None or self.popen.poll() is not None:
                raise RuntimeError(f"{self.target} exited at start:\n{self.log_tail()}")
            try:
                if httpx.get(self.url + path, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.target}{path} not 200 in {timeout}s:\n{self.log_tail()}")
            time.sleep(0.05)

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL: no shutdown hook, no flush, no goodbye."""
        if self.alive():
            assert self.popen is not None
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait(10)

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, then SIGKILL after `timeout`. Returns the exit code."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        return self.popen.returncode

    def rss(self) -> int:
        return int(psutil.Process(self.pid).memory_info().rss)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of `name` (a full sample name, e.g. `..._total`) whose labels
        include `labels`, read from this process's /metrics."""
        text = httpx.get(self.url + "/metrics", timeout=5).text
        return metric_value(text, name, **labels)


def metric_value(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


class KillableRedis(EmbeddedRedis):
    """The embedded launcher with the AOF policy under test; `kill()` then `start()` brings it
    back on the same port and data directory, replaying its AOF."""

    def restart(self) -> KillableRedis:
        self.kill()
        self.start()
        return self

    def client_count(self) -> int:
        """Connected clients other than the one asking (CLIENT LIST)."""
        import redis as sync_redis

        client = sync_redis.Redis.from_url(self.url)
        try:
            return len(client.client_list()) - 1
        finally:
            client.close()


@dataclass
class Stack:
    """What a test started: one Redis and any number of services, stopped in reverse order."""

    workdir: Path
    redis: KillableRedis
    services: list[Service] = field(default_factory=list)

    def service(self, target: str, *, ready: bool = True, **settings: Any) -> Service:
        svc = Service(target, self.redis.url, self.workdir / "logs", service_env(**settings))
        self.services.append(svc)
        return svc.start(ready=ready)

    def close(self) -> None:
        for svc in reversed(self.services):
            svc.stop(timeout=5)
        self.redis.stop()


def stack(workdir: Path, *, appendfsync: str = "everysec") -> Iterator[Stack]:
    """Generator for a fixture: a fresh Redis under `workdir`; everything stopped afterwards."""
    redis = KillableRedis(workdir / "redis", appendfsync=appendfsync)
    redis.start()
    started = Stack(workdir, redis)
    try:
        yield started
    finally:
        started.close()
