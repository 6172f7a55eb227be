"""The dashboard's pure ES modules (formatting, filtering, backoff, throttling), run in chromium.

The static files are served by a plain file server: these functions need no llmwatch behind them.
"""

from __future__ import annotations

import functools
import http.server
import math
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Page

from services.stream.dashboard import STATIC_DIR
from tests.e2e.dashboard_support import launch_chromium

pytestmark = pytest.mark.e2e


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def page() -> Iterator[Page]:
    handler = functools.partial(_Quiet, directory=str(STATIC_DIR))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        for browser in launch_chromium():
            p = browser.new_page()
            p.goto(f"http://127.0.0.1:{server.server_address[1]}/js/")  # a listing: HTML, no app
            yield p
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def run(page: Page, module: str, body: str) -> Any:
    """Evaluate `body` (an expression over `m`, the imported module) in the page."""
    return page.evaluate(f"import('/js/{module}').then(m => ({body}))")


def test_backoff_grows_doubles_and_caps(page: Page) -> None:
    both_ends = "n => [0, 1].map(r => m.backoffDelay(n, () => r))"
    delays = run(page, "live.js", f"[0, 1, 2, 3, 5, 10, 50].map({both_ends})")
    lows, highs = zip(*delays, strict=True)
    assert lows[0] == 250 and highs[0] == 500  # half jitter: [ceiling/2, ceiling]
    assert highs[1] == 1000 and highs[2] == 2000 and highs[3] == 4000
    assert highs[-1] == highs[-2] == 15_000 and lows[-1] == 7_500


def test_filters_match_fields_and_free_text(page: Page) -> None:
    result = run(page, "events.js", """[
        m.matches({event_type: 'error', status: 'failed', model: 'x', source: 'webhook',
                   metadata: {}}, {status: 'failed'}),
        m.matches({event_type: 'error', status: 'failed', metadata: {}}, {status: 'completed'}),
        m.matches({command: 'ask', metadata: {error: 'Connection Refused'}}, {q: 'refused'}),
        m.matches({command: 'ask', metadata: {}}, {q: 'nope'}),
        m.matches({source: 'llmonitor', model: 'gpt-4o', metadata: {}},
                  {source: 'llmonitor', model: 'gpt-4o', q: ''}),
    ]""")  # fmt: skip
    assert result == [True, False, True, False, True]


def test_formatting(page: Page) -> None:
    result = run(page, "format.js", """({
        ms: [m.fmtMs(850), m.fmtMs(1500), m.fmtMs(61_000), m.fmtMs(null)],
        cost: [m.fmtCost(0), m.fmtCost(0.000123), m.fmtCost(1.5), m.fmtCost(null)],
        pct: [m.fmtPct(0.25), m.fmtPct(45.6, true), m.fmtPct(undefined)],
        toMs: [m.toMs(1700000000), m.toMs(1700000000000), m.toMs('1970-01-01T00:00:01Z'),
               m.toMs('x')],
        run: [m.runStatus({status: 'ended', end_reason: 'failed'}),
              m.runStatus({status: 'running'})],
        runId: [m.runIdOf({metadata: {runId: 'r'}}), m.runIdOf({metadata: {session_id: 's'}}),
                m.runIdOf({metadata: {}})],
        summary: m.summarize({a: 1, b: {c: 'd'}}),
        rate: m.tokensPerSecond({status: 'ended', duration_ms: 2000, tokens: {completion: 100}}),
    })""")  # fmt: skip
    assert result["ms"] == ["850 ms", "1.50 s", "1m 01s", "–"]
    assert result["cost"] == ["$0", "$0.000123", "$1.5", "–"]
    assert result["pct"] == ["25%", "45.6%", "–"]
    assert result["toMs"][:3] == [1_700_000_000_000, 1_700_000_000_000, 1000]
    assert math.isnan(result["toMs"][3])
    assert result["run"] == ["failed", "running"]
    assert result["runId"] == ["r", "s", None]
    assert result["summary"] == 'a=1 b={"c":"d"}'
    assert result["rate"] == 50


def test_throttle_runs_once_per_interval_and_keeps_the_last_call(page: Page) -> None:
    times = run(page, "stats.js", """new Promise(resolve => {
        const times = [];
        const t = m.throttle(async () => {
            times.push(performance.now());
            if (times.length === 2) setTimeout(() => resolve(times), 300);  // room for a 3rd
        }, 200);
        for (let i = 0; i < 50; i++) t();  // a burst: one call...
        setTimeout(() => t(), 50);         // ...and a later request, kept as the trailing call
    })""")  # fmt: skip
    assert len(times) == 2
    assert times[1] - times[0] >= 190  # never twice within the interval


def test_dom_helper_refuses_event_handler_attributes(page: Page) -> None:
    result = run(page, "dom.js", """(() => {
        const el = m.h('div', {title: '<b>x</b>'}, '<script>alert(1)</script>');
        let refused = false;
        try { m.h('img', {onerror: 'alert(1)'}); } catch { refused = true; }
        return [el.children.length, el.textContent, el.title, refused];
    })()""")  # fmt: skip
    assert result == [0, "<script>alert(1)</script>", "<b>x</b>", True]
