"""docker-compose.yml, Dockerfile and deploy/ checked against the code (Docker is not needed).

Compose cannot drift from the CLI, the settings or the ops files: every service it runs is a
CLI target, every variable it sets is a setting, every image is pinned, and nginx, prometheus and
compose agree on names and ports.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from services import cli, deploy_config
from services.targets import FACTORIES
from shared.settings import Settings

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
NGINX = (ROOT / "deploy" / "nginx.conf").read_text()
PROMETHEUS = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
DOCKERFILE = (ROOT / "Dockerfile").read_text()
PORT = deploy_config.CONTAINER_PORT
PINNED = re.compile(r"^[\w.\-/]+:(?!latest$)[\w.\-]*\d[\w.\-]*(@sha256:[0-9a-f]{64})?$")
INTERPOLATION = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


def _llmwatch_services() -> dict[str, str]:
    """compose service → the CLI target its command serves."""
    found = {}
    for name, svc in SERVICES.items():
        command = svc.get("command") or []
        if command[:2] == ["llmwatch", "serve"]:
            found[name] = command[2]
    return found


LLMWATCH = _llmwatch_services()


def _env(svc: dict[str, Any]) -> dict[str, str]:
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    # `${VAR:-default}` as compose sees it with VAR unset.
    return {k: INTERPOLATION.sub(lambda m: m.group(2) or "", str(v)) for k, v in env.items()}


def test_the_stack_has_every_part() -> None:
    assert set(SERVICES) == {
        "redis",
        "ingest",
        "aggregator",
        "stream",
        "metrics",
        "nginx",
        "prometheus",
    }
    assert set(LLMWATCH.values()) == set(FACTORIES)  # every service runs, each once
    assert all(name == target for name, target in LLMWATCH.items())


@pytest.mark.parametrize("service", sorted(LLMWATCH))
def test_every_command_is_a_real_cli_target(service: str) -> None:
    args = cli._parser().parse_args(SERVICES[service]["command"][1:])
    assert args.func is cli._cmd_serve and args.target in FACTORIES


@pytest.mark.parametrize("service", sorted(LLMWATCH))
def test_scalable_services_have_no_fixed_host_port_or_name(service: str) -> None:
    svc = SERVICES[service]
    assert "ports" not in svc and "container_name" not in svc
    assert svc["expose"] == [str(PORT)]
    assert svc["image"] == f"llmwatch:{_project_version()}" and "build" in svc


def test_no_container_names_anywhere() -> None:
    assert not [n for n, s in SERVICES.items() if "container_name" in s]


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_every_llmwatch_variable_is_a_real_setting(
    service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = _env(SERVICES[service])
    fields = {f"LLMWATCH_{name.upper()}" for name in Settings.model_fields}
    unknown = [k for k in env if k.startswith("LLMWATCH_") and k not in fields]
    assert not unknown, f"{service} sets {unknown}, which no setting reads"
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    if service in LLMWATCH:
        settings = Settings()  # the values, with compose's defaults, must validate too
        assert settings.host == "0.0.0.0" and settings.port == PORT
        assert settings.redis_url == "redis://redis:6379/0"
        assert settings.max_body_bytes == Settings.model_fields["max_body_bytes"].default
        # uvicorn trusts X-Forwarded-For only from these: per-IP limits must see the client,
        # not nginx (only nginx reaches the services; none publishes a port).
        assert env["FORWARDED_ALLOW_IPS"] == "*"


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_every_image_is_pinned(service: str) -> None:
    image = SERVICES[service]["image"]
    assert PINNED.match(image), f"{service}: {image!r} is not pinned to a version"


def test_dockerfile_base_is_pinned_slim_and_runs_as_non_root() -> None:
    bases = re.findall(r"^ARG PYTHON_IMAGE=(\S+)$", DOCKERFILE, re.MULTILINE)
    assert len(bases) == 1 and PINNED.match(bases[0]) and "slim" in bases[0]
    assert re.findall(r"^FROM (\S+)", DOCKERFILE, re.MULTILINE) == ["${PYTHON_IMAGE}"] * 2
    users = re.findall(r"^USER (\S+)$", DOCKERFILE, re.MULTILINE)
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    assert re.search(r"^HEALTHCHECK .*\n?.*/readyz", DOCKERFILE, re.MULTILINE)
    assert f"LLMWATCH_PORT={PORT}" in DOCKERFILE and "LLMWATCH_HOST=0.0.0.0" in DOCKERFILE


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_every_service_restarts_and_has_a_healthcheck(service: str) -> None:
    svc = SERVICES[service]
    assert svc["restart"] == "unless-stopped"
    test = svc["healthcheck"]["test"]
    assert test[0] == "CMD"
    if service in LLMWATCH:
        assert f"http://127.0.0.1:{PORT}/readyz" in " ".join(test)


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_dependencies_wait_for_health(service: str) -> None:
    for name, cond in (SERVICES[service].get("depends_on") or {}).items():
        assert name in SERVICES
        assert cond == {"condition": "service_healthy"}, f"{service} -> {name}"
    if service in LLMWATCH:
        assert "redis" in SERVICES[service]["depends_on"]


def test_redis_is_official_persistent_and_never_evicts() -> None:
    redis = SERVICES["redis"]
    assert redis["image"].startswith("redis:")
    assert "redis-data:/data" in redis["volumes"] and "redis-data" in COMPOSE["volumes"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in redis["volumes"] if v.startswith("./")}
    conf = (ROOT / mounts[redis["command"][1]]).read_text()
    directives = dict(
        line.split(None, 1) for line in conf.splitlines() if line and not line.startswith("#")
    )
    assert directives["appendonly"] == "yes" and directives["dir"] == "/data"
    assert directives["maxmemory-policy"] == "noeviction"


def test_ops_files_are_mounted_read_only_from_deploy() -> None:
    expected = {
        "nginx": {"./deploy/nginx.conf:/etc/nginx/nginx.conf:ro"},
        "prometheus": {"./deploy/prometheus.yml:/etc/prometheus/prometheus.yml:ro",
                       "./deploy/alerts.yml:/etc/prometheus/alerts.yml:ro"},
        "redis": {"./deploy/redis.conf:/usr/local/etc/redis/redis.conf:ro"},
    }  # fmt: skip
    for service, mounts in expected.items():
        assert mounts <= set(SERVICES[service]["volumes"]), service
    assert PROMETHEUS["rule_files"] == ["alerts.yml"]  # resolved next to the mounted config


def test_front_door_and_prometheus_ports() -> None:
    assert [p.rsplit(":", 1)[1] for p in SERVICES["nginx"]["ports"]] == ["3000"]
    assert [p.rsplit(":", 1)[1] for p in SERVICES["prometheus"]["ports"]] == ["9090"]
    assert re.search(r"^\s*listen 3000;", NGINX, re.MULTILINE)


def test_nginx_upstreams_are_compose_services_on_their_port() -> None:
    upstreams = deploy_config.nginx_upstreams(NGINX)
    assert set(upstreams) == {"ingest", "stream", "metrics"}
    for name, servers in upstreams.items():
        assert servers == [f"{name}:{PORT}"] and name in LLMWATCH
        assert re.search(rf"server {name}:{PORT} resolve;", NGINX)  # re-resolved: scaled replicas
    assert re.search(r"^\s*resolver 127\.0\.0\.11 valid=\d+s", NGINX, re.MULTILINE)
    version = re.match(r"nginx:(\d+)\.(\d+)\.(\d+)", SERVICES["nginx"]["image"])
    assert version and tuple(map(int, version.groups())) >= (1, 27, 3)  # `resolve` is OSS since


def test_nginx_body_limit_matches_ingest() -> None:
    (limit,) = re.findall(r"client_max_body_size\s+(\d+)([km]?);", NGINX)
    size = int(limit[0]) * {"": 1, "k": 1024, "m": 1024 * 1024}[limit[1]]
    assert size == Settings.model_fields["max_body_bytes"].default
    assert size == int(_env(SERVICES["ingest"])["LLMWATCH_MAX_BODY_BYTES"])


def test_nginx_front_door_essentials() -> None:
    for directive in (
        "proxy_http_version 1.1;",
        'proxy_set_header Connection "";',
        "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        "proxy_set_header X-Request-Id $llmwatch_request_id;",
        "proxy_buffering off;",
    ):
        assert directive in NGINX
    assert all(
        re.search(r"keepalive \d+;", body)
        for body in re.findall(r"upstream \w+ \{(.*?)\}", NGINX, re.DOTALL)
    )


# nginx location matching, enough for this file: exact, then regex in order, then longest prefix.
def _route(path: str) -> str:
    blocks = re.findall(r"location\s+(=|~)?\s*(\S+)\s*\{([^}]*)\}", NGINX)

    def upstream(body: str) -> str:
        return re.search(r"proxy_pass http://(\w+);", body).group(1)  # type: ignore[union-attr]

    for kind, pattern, body in blocks:
        if kind == "=" and pattern == path:
            return upstream(body)
    for kind, pattern, body in blocks:
        if kind == "~" and re.search(pattern, path):
            return upstream(body)
    prefixes = [
        (pattern, body) for kind, pattern, body in blocks if not kind and path.startswith(pattern)
    ]
    return upstream(max(prefixes, key=lambda pb: len(pb[0]))[1])


@pytest.mark.parametrize(("path", "upstream"), [
    ("/api/open-wrapper", "ingest"), ("/api/report", "ingest"), ("/v1/runs/ingest", "ingest"),
    ("/api/apps", "ingest"), ("/api/reload", "metrics"),
    ("/api/events", "stream"), ("/api/stream", "stream"), ("/api/stats", "stream"),
    ("/api/history", "stream"), ("/api/runs/abc", "stream"), ("/api/notifications/read", "stream"),
    ("/api/notifications/x/unread", "stream"), ("/api/system/history", "stream"),
    ("/api/deadletter", "stream"), ("/", "stream"), ("/static/app.js", "stream"),
    ("/api/appsx", "stream"), ("/api/events/x", "stream"),
])  # fmt: skip
def test_route_ownership(path: str, upstream: str) -> None:
    assert _route(path) == upstream


def test_sse_locations_are_unbuffered_with_long_timeouts() -> None:
    (body,) = [
        b
        for p, b in re.findall(r"location ~ (\S+) \{([^}]*)\}", NGINX)
        if re.search(p, "/api/events")
    ]
    assert "proxy_buffering off;" in body and "proxy_cache off;" in body
    (timeout,) = re.findall(r"proxy_read_timeout (\d+)([smh]);", body)
    seconds = int(timeout[0]) * {"s": 1, "m": 60, "h": 3600}[timeout[1]]
    assert seconds > Settings.model_fields["sse_ping_s"].default * 2


def test_prometheus_discovers_every_llmwatch_service_by_dns() -> None:
    jobs = {job["job_name"]: job for job in PROMETHEUS["scrape_configs"]}
    assert set(jobs) == set(LLMWATCH)
    for name, job in jobs.items():
        assert job["dns_sd_configs"] == [
            {"names": [name], "type": "A", "port": PORT, "refresh_interval": "5s"}
        ]


def _project_version() -> str:
    return str(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"])


def test_readme_run_with_docker_matches_compose() -> None:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("<!-- section:docker -->")
    section = readme[start : readme.index("\n## ", start)]
    assert re.search(r"^docker compose up -d( |$)", section, re.MULTILINE)
    assert re.search(r"^docker compose up -d --scale ingest=4( |$)", section, re.MULTILINE)
    assert "localhost:3000" in section and "localhost:9090" in section
    for name, svc in SERVICES.items():
        assert f"`{svc['image']}`" in section, f"README shows another image for {name}"
