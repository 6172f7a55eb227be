"""What the dashboard's browser tests drive: `llmwatch` subprocesses and a headless chromium."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import httpx
from playwright.sync_api import Browser, BrowserContext, Page, expect

from shared.samples import WATCHER_PATH
from tests.conftest import require_binary

REPO = Path(__file__).resolve().parents[2]
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
START_TIMEOUT_S = 60
WAIT_TIMEOUT_S = 30
expect.set_options(timeout=20_000)  # Playwright's auto-retrying assertions; a loaded CI is slow


def stack_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of a stack under test: nothing of the developer's, its own data dir (so
    `up` starts its own embedded Redis there), a fast sampler."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLMWATCH_", "REDIS_URL"))}
    env.update(
        LLMWATCH_DATA_DIR=str(data_dir),
        LLMWATCH_CONFIG=str(data_dir / "absent.toml"),
        LLMWATCH_SAMPLE_INTERVAL_S="0.5",
        LLMWATCH_LOG_LEVEL="warning",
    )
    env.update(extra)
    return env


class Proc:
    """One `llmwatch` process on 127.0.0.1:<port>; its output goes to a log file beside its data."""

    def __init__(self, args: list[str], port: int, env: dict[str, str], log: Path) -> None:
        self.args = [sys.executable, "-m", "services.cli", *args, "--port", str(port)]
        self.port = port
        self.env = env
        self.log = log
        self.url = f"http://127.0.0.1:{port}"
        self.popen: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

    @classmethod
    def up(cls, data_dir: Path, port: int, env: dict[str, str]) -> Proc:
        data_dir.mkdir(parents=True, exist_ok=True)
        return cls(["up"], port, env, data_dir / "up.log")

    @classmethod
    def serve(cls, target: str, data_dir: Path, port: int, env: dict[str, str]) -> Proc:
        data_dir.mkdir(parents=True, exist_ok=True)
        return cls(["serve", target], port, env, data_dir / f"serve-{target}.log")

    def start(self) -> None:
        self._log_file = self.log.open("ab")
        self.popen = subprocess.Popen(
            self.args, cwd=REPO, env=self.env, stdout=self._log_file, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                self._reap()
                raise RuntimeError(f"{self.args} exited early:\n{self.log.read_text()[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            time.sleep(0.1)
        self.stop()
        tail = self.log.read_text()[-3000:]
        raise RuntimeError(f"{self.args} not ready in {START_TIMEOUT_S}s:\n{tail}")

    def kill(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGKILL)
        self._reap()

    def stop(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(20)
            except subprocess.TimeoutExpired:
                self.popen.kill()
        self._reap()

    def _reap(self) -> None:
        if self.popen is not None:
            self.popen.wait(20)
            self.popen = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def gauge(self, name: str) -> float:
        """Sum of a metric's samples on this process's /metrics."""
        total = 0.0
        for line in httpx.get(f"{self.url}/metrics", timeout=5).text.splitlines():
            if line.startswith(name) and line[len(name)] in " {":
                total += float(line.rsplit(" ", 1)[1])
        return total


def launch_chromium() -> Iterator[Browser]:
    """Debian's chromium, headless, through Playwright (skip locally, fail in CI if missing)."""
    executable = require_binary("chromium", "/usr/bin/chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@contextlib.contextmanager
def browser_context(browser: Browser, **options: Any) -> Iterator[BrowserContext]:
    """A fresh browser context; an uncaught JavaScript error in any of its pages fails the test."""
    context = browser.new_context(**options)
    errors: list[str] = []
    context.on("weberror", lambda e: errors.append(str(e.error)))
    try:
        yield context
    finally:
        context.close()
    assert errors == [], f"JavaScript errors in the page: {errors}"


def open_live(page: Page, url: str, snapshots: int = 1) -> None:
    """Open the dashboard and wait until it is live and has read its snapshots."""
    page.goto(url)
    expect(page.locator("html")).to_have_attribute("data-live-state", "live")
    expect(page.locator("html")).to_have_attribute("data-snapshots", str(snapshots))


def wait_until(check: Callable[[], bool], what: str, timeout: float = WAIT_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.1)


# --- the API side ---------------------------------------------------------------------------
def post(base: str, path: str, body: Any) -> httpx.Response:
    res = httpx.post(base + path, json=body, timeout=10)
    assert res.status_code == 200, (path, res.status_code, res.text)
    return res


def register_app(base: str, name: str) -> str:
    res = httpx.post(f"{base}/api/apps", json={"name": name}, timeout=10)
    assert res.status_code == 201, res.text
    return str(res.json()["id"])


def post_samples(base: str, samples: list[tuple[str, Any]]) -> None:
    for path, body in samples:
        post(base, path, body)


def count_events(path: str, body: Any) -> int:
    """How many events one sample request carries (batch, bare array, `events`, single)."""
    if isinstance(body, list):
        return len(body)
    if path == WATCHER_PATH:
        return len(body["events"]) if body.get("batch") else 1
    return len(body["events"]) if "events" in body else 1


def history(base: str) -> list[dict[str, Any]]:
    res = httpx.get(f"{base}/api/history", params={"limit": 5000}, timeout=10)
    res.raise_for_status()
    return list(res.json()["items"])


def history_ids(base: str) -> list[str]:
    return [item["id"] for item in history(base)]


def rows_match_history(page: Page, base: str, at_least: int = 0) -> bool:
    """The page's rows are exactly /api/history: same events, same order, none twice."""
    rows = page.eval_on_selector_all("#events-body tr", "rows => rows.map(r => r.dataset.id)")
    history = history_ids(base)
    return len(history) >= at_least and rows == history
