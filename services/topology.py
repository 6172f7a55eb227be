"""`llmwatch topology`: the compose stack without Docker, from the same `deploy/` files.

Starts a redis-server (the embedded launcher, with `deploy/redis.conf`'s directives), several
`llmwatch serve <service>` processes on free loopback ports, Debian's nginx on
`deploy/nginx.conf` and Debian's prometheus on `deploy/prometheus.yml` + `deploy/alerts.yml`,
rendered for those ports by `services.deploy_config`. The e2e tests drive the same class.
Everything binds 127.0.0.1.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import httpx

from services import deploy_config
from shared.redis_server import EmbeddedRedis, free_port

DEPLOY_DIR = Path(__file__).resolve().parent.parent / "deploy"
SERVICES = ("ingest", "aggregator", "stream", "metrics")
# Front doors first (no new work comes in), then the HTTP services, then the consumer, so it
# drains what was accepted; each tier is signalled at once and awaited together.
STOP_TIERS = (("nginx", "prometheus"), ("ingest", "stream", "metrics"), ("aggregator",))


@dataclass
class Process:
    """One child process: an llmwatch replica, nginx or prometheus."""

    name: str
    service: str
    port: int
    command: list[str]
    log: Path
    env: dict[str, str] | None = None
    popen: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def start(self) -> Process:
        # Append: nginx workers share the file with the master. A session of its own: Ctrl-C
        # reaches only the runner, which stops the parts in order.
        with open(self.log, "ab") as out:
            self.popen = subprocess.Popen(
                self.command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=self.env, start_new_session=True,
            )  # fmt: skip
        return self

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def send_signal(self, sig: int) -> None:
        if self.alive() and self.popen is not None:
            self.popen.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int | None:
        """Send `sig` (SIGTERM: graceful, as `docker compose stop`) and wait; SIGKILL stragglers."""
        proc = self.popen
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return proc.returncode

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass
class Topology:
    """The whole stack as local processes. `start()` returns once every part answers."""

    run_dir: Path
    replicas: dict[str, int] = field(default_factory=lambda: {s: 1 for s in SERVICES})
    port: int = 3000
    prometheus_port: int | None = None  # None: no prometheus
    redis_url: str | None = None  # None: start a private redis-server
    env: dict[str, str] = field(default_factory=dict)
    deploy_dir: Path = DEPLOY_DIR
    scrape_interval: str | None = None  # override deploy/prometheus.yml's (tests scrape faster)
    nginx_binary: str | None = None
    prometheus_binary: str | None = None
    processes: list[Process] = field(default_factory=list)
    redis: EmbeddedRedis | None = None

    # --- looking around ---------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def prometheus_url(self) -> str | None:
        return f"http://127.0.0.1:{self.prometheus_port}" if self.prometheus_port else None

    def of(self, service: str) -> list[Process]:
        return [p for p in self.processes if p.service == service]

    # --- lifecycle ----------------------------------------------------------------------------
    def start(self, timeout: float = 90.0) -> Self:
        missing = set(SERVICES) - set(self.replicas)
        if missing or any(n < 1 for n in self.replicas.values()):
            raise ValueError(f"every service needs at least one replica: {self.replicas}")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "logs").mkdir(exist_ok=True)
        try:
            self._start_redis()
            for service in SERVICES:
                for i in range(1, self.replicas[service] + 1):
                    self._spawn_service(service, i)
            self._wait_ready(self.processes, "/readyz", timeout)
            nginx = self._start_nginx()
            self._wait_ready([nginx], "/healthz", timeout)
            if self.prometheus_port:
                self._wait_ready([self._start_prometheus()], "/-/ready", timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for tier in STOP_TIERS:
            procs = [p for p in self.processes if p.service in tier and p.alive()]
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            for proc in procs:
                proc.stop()
        if self.redis is not None:
            self.redis.stop()
            self.redis = None

    def restart(self, proc: Process, timeout: float = 60.0) -> None:
        """Start a stopped replica again on its port (compose's `restart: unless-stopped`)."""
        proc.stop()
        proc.start()
        self._wait_ready([proc], "/readyz", timeout)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- parts ------------------------------------------------------------------------------
    def _start_redis(self) -> None:
        if self.redis_url:
            return
        conf = (self.deploy_dir / "redis.conf").read_text()
        self.redis = EmbeddedRedis(
            self.run_dir / "redis", extra_args=deploy_config.redis_args(conf)
        ).start()
        self.redis_url = self.redis.url

    def _spawn_service(self, service: str, index: int) -> Process:
        port = free_port()
        env = {**os.environ, **self.env, "REDIS_URL": str(self.redis_url)}
        command = [sys.executable, "-m", "services.cli", "serve", service,
                   "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
        log = self.run_dir / "logs" / f"{service}-{index}.log"
        proc = Process(f"{service}-{index}", service, port, command, log, env=env).start()
        self.processes.append(proc)
        return proc

    def _start_nginx(self) -> Process:
        binary = self.nginx_binary or _which("nginx", "/usr/sbin/nginx")
        prefix = self.run_dir / "nginx"
        (prefix / "temp").mkdir(parents=True, exist_ok=True)
        shipped = (self.deploy_dir / "nginx.conf").read_text()
        # An upstream is named after the compose service whose replicas it balances.
        upstreams = {
            u: [p.address for p in self.of(u)] for u in deploy_config.nginx_upstreams(shipped)
        }
        conf = deploy_config.render_nginx(
            shipped, listen=f"127.0.0.1:{self.port}", upstreams=upstreams
        )
        (prefix / "nginx.conf").write_text(conf)
        globals_ = deploy_config.nginx_globals(prefix / "nginx.pid", as_root=os.geteuid() == 0)
        command = [binary, "-p", f"{prefix}/", "-c", str(prefix / "nginx.conf"), "-g", globals_]
        proc = Process("nginx", "nginx", self.port, command, self.run_dir / "logs" / "nginx.log")
        self.processes.append(proc.start())
        return proc

    def _start_prometheus(self) -> Process:
        import yaml  # the test extra; only the local runner reads YAML

        binary = self.prometheus_binary or _which("prometheus")
        home = self.run_dir / "prometheus"
        (home / "targets").mkdir(parents=True, exist_ok=True)
        shipped = yaml.safe_load((self.deploy_dir / "prometheus.yml").read_text())
        for job, names in deploy_config.prometheus_jobs(shipped).items():
            addresses = [p.address for name in names for p in self.of(name)]
            targets = deploy_config.file_sd_targets(addresses)
            (home / "targets" / f"{job}.json").write_text(json.dumps(targets))
        rendered = deploy_config.render_prometheus(
            shipped, targets_dir=home / "targets", rules_dir=self.deploy_dir.resolve(),
            scrape_interval=self.scrape_interval,
        )  # fmt: skip
        (home / "prometheus.yml").write_text(yaml.safe_dump(rendered, sort_keys=False))
        port = int(self.prometheus_port or 0)
        command = [binary, f"--config.file={home / 'prometheus.yml'}",
                   f"--storage.tsdb.path={home / 'data'}",
                   f"--web.listen-address=127.0.0.1:{port}",
                   "--log.level=warn"]  # fmt: skip
        proc = Process("prometheus", "prometheus", port, command,
                       self.run_dir / "logs" / "prometheus.log")  # fmt: skip
        self.processes.append(proc.start())
        return proc

    def _wait_ready(self, procs: list[Process], path: str, timeout: float) -> None:
        pending = list(procs)
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=2.0) as client:
            while pending:
                for proc in list(pending):
                    if not proc.alive():
                        raise RuntimeError(f"{proc.name} exited:\n{proc.log_tail()}")
                    with contextlib.suppress(httpx.HTTPError):
                        if client.get(proc.url + path).status_code == 200:
                            pending.remove(proc)
                if pending and time.monotonic() > deadline:
                    names = ", ".join(p.name for p in pending)
                    raise TimeoutError(f"not ready after {timeout:.0f}s: {names}\n"
                                       f"{pending[0].log_tail()}")  # fmt: skip
                if pending:
                    time.sleep(0.1)


def _which(name: str, *candidates: str) -> str:
    for candidate in (name, *candidates):
        found = shutil.which(candidate)
        if found:
            return found
    raise FileNotFoundError(f"{name} not found: `apt-get install {name}` (as .ci/run does)")


# --- the CLI command --------------------------------------------------------------------------
def register(sub: Any) -> None:
    """Add `llmwatch topology` to the CLI's subcommands."""
    p = sub.add_parser(
        "topology", help="run the compose topology locally: nginx, prometheus, N replicas",
        description="The docker-compose stack without Docker: the repo's deploy/ configs, "
        "Debian's nginx and prometheus, and `llmwatch serve` processes on loopback ports.",
    )  # fmt: skip
    for service in SERVICES:
        default = 3 if service == "ingest" else 1
        p.add_argument(f"--{service}", type=int, default=default, metavar="N",
                       help=f"{service} replicas (default {default})")  # fmt: skip
    p.add_argument("--port", type=int, default=3000, help="nginx front door (default 3000)")
    p.add_argument("--prometheus-port", type=int, default=9090, help="default 9090; 0 = none")
    p.add_argument("--redis-url", help="use this Redis instead of a private redis-server")
    p.add_argument(
        "--run-dir",
        type=Path,
        default=Path(".llmwatch/topology"),
        help="configs, logs and data of this run (default .llmwatch/topology)",
    )
    p.add_argument("--deploy-dir", type=Path, default=DEPLOY_DIR, help=argparse.SUPPRESS)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    topology = Topology(
        run_dir=args.run_dir, replicas={s: getattr(args, s) for s in SERVICES}, port=args.port,
        prometheus_port=args.prometheus_port or None,
        redis_url=args.redis_url or os.environ.get("REDIS_URL") or None,
        deploy_dir=args.deploy_dir,
    )  # fmt: skip
    # SIGTERM (e.g. from a supervisor) unwinds like Ctrl-C, through the `finally` that stops all.
    previous = signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
    try:
        topology.start()
        _print_summary(topology)
        return _supervise(topology)
    except (FileNotFoundError, RuntimeError, TimeoutError, ValueError) as exc:
        print(f"llmwatch topology: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        topology.stop()
        signal.signal(signal.SIGTERM, previous)


def _print_summary(topology: Topology) -> None:
    print(f"front door    {topology.url}  (nginx, {topology.run_dir / 'nginx' / 'nginx.conf'})")
    if topology.prometheus_url:
        print(f"prometheus    {topology.prometheus_url}")
    print(f"redis         {topology.redis_url}")
    for proc in topology.processes:
        if proc.service in SERVICES:
            print(f"{proc.name:<14}{proc.url}  log {proc.log}")
    print("Ctrl-C stops everything.", flush=True)


def _supervise(topology: Topology) -> int:
    """Restart a replica that died (compose's restart policy); nginx or prometheus dying ends
    the run, since they are the ones the operator is looking at."""
    while True:
        time.sleep(1.0)
        for proc in topology.processes:
            if proc.alive():
                continue
            if proc.service not in SERVICES:
                print(f"llmwatch topology: {proc.name} exited:\n{proc.log_tail()}", file=sys.stderr)
                return 1
            code = proc.popen.returncode if proc.popen else None
            print(f"llmwatch topology: {proc.name} exited ({code}); restarting", file=sys.stderr)
            with contextlib.suppress(RuntimeError, TimeoutError):
                topology.restart(proc)
