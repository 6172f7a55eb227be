from __future__ import annotations

from pathlib import Path

import pytest

from services.metrics.config_watch import LIVE, ConfigWatch, apply_live
from shared.settings import Settings

pytestmark = pytest.mark.unit


def test_stale_when_content_changes_not_when_touched(tmp_path: Path) -> None:
    path = tmp_path / "llmwatch.toml"
    path.write_text("sse_ping_s = 5\n")
    watch = ConfigWatch(path)
    assert not watch.stale()
    path.write_text("sse_ping_s = 5\n")  # same bytes, new mtime
    assert not watch.stale()
    path.write_text("sse_ping_s = 6\n")
    assert watch.stale()
    path.write_text("sse_ping_s = 5\n")
    assert not watch.stale()


def test_creating_or_deleting_the_file_is_a_change(tmp_path: Path) -> None:
    path = tmp_path / "llmwatch.toml"
    watch = ConfigWatch(path)
    assert not watch.stale()
    path.write_text("")
    assert watch.stale()
    watch.mark_loaded(None)
    path.unlink()
    assert not watch.stale()


def test_apply_live_copies_only_live_settings() -> None:
    current = Settings(sse_ping_s=30, partitions=1, port=3000)
    fresh = Settings(sse_ping_s=2, partitions=4, port=9999, pressure_mem_pct=50)
    applied, restart = apply_live(current, fresh)
    assert applied == {"sse_ping_s": 2, "pressure_mem_pct": 50}
    assert current.sse_ping_s == 2 and current.pressure_mem_pct == 50
    assert current.partitions == 1
    assert restart == ["partitions"]  # port comes from the command line: not reported
    assert set(applied) <= set(LIVE)
