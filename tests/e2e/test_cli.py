"""The console script as a user runs it: `llmwatch up` (embedded Redis) serves the write routes;
`apps add/list`, `send` and `tail` work against it; SIGTERM and Ctrl-C stop it and its Redis."""

from __future__ import annotations

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
    return subprocess.run([*llmwatch(), *args], env=env, capture_output=True, text=True, timeout=60)


def refuses(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return True
    return False


@pytest.fixture
def stack(env: dict[str, str], tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    port = free_port()
    log = open(tmp_path / "up.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [*llmwatch(), "up", "--port", str(port)], env=env, stdout=log, stderr=log
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    try:
        while True:  # up = the write route answers 200 (Redis started, services running)
            assert proc.poll() is None, (tmp_path / "up.log").read_text()
            try:
                if httpx.post(f"{url}/api/open-wrapper", json=EVENT, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "up.log").read_text()
            time.sleep(0.1)
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()


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
        preexec_fn=_default_sigint,
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
