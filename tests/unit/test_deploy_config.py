"""The renderer that lets the local topology run the shipped deploy/ files unchanged elsewhere."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from services import deploy_config
from services.deploy_config import RenderError

pytestmark = pytest.mark.unit

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
NGINX = (DEPLOY / "nginx.conf").read_text()
PROMETHEUS = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
LOCAL = {"ingest": ["127.0.0.1:1001", "127.0.0.1:1002"], "stream": ["127.0.0.1:2001"],
         "metrics": ["127.0.0.1:3001"]}  # fmt: skip


def test_shipped_nginx_upstreams_are_the_docker_service_names() -> None:
    assert deploy_config.nginx_upstreams(NGINX) == {
        "ingest": ["ingest:8000"], "stream": ["stream:8000"], "metrics": ["metrics:8000"],
    }  # fmt: skip


def test_render_nginx_changes_only_listen_servers_and_temp_paths() -> None:
    out = deploy_config.render_nginx(NGINX, listen="127.0.0.1:4321", upstreams=LOCAL)
    assert deploy_config.nginx_upstreams(out) == LOCAL
    assert "listen 127.0.0.1:4321;" in out and "listen 3000;" not in out
    assert "resolve;" not in out  # Debian's nginx predates `resolve`; only Docker needs it
    added = [line for line in out.splitlines() if line not in NGINX.splitlines()]
    removed = [line for line in NGINX.splitlines() if line not in out.splitlines()]
    local_line = r"\s*(server 127\.0\.0\.1:\d+|listen 127\.0\.0\.1:\d+|\w+_temp_path temp/\w+);"
    assert all(re.fullmatch(local_line, a)
               for a in added), added  # fmt: skip
    assert all(re.fullmatch(r"\s*(server \w+:8000 resolve|listen 3000);", r) for r in removed), (
        removed
    )


def test_render_nginx_refuses_a_file_it_cannot_mirror() -> None:
    with pytest.raises(RenderError, match="upstreams"):
        deploy_config.render_nginx(NGINX, listen="127.0.0.1:1", upstreams={"ingest": ["a:1"]})
    with pytest.raises(RenderError, match="listen"):
        deploy_config.render_nginx(NGINX.replace("listen 3000;", "listen 8080;"),
                                   listen="127.0.0.1:1", upstreams=LOCAL)  # fmt: skip
    with pytest.raises(RenderError, match="no `server ingest:8000"):
        deploy_config.render_nginx(NGINX.replace("server ingest:8000", "server ingest:9000"),
                                   listen="127.0.0.1:1", upstreams=LOCAL)  # fmt: skip
    with pytest.raises(RenderError, match="at least one"):
        deploy_config.render_nginx(NGINX, listen="127.0.0.1:1", upstreams={**LOCAL, "stream": []})


@given(st.lists(st.integers(min_value=1, max_value=65535), min_size=1, max_size=8, unique=True))
def test_render_nginx_lists_every_replica(ports: list[int]) -> None:
    addresses = [f"127.0.0.1:{p}" for p in ports]
    out = deploy_config.render_nginx(
        NGINX, listen="127.0.0.1:1", upstreams={**LOCAL, "ingest": addresses}
    )
    assert deploy_config.nginx_upstreams(out)["ingest"] == addresses


def test_nginx_globals() -> None:
    assert (
        deploy_config.nginx_globals(Path("/r/nginx.pid"), as_root=False)
        == "daemon off; pid /r/nginx.pid;"
    )
    assert deploy_config.nginx_globals(Path("/r/p"), as_root=True).endswith("user root;")


def test_render_prometheus_swaps_dns_for_files(tmp_path: Path) -> None:
    out = deploy_config.render_prometheus(PROMETHEUS, targets_dir=tmp_path, rules_dir=DEPLOY)
    assert out["global"] == PROMETHEUS["global"]
    assert out["rule_files"] == [str(DEPLOY / "alerts.yml")]
    for shipped, job in zip(PROMETHEUS["scrape_configs"], out["scrape_configs"], strict=True):
        assert "dns_sd_configs" not in job
        assert job["file_sd_configs"] == [{"files": [str(tmp_path / f"{job['job_name']}.json")]}]
        rest = {k: v for k, v in job.items() if k != "file_sd_configs"}
        assert rest == {k: v for k, v in shipped.items() if k != "dns_sd_configs"}
    assert "dns_sd_configs" in PROMETHEUS["scrape_configs"][0]  # the input is not mutated


def test_render_prometheus_interval_override(tmp_path: Path) -> None:
    out = deploy_config.render_prometheus(PROMETHEUS, targets_dir=tmp_path, rules_dir=DEPLOY,
                                          scrape_interval="1s")  # fmt: skip
    assert out["global"]["scrape_interval"] == out["global"]["evaluation_interval"] == "1s"
    assert "scrape_timeout" not in out["global"]  # must not exceed the interval


def test_render_prometheus_refuses_other_discovery(tmp_path: Path) -> None:
    static = {"scrape_configs": [{"job_name": "x", "static_configs": [{"targets": ["a:1"]}]}]}
    with pytest.raises(RenderError, match="not DNS-discovered"):
        deploy_config.render_prometheus(static, targets_dir=tmp_path, rules_dir=tmp_path)
    srv = {
        "scrape_configs": [{"job_name": "x", "dns_sd_configs": [{"names": ["x"], "type": "SRV"}]}]
    }
    with pytest.raises(RenderError, match="type A"):
        deploy_config.render_prometheus(srv, targets_dir=tmp_path, rules_dir=tmp_path)


def test_prometheus_jobs_and_targets() -> None:
    assert deploy_config.prometheus_jobs(PROMETHEUS) == {
        name: [name] for name in ("ingest", "aggregator", "stream", "metrics")
    }
    assert deploy_config.file_sd_targets(["127.0.0.1:1"]) == [
        {"targets": ["127.0.0.1:1"], "labels": {}}
    ]


def test_redis_args_skip_what_the_launcher_owns() -> None:
    conf = "# c\nport 6379\nbind 0.0.0.0\ndir /data\nappendonly yes\n"
    conf += 'save ""\nmaxmemory-policy noeviction\n'
    assert deploy_config.redis_args(conf) == [
        "--appendonly", "yes", "--save", "", "--maxmemory-policy", "noeviction",
    ]  # fmt: skip
    shipped = deploy_config.redis_args((DEPLOY / "redis.conf").read_text())
    assert shipped[shipped.index("--appendonly") + 1] == "yes"
    assert "--port" not in shipped and "--dir" not in shipped and "--bind" not in shipped
