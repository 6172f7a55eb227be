"""Benchmarks: each llmwatch figure measured side by side with its reference, in one run.

`python -m bench` (quick, what `make bench` runs) or `python -m bench --full` starts every server
under test as a real subprocess on 127.0.0.1 with its own redis-server, drives it with wrk (or
Python SSE receivers, several processes), and writes `bench/results/latest.json` and
`BENCHMARKS.md`.
"""
