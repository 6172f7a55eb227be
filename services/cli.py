"""`llmwatch`: the one console script.

    llmwatch up [--port 3000] [--redis-url URL]     every service in one process (+ embedded Redis)
    llmwatch up --cluster N [--replicas R]           ... on a local N-master Redis Cluster
    llmwatch serve <target> [--host] [--port]        one service, as compose runs it
    llmwatch targets                                 what `serve` can run
    llmwatch apps add NAME | apps list               the LLMonitor app registry
    llmwatch send [--url URL]                        post the sample events to a running stack
    llmwatch tail [-n N] [--follow]                  print what landed in the event stream(s)
    llmwatch topology [--ingest N] [--port 3000]     the compose topology without Docker

Signals belong here, never to a service: uvicorn handles SIGINT/SIGTERM and runs the lifespan
shutdown, which stops every background loop after its current batch.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path
from typing import Any

from shared import logging as shared_logging
from shared import runtime
from shared.redis_server import EmbeddedRedis, RedisServerNotFound
from shared.settings import PRODUCTION, Settings, load_settings, production_gaps

log = logging.getLogger("llmwatch")

URL_FILE = "redis.url"  # where `llmwatch up` leaves its embedded Redis URL for other commands
PARTITIONS_FILE = "partitions"  # ... and its partition count, which `tail` needs to read them all


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    from services.targets import ALL, DESCRIPTIONS, FACTORIES

    p = argparse.ArgumentParser(prog="llmwatch", description="LLM activity events, live.")
    sub = p.add_subparsers(title="commands", metavar="<command>")

    up = sub.add_parser("up", help="run every service in one process on one port")
    up.add_argument("--host")
    up.add_argument("--port", type=int)
    up.add_argument("--redis-url", help="use this Redis instead of starting an embedded one")
    up.add_argument("--cluster", type=int, metavar="N",
                    help="start a local Redis Cluster of N masters instead (partitions: 2×N "
                         "unless LLMWATCH_PARTITIONS is set)")  # fmt: skip
    up.add_argument("--replicas", type=int, default=0, metavar="R",
                    help="with --cluster: R replicas per master (failover); sets "
                         "LLMWATCH_REPLICA_ACKS=1 unless it is set")  # fmt: skip
    up.set_defaults(func=_cmd_up)

    targets_help = "; ".join(f"{n}: {DESCRIPTIONS[n]}" for n in [*FACTORIES, ALL])
    serve = sub.add_parser(
        "serve", help="run one service (as compose does)", description=targets_help
    )
    serve.add_argument("target", choices=[*FACTORIES, ALL])
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--redis-url")
    serve.set_defaults(func=_cmd_serve)

    tg = sub.add_parser("targets", help="list the targets `serve` accepts")
    tg.set_defaults(
        func=lambda _a: print("\n".join(f"{n:<11} {DESCRIPTIONS[n]}" for n in [*FACTORIES, ALL]))
    )

    apps = sub.add_parser("apps", help="LLMonitor app registry")
    apps_sub = apps.add_subparsers(title="apps commands", metavar="<apps command>")
    add = apps_sub.add_parser("add", help="register an app; prints its new id")
    add.add_argument("name")
    add.add_argument("--redis-url")
    add.set_defaults(func=_cmd_apps_add)
    ls = apps_sub.add_parser("list", help="list registered apps")
    ls.add_argument("--redis-url")
    ls.set_defaults(func=_cmd_apps_list)

    send = sub.add_parser("send", help="post the sample events (both formats) to a running stack")
    send.add_argument("--url", default="http://127.0.0.1:3000")
    send.add_argument(
        "--token", help="ingest token (LLMWATCH_INGEST_TOKEN), if the stack needs one"
    )
    send.add_argument("--admin-token", help="admin token, to register the demo app")
    send.set_defaults(func=_cmd_send)

    tail = sub.add_parser("tail", help="print the newest events in the event stream(s)")
    tail.add_argument("-n", "--count", type=int, default=20)
    tail.add_argument("-f", "--follow", action="store_true")
    tail.add_argument("--redis-url")
    tail.set_defaults(func=_cmd_tail)

    from services import topology  # the compose stack as local processes (nginx, prometheus)

    topology.register(sub)
    return p


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    for name in ("host", "port", "redis_url"):
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = value
    return load_settings(**overrides)


def _refuse_insecure(settings: Settings, target: str) -> bool:
    """In production, refuse to serve routes without their tokens (README, Guarantees)."""
    from services.targets import resolve

    gaps = production_gaps(settings, resolve(target))
    if gaps:
        print(
            f"llmwatch: refusing to start {target} with LLMWATCH_ENVIRONMENT="
            f"{settings.environment}: {'; '.join(gaps)}. Set the tokens, or "
            "LLMWATCH_ALLOW_INSECURE=true to run without them anyway.",
            file=sys.stderr,
        )
    elif settings.allow_insecure and settings.environment.strip().lower() in PRODUCTION:
        log.warning("LLMWATCH_ALLOW_INSECURE: production without the token checks")
    return bool(gaps)


def _cmd_up(args: argparse.Namespace) -> int:
    # SIGTERM while Redis starts must still stop it (`finally` below); `_run` sets this again.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    settings = _settings(args)
    shared_logging.setup(settings.log_level)
    if _refuse_insecure(settings, "all"):
        return 2
    if args.replicas and args.cluster is None:
        print("llmwatch up: --replicas goes with --cluster N", file=sys.stderr)
        return 2
    if args.cluster is not None:
        return _up_cluster(args, settings)
    if settings.redis_url:
        return _run("all", settings)
    try:
        server = EmbeddedRedis(settings.data_dir, appendfsync=settings.redis_appendfsync)
        server.start()
    except (RedisServerNotFound, RuntimeError) as exc:
        print(f"llmwatch: {exc}", file=sys.stderr)
        return 1
    log.info("embedded redis-server on %s (data in %s)", server.url, settings.data_dir.resolve())
    try:
        return _run_advertised(settings.model_copy(update={"redis_url": server.url}))
    finally:
        server.stop()


def _up_cluster(args: argparse.Namespace, settings: Settings) -> int:
    from services import local_cluster

    if settings.redis_url:
        print("llmwatch up: --cluster starts its own Redis Cluster; unset REDIS_URL (or drop "
              "--redis-url), or drop --cluster to use that Redis", file=sys.stderr)  # fmt: skip
        return 2
    masters = args.cluster
    if masters < 1 or args.replicas < 0:
        print("llmwatch up: --cluster needs N >= 1 and --replicas R >= 0", file=sys.stderr)
        return 2
    try:
        cluster = local_cluster.start(settings.data_dir, masters, args.replicas,
                                      appendfsync=settings.redis_appendfsync)  # fmt: skip
    except (RedisServerNotFound, RuntimeError) as exc:
        print(f"llmwatch: {exc}", file=sys.stderr)
        return 1
    update: dict[str, Any] = {"redis_url": cluster.url}
    if "partitions" not in settings.model_fields_set:  # LLMWATCH_PARTITIONS (or the TOML) wins
        update["partitions"] = local_cluster.default_partitions(masters)
    if args.replicas and "replica_acks" not in settings.model_fields_set:
        update["replica_acks"] = 1  # with replicas, a failover loses no acknowledged event
    log.info("local Redis Cluster on %s: %d masters, %d replicas each, %d partitions (data in %s)",
             cluster.url, masters, args.replicas, update.get("partitions", settings.partitions),
             (settings.data_dir / local_cluster.CLUSTER_DIR).resolve())  # fmt: skip
    try:
        return _run_advertised(settings.model_copy(update=update))
    finally:
        cluster.stop()


def _run_advertised(settings: Settings) -> int:
    """Run `all`, leaving the Redis URL and partition count in the data directory meanwhile, for
    `apps`, `tail` and the like started from another shell."""
    url_file, partitions_file = settings.data_dir / URL_FILE, settings.data_dir / PARTITIONS_FILE
    url_file.write_text(settings.redis_url or "")
    partitions_file.write_text(f"{settings.partitions}\n")
    try:
        return _run("all", settings)
    finally:
        url_file.unlink(missing_ok=True)
        partitions_file.unlink(missing_ok=True)


def _cmd_serve(args: argparse.Namespace) -> int:
    settings = _settings(args)
    shared_logging.setup(settings.log_level)
    if _refuse_insecure(settings, args.target):
        return 2
    if not settings.redis_url:
        print(
            "llmwatch serve: set REDIS_URL (or --redis-url); `llmwatch up` starts its own Redis",
            file=sys.stderr,
        )
        return 2
    return _run(args.target, settings)


def _run(target: str, settings: Settings) -> int:
    import uvicorn

    from services.targets import create_app

    exit_code = 0
    server: uvicorn.Server | None = None

    def on_fatal(task: str, exc: BaseException) -> None:
        nonlocal exit_code
        log.critical("background task %s died, stopping: %r", task, exc, exc_info=exc)
        exit_code = 1
        if server is not None:
            server.should_exit = True

    app = create_app(settings, target, on_fatal=on_fatal)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop" if sys.platform != "win32" else "asyncio",
        http="httptools",
        lifespan="on",
        log_config=None,  # ours, from shared.logging
        access_log=False,
        timeout_keep_alive=30,
        timeout_graceful_shutdown=5,
        limit_concurrency=max(settings.sse_max_streams + 1000, 2000),
        server_header=False,
    )
    server = uvicorn.Server(config)
    # uvicorn re-raises the signal it caught once it has shut down; turn SIGTERM into SystemExit
    # (as SIGINT already is KeyboardInterrupt) so `finally` blocks, e.g. stopping Redis, still run.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    log.info("llmwatch %s listening on http://%s:%d", target, settings.host, settings.port)
    runtime.freeze_long_lived()  # everything imported and built so far lives as long as we do
    server.run()
    if not server.started and exit_code == 0:
        exit_code = 1  # e.g. port in use, or a lifespan start-up hook failed
    return exit_code


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _redis_url(args: argparse.Namespace) -> str:
    settings = _settings(args)
    if settings.redis_url:
        return settings.redis_url
    url_file = Path(settings.data_dir) / URL_FILE
    if url_file.exists():
        return url_file.read_text().strip()
    raise SystemExit("llmwatch: no Redis to talk to: set REDIS_URL, or start `llmwatch up` first")


def _stack_settings(args: argparse.Namespace) -> Settings:
    """Settings for a command talking to the `llmwatch up` of the data directory (no REDIS_URL):
    that stack's partition count, unless LLMWATCH_PARTITIONS says otherwise."""
    settings = _settings(args)
    count_file = Path(settings.data_dir) / PARTITIONS_FILE
    explicit = settings.redis_url or "partitions" in settings.model_fields_set
    if not explicit and count_file.exists():
        try:
            return settings.model_copy(update={"partitions": max(1, int(count_file.read_text()))})
        except ValueError:
            pass
    return settings


