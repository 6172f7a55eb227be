"""`llmwatch send`: post the seed events (both formats) to a running stack, for a first look.

Registers (or finds) the app `llmwatch-demo` through /api/apps, then posts every sample of
`shared.samples` and prints one line per request. Exit code 0 when every request got a 2xx.
"""

from __future__ import annotations

import sys
from typing import Any

import httpx
import orjson

from services.ingest.auth import SIGNATURE_HEADER, sign
from shared.samples import DEMO_APP, all_samples, watcher_samples


def send_samples(
    url: str,
    token: str | None = None,
    admin_token: str | None = None,
    hmac_secret: str | None = None,
) -> int:
    base = url.rstrip("/")
    try:
        with httpx.Client(base_url=base, timeout=15.0) as client:
            app_id = _demo_app(client, admin_token)
            samples = all_samples(app_id) if app_id else watcher_samples()
            failures = 0 if app_id else 1
            for path, body in samples:
                payload = orjson.dumps(body)
                headers = {"Content-Type": "application/json"}
                if token:
                    headers["Authorization"] = f"Bearer {token}"
                if hmac_secret:
                    headers[SIGNATURE_HEADER] = sign(payload, hmac_secret)
                response = client.post(path, content=payload, headers=headers)
                print(f"{response.status_code} POST {path:<18} {summary(body, response)}")
                failures += not response.is_success
    except httpx.HTTPError as exc:
        print(
            f"llmwatch send: cannot reach {base}: {exc} (is `llmwatch up` running?)",
            file=sys.stderr,
        )
        return 1
    print(f"sent {len(samples)} requests to {base}, {failures} failed")
    return 1 if failures else 0


def _demo_app(client: httpx.Client, admin_token: str | None) -> str | None:
    """The id of the app `llmwatch-demo`, registering it on first use."""
    headers = {"Authorization": f"Bearer {admin_token}"} if admin_token else {}
    listing = client.get("/api/apps", headers=headers)
    if listing.status_code == 401:
        print(
            "llmwatch send: /api/apps needs the admin token (--admin-token); "
            "skipping the LLMonitor samples",
            file=sys.stderr,
        )
        return None
    listing.raise_for_status()
    for app in listing.json().get("items", []):
        if app.get("name") == DEMO_APP:
            return str(app["id"])
    created = client.post("/api/apps", json={"name": DEMO_APP}, headers=headers)
    created.raise_for_status()
    app_id = str(created.json()["id"])
    print(f"{created.status_code} POST {'/api/apps':<18} registered app {DEMO_APP} = {app_id}")
    return app_id


def summary(body: Any, response: httpx.Response) -> str:
    """One line: how many events were sent and what the server said about them."""
    if isinstance(body, list):
        sent = len(body)
    elif isinstance(body, dict) and isinstance(body.get("events"), list):
        sent = len(body["events"])
    else:
        sent = 1
    events = f"{sent} event{'s' if sent != 1 else ''}"
    try:
        answer = response.json()
    except ValueError:
        return f"{events}: {response.text[:120]}"
    if isinstance(answer, dict) and "results" in answer:
        ok = sum(1 for r in answer["results"] if r.get("success"))
        return f"{events}: {ok} accepted, {len(answer['results']) - ok} refused"
    if response.is_success:
        return f"{events}: accepted"
    detail = answer.get("detail", response.reason_phrase) if isinstance(answer, dict) else answer
    return f"{events}: {detail}"
