"""SSE receivers: one process holding many `GET /api/events` connections (uvloop, raw protocol).

    python -m bench.receiver PORT --clients 500 --mode count|latency [--out FILE]

Prints `{"ready": ...}` once every connection was tried, then answers commands on stdin:
`snap` prints the frame count so far, `stop` prints the final counts (and, in latency mode,
writes every delivery's latency in ns as int64 to FILE) and exits. Frames are counted by a
marker in the payload (`"bench_t":`), so pings, comments and warm-up events do not count.
Latency = receive time − the send time the sender put in the event (same host, same clock).
"""

from __future__ import annotations

import argparse
import array
import asyncio
import json
import re
import sys
import time

import uvloop

MARKER = b'"bench_t":'
STAMP = re.compile(rb'"bench_t":(\d+)')


class Totals:
    def __init__(self, latency: bool) -> None:
        self.frames = 0
        self.last = 0.0  # wall time of the last counted frame
        self.connected = 0
        self.refused: dict[str, int] = {}
        self.closed = 0
        self.errors = 0
        self.latencies: array.array[int] | None = array.array("q") if latency else None


class SseClient(asyncio.Protocol):
    def __init__(self, request: bytes, totals: Totals, opened: asyncio.Future[bool]) -> None:
        self.request = request
        self.totals = totals
        self.opened = opened
        self.head = b""
        self.buf = b""
        self.streaming = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        transport.write(self.request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        if not self.streaming:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            status = self.head.split(b" ", 2)[1].decode()
            data, self.head = self.head[end + 4 :], b""
            if status != "200":
                self.totals.refused[status] = self.totals.refused.get(status, 0) + 1
                self._resolve(False)
                self.transport.close()
                return
            self.streaming = True
            self.totals.connected += 1
            self._resolve(True)
        buf = self.buf + data
        # Frames end with a blank line, "\n\n" or "\r\n\r\n": count only whole frames.
        cut = max(buf.rfind(b"\n\n"), buf.rfind(b"\n\r\n"))
        if cut < 0:
            self.buf = buf
            return
        complete, self.buf = buf[:cut], buf[cut:]
        lat = self.totals.latencies
        if lat is None:
            found = complete.count(MARKER)
            if found:
                self.totals.frames += found
                self.totals.last = time.time()
            return
        now = time.time_ns()
        for match in STAMP.finditer(complete):
            lat.append(now - int(match.group(1)))
            self.totals.frames += 1
            self.totals.last = now / 1e9

    def _resolve(self, ok: bool) -> None:
        if not self.opened.done():
            self.opened.set_result(ok)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.streaming:
            self.totals.closed += 1
        self._resolve(False)


async def connect_all(port: int, path: str, clients: int, totals: Totals, parallel: int) -> None:
    loop = asyncio.get_running_loop()
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n"
        "Cache-Control: no-cache\r\n\r\n"
    ).encode()
    gate = asyncio.Semaphore(parallel)

    async def one() -> None:
        async with gate:
            opened: asyncio.Future[bool] = loop.create_future()
            try:
                await loop.create_connection(
                    lambda: SseClient(request, totals, opened), "127.0.0.1", port
                )
                await asyncio.wait_for(opened, 30)
            except (TimeoutError, OSError):
                totals.errors += 1

    await asyncio.gather(*(one() for _ in range(clients)))


def _save(values: array.array[int], path: str) -> None:
    with open(path, "wb") as f:  # once, at the end: nothing else is running by then
        values.tofile(f)


def emit(payload: dict) -> None:
    sys.stdout.write(json.dumps(payload) + "\n")
    sys.stdout.flush()


async def serve(args: argparse.Namespace) -> None:
    totals = Totals(args.mode == "latency")
    await connect_all(args.port, args.path, args.clients, totals, args.parallel)
    emit({"ready": True, "connected": totals.connected, "refused": totals.refused,
          "errors": totals.errors})  # fmt: skip
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = (await reader.readline()).decode().strip()
        snap = {"frames": totals.frames, "closed": totals.closed, "t": time.time(),
                "last": totals.last}  # fmt: skip
        if line == "snap":
            emit(snap)
        elif line in ("stop", ""):
            if totals.latencies is not None and args.out:
                _save(totals.latencies, args.out)
            emit({**snap, "connected": totals.connected, "refused": totals.refused,
                  "errors": totals.errors, "final": True})  # fmt: skip
            return


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.receiver")
    p.add_argument("port", type=int)
    p.add_argument("--path", default="/api/events")
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--mode", choices=["count", "latency"], default="count")
    p.add_argument("--out")
    p.add_argument("--parallel", type=int, default=100, help="connections opened at once")
    args = p.parse_args(argv)
    uvloop.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
