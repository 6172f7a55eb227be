"""The dashboard in a real browser (Debian's chromium, headless) against real `llmwatch` processes.

Each check waits on the page itself (Playwright's auto-retrying `expect`) or polls the API: no
sleeps. Screenshots land in the test's tmp dir; set DASHBOARD_SCREENSHOT=docs/dashboard.png
to refresh the README's picture.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from shared.samples import all_samples
from tests.e2e.dashboard_support import (
    Proc,
    browser_context,
    count_events,
    history,
    history_ids,
    launch_chromium,
    open_live,
    post,
    post_samples,
    register_app,
    rows_match_history,
    stack_env,
    wait_until,
)
from tests.helpers import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    yield from launch_chromium()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    """One `llmwatch up` (embedded Redis, sampler every 0.5 s) shared by the read-only checks."""
    data = tmp_path_factory.mktemp("stack")
    proc = Proc.up(data, free_port(), stack_env(data))
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    with browser_context(browser, viewport={"width": 1400, "height": 900}) as ctx:
        yield ctx


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


def unread(page: Page) -> int:
    return int(page.locator("#bell").get_attribute("data-unread") or 0)


def unread_on_server(base: str) -> int:
    return int(httpx.get(f"{base}/api/notifications/unread-count", timeout=10).json()["count"])


def test_seed_events_stats_runs_notifications_and_system_arrive_live(
    stack: Proc, page: Page, tmp_path: Path
) -> None:
    open_live(page, stack.url + "/")
    chart = page.locator("#sys-chart")
    before = int(chart.get_attribute("data-samples") or 0)
    page.wait_for_function(
        "n => Number(document.getElementById('sys-chart').dataset.samples) > n", arg=before
    )  # a `system` frame, not the backfill (that was read before `before`)
    unread_before = unread(page)
    total_before = len(history_ids(stack.url))

    samples = all_samples(register_app(stack.url, "dashboard-e2e"))
    post_samples(stack.url, samples)
    expected = total_before + sum(count_events(path, body) for path, body in samples)
    wait_until(lambda: len(history_ids(stack.url)) == expected, "history holds every seed event")

    # Rows: exactly history, same order (newest first), no duplicates; then the stats.
    wait_until(lambda: rows_match_history(page, stack.url), "the table equals /api/history")
    expect(page.locator("#stat-total")).to_have_text(f"{expected:,}")
    expect(page.locator('#models-body tr[data-model="gpt-4o"]')).to_be_visible()
    expect(page.locator('#models-body tr[data-model="qwen2.5-coder:latest"]')).to_be_visible()
    expect(page.locator("#stat-error-rate")).not_to_have_text("–")

    # The failed events raised run.failed notifications, live.
    page.wait_for_function(
        "n => Number(document.getElementById('bell').dataset.unread) > n", arg=unread_before
    )
    page.locator("#bell").click()
    expect(page.locator('#notif-list li[data-kind="run.failed"]').first).to_be_visible()

    # Mark one read: the count falls, on the page and on the server; then unread, then all.
    count = unread(page)
    page.locator("#notif-list li.unread button.mark").first.click()
    expect(page.locator("#bell")).to_have_attribute("data-unread", str(count - 1))
    assert unread_on_server(stack.url) == count - 1
    page.locator("#notif-list li.read button.mark").first.click()
    expect(page.locator("#bell")).to_have_attribute("data-unread", str(count))
    page.locator("#notif-all-read").click()
    expect(page.locator("#bell")).to_have_attribute("data-unread", "0")
    expect(page.locator("#bell-count")).to_be_hidden()
    assert unread_on_server(stack.url) == 0
    page.keyboard.press("Escape")

    # Filters: only failed events, then everything again.
    failed = [e["id"] for e in history(stack.url) if e["status"] == "failed"]
    page.select_option("#filters select[name=status]", "failed")
    expect(page.locator("#events-body tr")).to_have_count(len(failed))
    assert page.eval_on_selector_all("#events-body tr", "rs => rs.map(r => r.dataset.id)") == failed
    page.select_option("#filters select[name=status]", "")
    expect(page.locator("#events-body tr")).to_have_count(expected)

    # A row opens the full event with its metadata.
    page.locator("#events-body tr", has_text="connection refused").first.click()
    expect(page.locator("#detail-body")).to_contain_text("connection refused")
    expect(page.locator("#detail-body")).to_contain_text("502")
    page.locator("#detail-close").click()

    # The agent run's tree: its children with their output and error.
    page.locator("#runs-recent li", has_text="weather-agent").first.click()
    tree = page.locator("#detail-body")
    expect(tree).to_contain_text("weather API timed out")
    expect(tree).to_contain_text("Let me check.")
    expect(tree.locator(".run-node")).to_have_count(3)
    page.locator("#detail-close").click()

    # An in-flight run: elapsed time and live tokens/s, then it ends.
    session = str(uuid.uuid4())
    base = {"command": "long-job", "model": "gpt-4o", "session_id": session, "metadata": {}}
    post(stack.url, "/api/open-wrapper", {**base, "event_type": "request", "status": "start"})
    post(stack.url, "/api/open-wrapper", {**base, "event_type": "streaming", "status": "running",
                                          "tokens_so_far": 48})  # fmt: skip
    running = page.locator(f'#runs-inflight li[data-run-id="{session}"]')
    expect(running.locator(".run-rate")).to_contain_text("tok/s")
    post(stack.url, "/api/open-wrapper", {**base, "event_type": "completion", "status": "completed",
                                          "duration_ms": 1500})  # fmt: skip
    expect(running).to_have_count(0)
    expect(page.locator(f'#runs-recent li[data-run-id="{session}"]')).to_be_visible()

    # The stats follow (throttled, not polled): three more events, nothing in flight.
    expect(page.locator("#stat-total")).to_have_text(f"{expected + 3:,}")
    expect(page.locator("#stat-runs")).to_have_text("0")

    shot = tmp_path / "dashboard.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"dashboard screenshot: {shot}")
    if target := os.environ.get("DASHBOARD_SCREENSHOT"):
        page.screenshot(path=target)

    # Editing llmwatch.toml flips `config.stale` (badge on, live); a reload flips it back.
    config = Path(stack.env["LLMWATCH_CONFIG"])
    config.write_text('log_level = "warning"\n')
    expect(page.locator("#config-stale")).to_be_visible()
    assert httpx.post(f"{stack.url}/api/reload", timeout=10).status_code == 200
    expect(page.locator("#config-stale")).to_be_hidden()

    # Phone width: one column, nothing wider than the screen.
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    expect(page.locator("#events-body tr").first).to_be_visible()
    page.screenshot(path=str(tmp_path / "dashboard-phone.png"), full_page=True)


def test_markup_in_event_fields_renders_as_text(stack: Proc, page: Page) -> None:
    open_live(page, stack.url + "/")
    marker = uuid.uuid4().hex[:8]
    script = f"<script>window.__pwned='{marker}'</script>"
    img = "<img src=x onerror=\"window.__pwned='img'\">"
    long_text = "word " * 400
    post(stack.url, "/api/open-wrapper", {
        "event_type": "error", "command": script, "status": "failed", "model": img,
        "metadata": {"error": f"<b>bold</b>{script}", img: img, "prompt": long_text},
    })  # fmt: skip

    row = page.locator("#events-body tr", has_text=marker)
    expect(row).to_have_count(1)
    expect(row.locator(".col-command")).to_have_text(script)
    expect(row.locator(".col-model")).to_have_text(img)
    row.click()
    expect(page.locator("#detail-body")).to_contain_text(f"<b>bold</b>{script}")
    expect(page.locator("#detail-title")).to_contain_text(script)
    # Long text is collapsed until asked for.
    prompt = page.locator("#detail-body .json .long")
    expect(prompt.locator("button.more")).to_have_text(f"show all ({len(long_text)} chars)")
    assert len(prompt.locator(".text").inner_text()) < 300
    prompt.locator("button.more").click()
    expect(prompt.locator(".text")).to_have_text(long_text.strip())
    page.locator("#detail-close").click()
    page.locator("#bell").click()
    expect(page.locator("#notif-list li", has_text=marker).first).to_be_visible()

    assert page.evaluate("window.__pwned") is None
    injected = "script, img, b"
    for area in ("#events-body", "#detail-body", "#notif-list"):
        assert page.locator(area).locator(injected).count() == 0, area


def test_read_token_from_the_page_url_reaches_every_call(
    context: BrowserContext, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    proc = Proc.up(data, free_port(), stack_env(data, LLMWATCH_READ_TOKEN="s3cret-read"))
    proc.start()
    try:
        refused = context.new_page()
        refused.goto(proc.url + "/")
        expect(refused.locator("#banner")).to_contain_text("read token")
        expect(refused.locator("html")).not_to_have_attribute("data-live-state", "live")
        refused.close()

        page = context.new_page()
        statuses: list[int] = []
        page.on("response", lambda r: statuses.append(r.status) if "/api/" in r.url else None)
        open_live(page, proc.url + "/?token=s3cret-read")
        post(proc.url, "/api/open-wrapper", {"event_type": "request", "command": "guarded",
                                             "status": "start", "metadata": {}})  # fmt: skip
        expect(page.locator("#events-body tr", has_text="guarded")).to_have_count(1)
        expect(page.locator("#stat-total")).to_have_text("1")
        assert 401 not in statuses and statuses, statuses
        expect(page.locator("#banner")).to_be_hidden()
    finally:
        proc.stop()


def test_load_older_pages_back_through_history(context: BrowserContext, tmp_path: Path) -> None:
    data = tmp_path / "data"
    proc = Proc.up(data, free_port(), stack_env(data))
    proc.start()
    try:
        events = [{"event_type": "request", "command": f"bulk-{i}", "status": "start",
                   "metadata": {}} for i in range(520)]  # fmt: skip
        post(proc.url, "/api/open-wrapper", {"batch": True, "events": events})
        wait_until(lambda: len(history_ids(proc.url)) == 520, "history holds the batch")
        page = context.new_page()
        open_live(page, proc.url + "/")
        expect(page.locator("#events-body tr")).to_have_count(500)  # the first page
        page.locator("#events-older").click()
        expect(page.locator("#events-body tr")).to_have_count(520)
        expect(page.locator("#events-older")).to_be_hidden()
        assert rows_match_history(page, proc.url, 520)
    finally:
        proc.stop()
