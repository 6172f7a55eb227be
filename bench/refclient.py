"""Reference Redis clients, each run as its own process (one core, like the service it is
compared with), printing one JSON line:

    python -m bench.refclient xadd URL STREAM EVENTS_FILE --duration 5 --concurrency 4
    python -m bench.refclient drain URL STREAM GROUP --batch 500

`xadd`: redis-py (hiredis) pipelines of `XADD stream * e <event>`, one pipeline per batch of the
given events, `concurrency` pipelines in flight: what ingest's publisher could do at best.
`drain`: XREADGROUP COUNT batch + XACK until the group has nothing new: what the aggregator could
do at best with zero processing. Its clock starts when the first batch arrives.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

import orjson
import uvloop
from redis.asyncio import Redis

FIELD = b"e"


async def xadd(
    url: str, stream: str, events: list[bytes], duration: float, concurrency: int
) -> dict:
    redis = Redis.from_url(url, max_connections=concurrency + 2)
    stop = time.perf_counter() + duration
    sent = 0

    async def worker() -> None:
        nonlocal sent
        while time.perf_counter() < stop:
            pipe = redis.pipeline(transaction=False)
            for event in events:
                pipe.xadd(stream, {FIELD: event})
            await pipe.execute()
            sent += len(events)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    seconds = time.perf_counter() - start
    await redis.aclose()
    return {"events": sent, "seconds": round(seconds, 4), "rate": round(sent / seconds, 1)}


async def drain(url: str, stream: str, group: str, batch: int) -> dict:
    redis = Redis.from_url(url)
    try:
        await redis.xgroup_create(stream, group, id="0", mkstream=True)
    except Exception as exc:
        if "BUSYGROUP" not in str(exc):
            raise
    consumer = "bench-ref"
    first = None
    after_first = 0
    total = 0
    while True:
        reply = await redis.xreadgroup(group, consumer, {stream: ">"}, count=batch)
        if not reply:
            break
        ids = [entry_id for entry_id, _ in reply[0][1]]
        if not ids:
            break
        await redis.xack(stream, group, *ids)
        total += len(ids)
        if first is None:
            first = time.perf_counter()
        else:
            after_first += len(ids)
    seconds = time.perf_counter() - first if first else 0.0
    await redis.aclose()
    rate = after_first / seconds if seconds > 0 else 0.0
    return {"events": total, "seconds": round(seconds, 4), "rate": round(rate, 1)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.refclient")
    sub = p.add_subparsers(dest="cmd", required=True)
    x = sub.add_parser("xadd")
    x.add_argument("url")
    x.add_argument("stream")
    x.add_argument("events_file")
    x.add_argument("--duration", type=float, default=5.0)
    x.add_argument("--concurrency", type=int, default=4)
    d = sub.add_parser("drain")
    d.add_argument("url")
    d.add_argument("stream")
    d.add_argument("group")
    d.add_argument("--batch", type=int, default=500)
    args = p.parse_args(argv)
    if args.cmd == "xadd":
        with open(args.events_file, "rb") as f:
            events = [e.encode() for e in orjson.loads(f.read())]
        result = uvloop.run(xadd(args.url, args.stream, events, args.duration, args.concurrency))
    else:
        result = uvloop.run(drain(args.url, args.stream, args.group, args.batch))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
