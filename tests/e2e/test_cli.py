"""The console script as a user runs it: `llmwatch up` (embedded Redis) serves the write routes;
`apps add/list`, `send` and `tail` work against it; SIGTERM and Ctrl-C stop it and its Redis.
`llmwatch up --cluster 3` does the same on a local 3-master Redis Cluster, which a restart brings
back with its data."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import psutil
import pytest

from shared.samples import all_samples
from tests.helpers import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

EVENT = {"event_type": "request", "command": "ask", "status": "start", "model": "m"}


def llmwatch() -> list[str]:
    script = Path(sys.executable).parent / "llmwatch"
    return [str(script)] if script.exists() else [sys.executable, "-m", "services.cli"]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    values = {
        k: v for k, v in os.environ.items() if not k.startswith("LLMWATCH_") and k != "REDIS_URL"
    }
    values["LLMWATCH_DATA_DIR"] = str(tmp_path / "data")
    values["LLMWATCH_CONFIG"] = str(tmp_path / "absent.toml")
    return values


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*llmwatch(), *args], check=False, env=env, capture_output=True, text=True, timeout=60
    )


def refuses(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return True
    return False


@contextlib.contextmanager
def started(
    env: dict[str, str], log_path: Path, *up_args: str
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """`llmwatch up --port <free> *up_args`, yielded once its write route answers 200."""
    port = free_port()
    log = open(log_path, "ab")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [*llmwatch(), "up", "--port", str(port), *up_args], env=env, stdout=log, stderr=log
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    try:
        while True:  # up = the write route answers 200 (Redis started, services running)
            assert proc.poll() is None, log_path.read_text()
            try:
                if httpx.post(f"{url}/api/open-wrapper", json=EVENT, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.1)
        yield proc, url
    finally:
        if proc.poll() is None:  # a failed test: stop it as a user would, Redis included
            children = psutil.Process(proc.pid).children(recursive=True)
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            for child in children:
                with contextlib.suppress(psutil.Error):
                    child.kill()
        log.close()


@pytest.fixture
def stack(env: dict[str, str], tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    with started(env, tmp_path / "up.log") as running:
        yield running


def stop(proc: subprocess.Popen[bytes], signum: int, data_dir: Path) -> None:
    redis_port = int((data_dir / "redis.url").read_text().rsplit(":", 1)[1].split("/")[0])
    proc.send_signal(signum)
    proc.wait(timeout=30)
    assert refuses(redis_port)  # the embedded redis-server went with it
    assert not (data_dir / "redis.url").exists()


def test_up_serves_and_the_cli_commands_work(
    stack: tuple[subprocess.Popen[bytes], str], env: dict[str, str]
) -> None:
    proc, url = stack
    added = run(env, "apps", "add", "cli-app")
    assert added.returncode == 0, added.stderr
    app_id = added.stdout.strip()
    listed = run(env, "apps", "list")
    assert app_id in listed.stdout and "cli-app" in listed.stdout

    # the new app is accepted at once by the running server
    run_event = {"type": "llm", "event": "start", "app": app_id, "runId": "r1", "timestamp": 0}
    assert httpx.post(f"{url}/v1/runs/ingest", json=[run_event]).status_code == 200

    sent = run(env, "send", "--url", url)
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert sent.stdout.count("\n200 POST /") + sent.stdout.startswith("200") >= len(all_samples())

    tailed = run(env, "tail", "-n", "3")
    assert tailed.returncode == 0, tailed.stderr
    lines = [orjson.loads(line) for line in tailed.stdout.splitlines()]
    assert len(lines) == 3 and all({"id", "source", "timestamp"} <= set(e) for e in lines)

    # tail --follow prints what arrives, and Ctrl-C ends it
    follower = subprocess.Popen(
        [*llmwatch(), "tail", "-f", "-n", "0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=_default_sigint,  # noqa: PLW1509 - only resets SIGINT, takes no lock
    )
    try:
        marker = {**EVENT, "command": "followed"}
        os.set_blocking(follower.stdout.fileno(), False)  # type: ignore[union-attr]
        seen = b""
        deadline = time.monotonic() + 30
        while b'"followed"' not in seen:  # post until the follower (once started) prints one
            assert time.monotonic() < deadline and follower.poll() is None
            httpx.post(f"{url}/api/open-wrapper", json=marker)
            time.sleep(0.2)
            seen += follower.stdout.read() or b""  # type: ignore[union-attr]
        follower.send_signal(signal.SIGINT)
        assert follower.wait(timeout=15) == 0
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()
        follower.stdout.close()  # type: ignore[union-attr]
        follower.stderr.close()  # type: ignore[union-attr]

    stop(proc, signal.SIGTERM, Path(env["LLMWATCH_DATA_DIR"]))


def _default_sigint() -> None:
    # A child of a non-interactive shell may inherit SIGINT ignored; a user's terminal does not.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_stops_everything(
    stack: tuple[subprocess.Popen[bytes], str], env: dict[str, str]
) -> None:
    proc, _ = stack
    stop(proc, signal.SIGINT, Path(env["LLMWATCH_DATA_DIR"]))


def test_commands_without_a_stack_say_so(env: dict[str, str]) -> None:
    listed = run(env, "apps", "list")
    assert listed.returncode != 0 and "llmwatch up" in listed.stderr
    sent = run(env, "send", "--url", f"http://127.0.0.1:{free_port()}")
    assert sent.returncode == 1 and "cannot reach" in sent.stderr


# --- llmwatch up --cluster ------------------------------------------------------------------


def cluster_ports(data_dir: Path) -> list[int]:
    return [
        int(p) for p in orjson.loads((data_dir / "cluster" / "layout.json").read_bytes())["ports"]
    ]


def redis_children(proc: subprocess.Popen[bytes]) -> list[psutil.Process]:
    return [c for c in psutil.Process(proc.pid).children(recursive=True) if "redis" in c.name()]


def stop_cluster(proc: subprocess.Popen[bytes], signum: int, data_dir: Path) -> None:
    ports, nodes = cluster_ports(data_dir), redis_children(proc)
    assert len(ports) == 3 and len(nodes) == 3
    proc.send_signal(signum)
    assert proc.wait(timeout=30) in (0, 128 + signum, -signum)
    assert all(refuses(port) for port in ports)
    assert not any(node.is_running() for node in nodes)  # no stray redis-server
    assert not (data_dir / "redis.url").exists() and not (data_dir / "partitions").exists()


def history_commands(url: str) -> list[str]:
    page = httpx.get(f"{url}/api/history", params={"limit": 100}, timeout=10)
    assert page.status_code == 200, page.text
    return [item["command"] for item in page.json()["items"]]


def wait_for(check: object, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def sse_frame_with(url: str, command: str) -> dict[str, str]:
    """Post events with `command` while reading /api/events until one comes back as a frame
    (posting again until the stream has surely subscribed): its `id` and `data` fields."""
    with httpx.stream("GET", f"{url}/api/events", timeout=httpx.Timeout(10, read=20)) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        frame: dict[str, str] = {}
        posted_at = 0.0
        deadline = time.monotonic() + 30
        for line in resp.iter_lines():
            assert time.monotonic() < deadline, "no SSE frame with the event"
            if time.monotonic() - posted_at > 1:
                event = {**EVENT, "command": command, "session_id": f"sse-{time.monotonic_ns()}"}
                assert httpx.post(f"{url}/api/open-wrapper", json=event).status_code == 200
                posted_at = time.monotonic()
            if line:
                name, _, value = line.partition(":")
                frame[name] = value.removeprefix(" ")
            elif frame.get("data") and orjson.loads(frame["data"]).get("command") == command:
                return frame
            else:
                frame = {}
    raise AssertionError("the SSE stream ended")


def test_up_cluster_serves_the_stack_on_three_masters(env: dict[str, str], tmp_path: Path) -> None:
    data_dir = Path(env["LLMWATCH_DATA_DIR"])
    with started(env, tmp_path / "up.log", "--cluster", "3") as (proc, url):
        assert (data_dir / "redis.url").read_text().startswith("redis+cluster://127.0.0.1:")
        assert (data_dir / "partitions").read_text().strip() == "6"  # 2 per master by default

        added = run(env, "apps", "add", "cluster-app")  # finds the cluster through redis.url
        assert added.returncode == 0, added.stderr
        assert added.stdout.strip() in run(env, "apps", "list").stdout

        # one event per session, so that they land on every partition (and every master)
        sessions = [f"cluster-{i}" for i in range(12)]
        for session in sessions:
            event = {**EVENT, "command": session, "session_id": session}
            assert httpx.post(f"{url}/api/open-wrapper", json=event).status_code == 200
        wait_for(lambda: set(sessions) <= set(history_commands(url)), "history")

        tailed = run(env, "tail", "-n", "50")  # reads all 6 partitions (count from the data dir)
        assert tailed.returncode == 0, tailed.stderr
        assert set(sessions) <= {
            orjson.loads(line)["command"] for line in tailed.stdout.splitlines()
        }

        frame = sse_frame_with(url, "live-on-cluster")
        assert frame.get("id")  # a resumable cursor, as on a single Redis

        stop_cluster(proc, signal.SIGTERM, data_dir)


def test_up_cluster_restarts_with_its_data(env: dict[str, str], tmp_path: Path) -> None:
    data_dir = Path(env["LLMWATCH_DATA_DIR"])
    env = {**env, "LLMWATCH_PARTITIONS": "4"}  # an explicit count wins over 2 per master
    with started(env, tmp_path / "up.log", "--cluster", "3") as (proc, url):
        assert (data_dir / "partitions").read_text().strip() == "4"
        event = {**EVENT, "command": "before-restart", "session_id": "kept"}
        assert httpx.post(f"{url}/api/open-wrapper", json=event).status_code == 200
        ports = cluster_ports(data_dir)
        stop_cluster(proc, signal.SIGINT, data_dir)
    with started(env, tmp_path / "up2.log", "--cluster", "3") as (proc, url):
        assert cluster_ports(data_dir) == ports  # the same nodes, rejoined
        wait_for(lambda: "before-restart" in history_commands(url), "history after restart")
        stop_cluster(proc, signal.SIGTERM, data_dir)


def test_up_cluster_refuses_what_it_cannot_start(env: dict[str, str]) -> None:
    data_dir = Path(env["LLMWATCH_DATA_DIR"])
    (data_dir / "cluster").mkdir(parents=True)
    layout = {"masters": 3, "replicas": 0, "ports": [free_port(), free_port(), free_port()]}
    (data_dir / "cluster" / "layout.json").write_bytes(orjson.dumps(layout))
    other_shape = run(env, "up", "--cluster", "2")
    assert other_shape.returncode == 1
    assert "3 masters with 0 replicas" in other_shape.stderr
    with_url = run(env, "up", "--cluster", "3", "--redis-url", "redis://127.0.0.1:1/0")
    assert with_url.returncode == 2 and "--cluster" in with_url.stderr
    replicas_alone = run(env, "up", "--replicas", "1")
    assert replicas_alone.returncode == 2 and "--cluster" in replicas_alone.stderr
    assert all(refuses(port) for port in layout["ports"])  # nothing was started
    assert not (data_dir / "cluster" / "node0").exists()
