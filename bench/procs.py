"""Servers under test as real subprocesses on 127.0.0.1: redis-server, llmwatch services, the
reference app, nginx. Each writes its log under the run's work directory."""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

import psutil

from shared.redis_server import EmbeddedCluster, EmbeddedRedis, free_port

ROOT = Path(__file__).resolve().parent.parent


class ServiceUnavailable(RuntimeError):
    """The server under test did not come up (not built yet, or crashed at start)."""


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    port: int | None = None
    log: Path | None = None

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def rss(self) -> int:
        try:
            return int(psutil.Process(self.pid).memory_info().rss)
        except psutil.Error:
            return 0

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        if not self.log or not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 10.0) -> None:
        if self.popen.poll() is not None:
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()


@dataclass
class Procs:
    """Everything a figure started, stopped in reverse order however the figure ends."""

    workdir: Path
    started: list[Proc] = field(default_factory=list)
    redis_servers: list[EmbeddedRedis] = field(default_factory=list)
    redis_clusters: list[EmbeddedCluster] = field(default_factory=list)

    def redis(self, name: str = "redis") -> EmbeddedRedis:
        server = EmbeddedRedis(self.workdir / name)
        server.start()
        self.redis_servers.append(server)
        return server

    def cluster(self, masters: int, name: str = "cluster") -> EmbeddedCluster:
        """A local Redis Cluster of `masters` shards, no replicas (AOF as the single server)."""
        cluster = EmbeddedCluster(self.workdir / name, masters=masters)
        self.redis_clusters.append(cluster)  # before start: a failed start leaves nodes to stop
        cluster.start()
        return cluster

    def spawn(
        self,
        name: str,
        argv: list[str],
        *,
        port: int | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Proc:
        log = self.workdir / f"{name}.log"
        with open(log, "ab") as out:
            popen = subprocess.Popen(
                argv, cwd=ROOT, env=dict(env or clean_env()), stdout=out,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        proc = Proc(name, popen, port, log)
        self.started.append(proc)
        return proc

    def service(
        self,
        target: str,
        redis_url: str,
        *,
        name: str | None = None,
        settings: Mapping[str, str] | None = None,
        timeout: float = 30.0,
        wait: bool = True,
    ) -> Proc:
        """`llmwatch serve TARGET` on a free port, waited for until /readyz answers 200."""
        port = free_port()
        env = clean_env()
        env.update({"REDIS_URL": redis_url, "LLMWATCH_LOG_LEVEL": "warning",
                    "LLMWATCH_DATA_DIR": str(self.workdir / "data")})  # fmt: skip
        env.update(settings or {})
        argv = [sys.executable, "-m", "services.cli", "serve", target,
                "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
        proc = self.spawn(name or target, argv, port=port, env=env)
        if wait:
            wait_http(proc, "/readyz", timeout)
        return proc

    def refapp(self, timeout: float = 20.0, *, kind: str = "bare", wait: bool = True,
               env: Mapping[str, str] | None = None) -> Proc:  # fmt: skip
        """A reference app: `bare` ASGI answering {"ok":true}, `fastapi` one-route FastAPI app,
        `sse`, a bare ASGI event stream that holds idle clients, or `fastfront`, ingest's own
        handler behind a raw ASGI front (bench/fastfront.py; needs REDIS_URL in `env`)."""
        port = free_port()
        target = {"bare": ["bench.refapp:app"], "sse": ["bench.refapp:sse"],
                  "fastapi": ["--factory", "bench.refapp:fastapi_factory"],
                  "fastfront": ["--factory", "bench.fastfront:factory"]}[kind]  # fmt: skip
        argv = [sys.executable, "-m", "uvicorn", *target, "--host", "127.0.0.1",
                "--port", str(port), "--loop", "uvloop", "--http", "httptools",
                "--lifespan", "on" if kind == "fastfront" else "off", "--no-access-log",
                "--no-server-header", "--log-level", "warning"]  # fmt: skip
        proc = self.spawn(f"refapp-{kind}", argv, port=port, env={**clean_env(), **(env or {})})
        if wait:
            ready(proc, timeout=timeout)
        return proc

    def stop_all(self) -> None:
        for proc in reversed(self.started):
            with contextlib.suppress(Exception):
                proc.stop()
        self.started.clear()
        for server in reversed(self.redis_servers):
            with contextlib.suppress(Exception):
                server.stop()
        self.redis_servers.clear()
        for cluster in reversed(self.redis_clusters):
            with contextlib.suppress(Exception):
                cluster.stop()
        self.redis_clusters.clear()


@contextlib.contextmanager
def procs(workdir: Path) -> Iterator[Procs]:
    workdir.mkdir(parents=True, exist_ok=True)
    group = Procs(workdir)
    try:
        yield group
    finally:
        group.stop_all()


def clean_env() -> dict[str, str]:
    """This process's environment without the developer's LLMWATCH_* / REDIS_URL settings."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("LLMWATCH_") and k != "REDIS_URL"}  # fmt: skip
    env["LLMWATCH_CONFIG"] = "/nonexistent/llmwatch.toml"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def wait_http(proc: Proc, path: str, timeout: float, *, method: str = "GET") -> None:
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if not proc.alive():
            raise ServiceUnavailable(
                f"{proc.name} exited with {proc.popen.returncode}: {proc.log_tail()}"
            )
        try:
            status, _ = request(proc.port or 0, method, path, timeout=2)
            if status == 200:
                return
            last = f"HTTP {status}"
        except OSError as exc:
            last = repr(exc)
        time.sleep(0.05)
    raise ServiceUnavailable(f"{proc.name} not ready after {timeout}s ({last}): {proc.log_tail()}")


def ready(*started: Proc, timeout: float = 30.0) -> None:
    """Wait for processes spawned with `wait=False` (they start in parallel meanwhile)."""
    for proc in started:
        if proc.name.startswith("refapp-sse"):
            wait_port(proc, timeout)
        elif proc.name.startswith("refapp-fastfront"):
            wait_http(proc, "/readyz", timeout)
        elif proc.name.startswith("refapp"):
            wait_http(proc, "/", timeout, method="POST")
        else:
            wait_http(proc, "/readyz", timeout)


def wait_port(proc: Proc, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise ServiceUnavailable(f"{proc.name} exited: {proc.log_tail()}")
        try:
            socket.create_connection(("127.0.0.1", proc.port or 0), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise ServiceUnavailable(f"{proc.name} not listening after {timeout}s")


def request(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    *,
    timeout: float = 10.0,
    headers: Mapping[str, str] | None = None,
) -> tuple[int, bytes]:
    """One blocking HTTP request on loopback: (status, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        hdrs = {"Content-Type": "application/json"} if body is not None else {}
        hdrs.update(headers or {})
        conn.request(method, path, body=body, headers=hdrs)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


class RssSampler:
    """Peak RSS of a process, sampled every `interval` seconds in a thread while in `with`."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        import threading

        self.pid = pid
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            process = psutil.Process(self.pid)
            while not self._stop.is_set():
                self.peak = max(self.peak, int(process.memory_info().rss))
                self._stop.wait(self.interval)
        except psutil.Error:
            return

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def cpu_seconds(pid: int) -> float:
    try:
        t = psutil.Process(pid).cpu_times()
        return float(t.user + t.system)
    except psutil.Error:
        return 0.0


class CpuMeter:
    """Share of one core each process used inside `with` (1.0 = one whole core): tells whether
    a figure is bounded by its server's CPU, by Redis, or by something else (waiting)."""

    def __init__(self, pids: Mapping[str, int]) -> None:
        self.pids = dict(pids)
        self.shares: dict[str, float] = {}

    def __enter__(self) -> Self:
        self._t0 = time.perf_counter()
        self._before = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        return self

    def __exit__(self, *exc: object) -> None:
        seconds = time.perf_counter() - self._t0
        if seconds <= 0:
            return
        self.shares = {
            name: round((cpu_seconds(pid) - self._before[name]) / seconds, 2)
            for name, pid in self.pids.items()
        }
