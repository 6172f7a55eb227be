"""The dashboard's files as the stream gateway serves them: page, assets, headers, no escapes."""

from __future__ import annotations

import re

import pytest

from services.stream.dashboard import ASSETS_PREFIX, STATIC_DIR
from services.targets import create_app
from shared.settings import Settings
from tests.helpers import app_client

pytestmark = pytest.mark.integration


async def test_page_and_every_asset_it_references_are_served(settings: Settings) -> None:
    async with app_client(create_app(settings, "stream")) as client:
        page = await client.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert page.headers["x-content-type-options"] == "nosniff"

        # Follow the page's references and every module import: nothing may 404.
        pending = re.findall(r'(?:src|href)="(assets/[^"]+)"', page.text)
        assert any(p.endswith("main.js") for p in pending)
        seen: set[str] = set()
        while pending:
            ref = pending.pop()
            if ref in seen:
                continue
            seen.add(ref)
            res = await client.get("/" + ref)
            assert res.status_code == 200, ref
            if ref.endswith(".js"):
                assert res.headers["content-type"].startswith("text/javascript"), ref
                folder = ref.rsplit("/", 1)[0]
                imports = re.findall(r"from '\./([\w.-]+\.js)'", res.text)
                pending += [f"{folder}/{name}" for name in imports]
        assert {"assets/js/live.js", "assets/js/events.js", "assets/css/dashboard.css"} <= seen


async def test_assets_revalidate_with_etag(settings: Settings) -> None:
    async with app_client(create_app(settings, "stream")) as client:
        first = await client.get(f"{ASSETS_PREFIX}/js/main.js")
        assert first.headers["cache-control"] == "no-cache"
        again = await client.get(
            f"{ASSETS_PREFIX}/js/main.js", headers={"If-None-Match": first.headers["etag"]}
        )
        assert again.status_code == 304


@pytest.mark.parametrize(
    "path",
    [
        f"{ASSETS_PREFIX}/nope.js",
        f"{ASSETS_PREFIX}/../__init__.py",
        f"{ASSETS_PREFIX}/%2e%2e/__init__.py",
        f"{ASSETS_PREFIX}/..%2f__init__.py",
    ],
)
async def test_unknown_or_escaping_paths_are_404(settings: Settings, path: str) -> None:
    async with app_client(create_app(settings, "stream")) as client:
        res = await client.get(path)
        assert res.status_code == 404
        assert "create_router" not in res.text


def test_no_inline_script_or_style_in_the_page() -> None:
    """The CSP forbids inline code; the page must not need any."""
    html = (STATIC_DIR / "index.html").read_text()
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html)
    assert " style=" not in html and "<style" not in html
    assert not re.search(r"\son[a-z]+=", html)


def test_scripts_never_write_markup() -> None:
    """Everything is rendered with textContent / createElement: no HTML sinks in the code."""
    sinks = re.compile(
        r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(|new Function"
    )
    for path in (STATIC_DIR / "js").glob("*.js"):
        assert not sinks.search(path.read_text()), path.name
