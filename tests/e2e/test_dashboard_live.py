"""The dashboard's live connection in chromium: one stream per browser shared by its tabs, hand-over
between tabs, resume after a gateway restart, and a `reset` when the server cannot resume."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from playwright.sync_api import Browser, BrowserContext, expect

from tests.e2e.dashboard_support import (
    Proc,
    browser_context,
    launch_chromium,
    open_live,
    post,
    rows_match_history,
    stack_env,
    wait_until,
)
from tests.helpers import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    yield from launch_chromium()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    with browser_context(browser) as ctx:
        yield ctx


def send(base: str, tag: str, n: int) -> None:
    for i in range(n):
        post(base, "/api/open-wrapper", {"event_type": "request", "command": f"{tag}-{i}",
                                         "status": "start", "metadata": {}})  # fmt: skip


@pytest.mark.parametrize("election", ["locks", "heartbeat"])
def test_tabs_share_one_connection_and_hand_it_over(
    context: BrowserContext, tmp_path: Path, election: str
) -> None:
    # No sampler ticks during the test, so the last event id only moves with the posted events.
    env = stack_env(tmp_path / "data", LLMWATCH_SAMPLE_INTERVAL_S="3600")
    proc = Proc.up(tmp_path / "data", free_port(), env)
    proc.start()
    try:
        if election == "heartbeat":  # pages on plain http://host are not secure contexts
            context.add_init_script(
                "Object.defineProperty(Navigator.prototype, 'locks', {get: () => undefined})"
            )
        tabs = [context.new_page() for _ in range(3)]
        for tab in tabs:
            open_live(tab, proc.url + "/")
        roles = [tab.locator("html").get_attribute("data-live-role") for tab in tabs]
        assert sorted(roles) == ["follower", "follower", "leader"]
        wait_until(lambda: proc.gauge("llmwatch_sse_streams_open") == 1, "one SSE stream open")

        send(proc.url, "tab", 3)
        for tab in tabs:
            wait_until(lambda t=tab: rows_match_history(t, proc.url, 3), "every tab shows all")

        # The leader goes; events posted meanwhile still reach a follower, exactly once: the new
        # leader resumes from the last event id the tabs saw.
        leader = tabs[roles.index("leader")]
        rest = [t for t in tabs if t is not leader]
        seen = {t.locator("html").get_attribute("data-last-event-id") for t in rest}
        assert len(seen) == 1 and "" not in seen, seen
        last_id = seen.pop()
        streams: list[str] = []
        for tab in rest:
            tab.on("request", lambda r: streams.append(r.url) if "/api/stream" in r.url else None)
        leader.close()
        send(proc.url, "after-leader", 3)
        wait_until(
            lambda: (
                sorted(t.locator("html").get_attribute("data-live-role") for t in rest)
                == ["follower", "leader"]
            ),
            "a follower took over",
        )
        for tab in rest:
            wait_until(lambda t=tab: rows_match_history(t, proc.url, 6), "no gap at hand-over")
            if election == "locks":
                # A heartbeat election may briefly have two leaders on a slow machine; their
                # frames overlap and the page drops the repeats (the rows above prove it). With
                # locks there is never more than one stream, so no repeat may even arrive.
                assert tab.locator("#events-table").get_attribute("data-duplicates") is None
        assert streams, "the new leader opened no stream"
        assert parse_qs(urlparse(streams[0]).query)["lastEventId"] == [last_id]
        wait_until(lambda: proc.gauge("llmwatch_sse_streams_open") == 1, "still one stream")
    finally:
        proc.stop()


def test_page_resumes_after_the_gateway_restarts_without_gaps_or_repeats(
    context: BrowserContext, tmp_path: Path
) -> None:
    """The page talks to a separate `serve stream`; it is killed while events keep arriving at
    `llmwatch up`, then restarted: the page resumes from its last event id."""
    data = tmp_path / "data"
    up = Proc.up(data, free_port(), stack_env(data))
    up.start()
    redis_url = (data / "redis.url").read_text().strip()
    gateway = Proc.serve("stream", data, free_port(), stack_env(data, REDIS_URL=redis_url))
    gateway.start()
    page = context.new_page()
    try:
        open_live(page, gateway.url + "/")

        send(up.url, "before", 5)
        wait_until(lambda: rows_match_history(page, gateway.url, 5), "first batch shown")

        gateway.kill()  # SIGKILL: no goodbye to the browser
        expect(page.locator("html")).not_to_have_attribute("data-live-state", "live")
        send(up.url, "during", 5)  # published while no gateway runs
        gateway.start()
        expect(page.locator("html")).to_have_attribute("data-live-state", "live")
        send(up.url, "after", 5)

        wait_until(lambda: rows_match_history(page, gateway.url, 15), "no gap after restart")
        assert page.locator("#events-table").get_attribute("data-duplicates") is None
        # Resumed from the cursor, not rebuilt from a fresh snapshot.
        assert page.locator("html").get_attribute("data-snapshots") == "1"
        page.screenshot(path=str(tmp_path / "dashboard-resumed.png"), full_page=True)
    finally:
        gateway.stop()
        up.stop()


def test_a_reset_from_a_new_redis_makes_the_page_reread_its_snapshots(
    context: BrowserContext, tmp_path: Path
) -> None:
    """`llmwatch up` comes back on the same port with a fresh data dir (a new Redis, a new epoch):
    the page's cursor cannot be resumed, the gateway answers `reset`, the page re-reads."""
    port = free_port()
    first = Proc.up(tmp_path / "one", port, stack_env(tmp_path / "one"))
    first.start()
    page = context.new_page()
    second: Proc | None = None
    try:
        open_live(page, first.url + "/")
        send(first.url, "old", 3)
        wait_until(lambda: rows_match_history(page, first.url, 3), "first stack's events shown")
        first.stop()
        second = Proc.up(tmp_path / "two", port, stack_env(tmp_path / "two"))
        second.start()
        expect(page.locator("html")).to_have_attribute("data-snapshots", "2")
        expect(page.locator("#events-body tr")).to_have_count(0)  # the new, empty history
        send(second.url, "new", 2)
        wait_until(lambda: rows_match_history(page, second.url, 2), "new stack's events shown")
    finally:
        if second is not None:
            second.stop()
        first.stop()
