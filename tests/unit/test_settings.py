import pytest

from shared.settings import Settings

pytestmark = pytest.mark.unit


def test_defaults_work_on_a_laptop() -> None:
    s = Settings()
    assert s.port == 3000 and s.host == "127.0.0.1"
    assert s.redis_url is None
    assert s.max_body_bytes == 5 * 1024 * 1024 and s.max_batch == 1000


def test_env_and_csv(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMWATCH_APPS", "a1, b2,,c3")
    monkeypatch.setenv("LLMWATCH_PORT", "4000")
    monkeypatch.setenv("REDIS_URL", "redis://example:6379/0")
    s = Settings()
    assert s.apps == ["a1", "b2", "c3"]
    assert s.port == 4000
    assert s.redis_url == "redis://example:6379/0"


def test_toml_file_below_env(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    cfg = tmp_path / "llmwatch.toml"
    cfg.write_text('port = 5000\nmax_batch = 7\napps = ["x"]\n')
    monkeypatch.setenv("LLMWATCH_CONFIG", str(cfg))
    monkeypatch.setenv("LLMWATCH_MAX_BATCH", "9")
    s = Settings()
    assert s.port == 5000 and s.max_batch == 9 and s.apps == ["x"]


def test_bad_value_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMWATCH_PARTITIONS", "0")
    with pytest.raises(ValueError):
        Settings()
