"""The repo's `deploy/` files, rendered for processes on loopback ports (pure text in, text out).

Compose mounts `deploy/nginx.conf`, `deploy/prometheus.yml`, `deploy/alerts.yml` and
`deploy/redis.conf` as they are. `llmwatch topology` runs the same files with Debian's nginx,
prometheus and a local redis-server, changing only what names Docker's network:

- nginx: the `listen 3000;` line and each upstream's `server <name>:8000 ...;` line (one
  `server 127.0.0.1:<port>;` per local replica), plus temp paths under the runner's prefix;
- prometheus: each job's `dns_sd_configs` become `file_sd_configs` (a JSON file per job, listing
  the local replicas), `rule_files` become absolute paths into `deploy/`;
- redis: its directives become command-line flags, minus those the embedded launcher owns.

Anything the renderer does not recognise is an error, so a change to the shipped files that the
local runner cannot mirror fails the tests instead of drifting.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

CONTAINER_PORT = 8000  # what every service container listens on (LLMWATCH_PORT in compose)
FRONT_DOOR_PORT = 3000
NGINX_TEMP_DIRS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


class RenderError(ValueError):
    """The shipped file does not have the shape the local runner relies on."""


_UPSTREAM_RE = re.compile(r"^\s*upstream\s+([\w-]+)\s*\{(.*?)^\s*\}", re.MULTILINE | re.DOTALL)
_LISTEN_RE = re.compile(rf"^(\s*)listen\s+{FRONT_DOOR_PORT}\s*;", re.MULTILINE)
_HTTP_RE = re.compile(r"^(\s*)http\s*\{[^\n]*\n", re.MULTILINE)


def nginx_upstreams(conf: str) -> dict[str, list[str]]:
    """Upstream name → its `server` lines' addresses, as written in the file."""
    found: dict[str, list[str]] = {}
    for match in _UPSTREAM_RE.finditer(conf):
        servers = re.findall(r"^\s*server\s+([^\s;]+)[^;\n]*;", match.group(2), re.MULTILINE)
        found[match.group(1)] = servers
    return found


def render_nginx(conf: str, *, listen: str, upstreams: Mapping[str, Sequence[str]]) -> str:
    """`conf` with the front door on `listen` (e.g. "127.0.0.1:3000") and every upstream's
    Docker `server <name>:8000` line replaced by the given local addresses."""
    declared = nginx_upstreams(conf)
    if set(declared) != set(upstreams):
        raise RenderError(
            f"nginx.conf upstreams {sorted(declared)} != local services {sorted(upstreams)}"
        )
    out, count = _LISTEN_RE.subn(lambda m: f"{m.group(1)}listen {listen};", conf)
    if count != 1:
        raise RenderError(f"expected one `listen {FRONT_DOOR_PORT};` in nginx.conf, found {count}")

    def upstream(match: re.Match[str]) -> str:
        name, addresses = match.group(1), upstreams[match.group(1)]
        if not addresses:
            raise RenderError(f"upstream {name!r} needs at least one local address")
        docker_line = re.compile(
            rf"^(\s*)server\s+{re.escape(name)}:{CONTAINER_PORT}\b[^;\n]*;", re.MULTILINE
        )
        body, n = docker_line.subn(
            lambda m: "\n".join(f"{m.group(1)}server {a};" for a in addresses), match.group(2), 1
        )
        if n != 1:
            raise RenderError(f"upstream {name!r}: no `server {name}:{CONTAINER_PORT} ...;` line")
        return match.group(0).replace(match.group(2), body)

    out = _UPSTREAM_RE.sub(upstream, out)
    temp = "".join(f"    {d}_temp_path temp/{d};\n" for d in NGINX_TEMP_DIRS)
    out, count = _HTTP_RE.subn(lambda m: m.group(0) + temp, out, 1)
    if count != 1:
        raise RenderError("no `http {` block in nginx.conf")
    return out


def nginx_globals(pid_file: Path, *, as_root: bool) -> str:
    """The `-g` directives: foreground, a private pid file and, for root, workers that can
    reach a private temp dir (the runner's prefix is not world-readable)."""
    directives = ["daemon off;", f"pid {pid_file};"]
    if as_root:
        directives.append("user root;")
    return " ".join(directives)


# --- prometheus -------------------------------------------------------------------------------
def prometheus_jobs(config: Mapping[str, Any]) -> dict[str, list[str]]:
    """Job name → the Docker DNS names it discovers (its `dns_sd_configs`)."""
    jobs: dict[str, list[str]] = {}
    for job in config.get("scrape_configs") or []:
        names = [n for sd in job.get("dns_sd_configs") or [] for n in sd.get("names", [])]
        jobs[job["job_name"]] = names
    return jobs


def render_prometheus(
    config: Mapping[str, Any],
    *,
    targets_dir: Path,
    rules_dir: Path,
    scrape_interval: str | None = None,
) -> dict[str, Any]:
    """A copy of the shipped config where each DNS-discovered job reads
    `<targets_dir>/<job>.json` instead, and rule files resolve against `rules_dir`."""
    out: dict[str, Any] = {k: v for k, v in config.items() if k != "scrape_configs"}
    if scrape_interval:
        out["global"] = {
            **config.get("global", {}),
            "scrape_interval": scrape_interval,
            "evaluation_interval": scrape_interval,
        }
        out["global"].pop("scrape_timeout", None)
    out["rule_files"] = [str(rules_dir / f) for f in config.get("rule_files") or []]
    jobs = []
    for job in config.get("scrape_configs") or []:
        job = dict(job)
        sds = job.pop("dns_sd_configs", None)
        if sds is None:
            raise RenderError(f"job {job['job_name']!r} is not DNS-discovered; cannot run locally")
        for sd in sds:
            if sd.get("type") != "A" or sd.get("port") != CONTAINER_PORT:
                raise RenderError(
                    f"job {job['job_name']!r}: expected type A, port {CONTAINER_PORT}"
                )
        job["file_sd_configs"] = [{"files": [str(targets_dir / f"{job['job_name']}.json")]}]
        if scrape_interval:
            job.pop("scrape_interval", None)
            job.pop("scrape_timeout", None)
        jobs.append(job)
    out["scrape_configs"] = jobs
    return out


def file_sd_targets(addresses: Sequence[str]) -> list[dict[str, Any]]:
    """The file_sd JSON for one job: every replica's host:port, as DNS would have listed it."""
    return [{"targets": list(addresses), "labels": {}}]


# --- redis ------------------------------------------------------------------------------------
# The embedded launcher sets these itself (loopback, a free port, the runner's data dir).
REDIS_LAUNCHER_OWNS = frozenset({"port", "bind", "dir", "daemonize", "protected-mode", "logfile"})


def redis_args(conf: str) -> list[str]:
    """`deploy/redis.conf` directives as `--name value...` flags for redis-server."""
    args: list[str] = []
    for raw in conf.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, _, value = line.partition(" ")
        if name.lower() in REDIS_LAUNCHER_OWNS:
            continue
        args.append(f"--{name}")
        args.extend(_redis_values(value.strip()))
    return args


def _redis_values(value: str) -> list[str]:
    if value in {'""', "''"}:
        return [""]
    return value.split()