def _with_redis(args: argparse.Namespace, fn: Any) -> Any:
    from shared.redis import connect

    async def go() -> Any:
        settings = _stack_settings(args)
        redis = connect(settings, url=_redis_url(args))
        try:
            return await fn(redis, settings)
        finally:
            await redis.aclose()

    return asyncio.run(go())


def _cmd_apps_add(args: argparse.Namespace) -> int:
    from services.ingest.apps import add_app

    app = _with_redis(args, lambda r, _s: add_app(r, args.name))
    print(app["id"])
    return 0


def _cmd_apps_list(args: argparse.Namespace) -> int:
    from services.ingest.apps import list_apps

    for app in _with_redis(args, lambda r, _s: list_apps(r)):
        print(f"{app['id']}\t{app['name']}\t{app['created_at']}")
    return 0


def _cmd_send(args: argparse.Namespace) -> int:
    from services.sender import send_samples

    # Tokens default to this shell's LLMWATCH_* settings, so `send` works against a stack
    # started from the same environment.
    settings = _settings(args)
    return send_samples(
        args.url,
        token=args.token or settings.secret("ingest_token"),
        admin_token=args.admin_token or settings.secret("admin_token"),
        hmac_secret=settings.secret("ingest_hmac_secret"),
    )


def _cmd_tail(args: argparse.Namespace) -> int:
    from services.tail import tail

    async def run(redis: Any, settings: Settings) -> None:
        # Ctrl-C / SIGTERM ask the follow loop to stop after its current (short) read, rather
        # than cancelling a blocking XREAD mid-read, which redis-py does not always honour.
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await tail(redis, settings.partitions, args.count, args.follow, stop=stop)

    try:
        _with_redis(args, run)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
