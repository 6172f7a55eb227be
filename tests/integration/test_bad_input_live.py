"""Oversized and trickled bodies against a real `llmwatch serve ingest` process: a 100 MB upload
is refused (413) long before it is all sent, with the process's memory flat; a body trickled
byte by byte is cut off (408) at the body timeout while other clients are served as usual
(README, Guarantees: limits)."""

from __future__ import annotations

import asyncio
import contextlib
import select
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests.procs import Service, Stack, stack

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MB = 2**20
EVENT = b'{"event_type": "request", "command": "ask", "status": "start"}'


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Stack]:
    yield from stack(tmp_path)


@contextlib.contextmanager
def peak_rss(pid: int) -> Iterator[list[int]]:
    """Sample the process's RSS every 20 ms; yields [baseline, peak] (filled in on exit)."""
    process = psutil.Process(pid)
    baseline = process.memory_info().rss
    samples = [baseline]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            samples.append(process.memory_info().rss)
            time.sleep(0.02)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    result: list[int] = []
    try:
        yield result
    finally:
        done.set()
        thread.join()
        result += [baseline, max(samples)]


def status_of(sock: socket.socket) -> int:
    head = b""
    while b"\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed before a status line")
        head += chunk
    return int(head.split(b" ", 2)[1])


def upload(port: int, headers: bytes, chunks: Iterator[bytes]) -> tuple[int, int]:
    """Send the request head, then the chunks until the server answers (or hangs up).
    Returns (status, bytes of body sent)."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(b"POST /api/open-wrapper HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
        sent = 0
        for chunk in chunks:
            if select.select([sock], [], [], 0)[0]:
                break  # the answer is there: stop sending
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
        return status_of(sock), sent


def chunked(total: int, size: int = MB) -> Iterator[bytes]:
    piece = b'{"event_type": "request", "command": "ask", "status": "start", "x": "'
    yield b"%x\r\n%s\r\n" % (len(piece), piece)
    for _ in range(total // size):
        yield b"%x\r\n%s\r\n" % (size, b"x" * size)
    yield b"0\r\n\r\n"


def plain(total: int, size: int = MB) -> Iterator[bytes]:
    for _ in range(total // size):
        yield b"x" * size


def test_100_mb_bodies_are_refused_before_they_are_read(procs: Stack) -> None:
    ingest = procs.service("ingest")  # LLMWATCH_MAX_BODY_BYTES: the default 5 MiB
    with peak_rss(ingest.pid) as rss:
        # chunked, no length: counted while read, cut off past 5 MiB
        status, sent = upload(
            ingest.port,
            b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n",
            chunked(100 * MB),
        )
        assert status == 413
        assert sent < 40 * MB, sent  # refused long before the end (kernel buffers take some)
        # a declared length over the limit: refused before a byte of body is read
        status, sent = upload(
            ingest.port,
            b"Content-Type: application/json\r\nContent-Length: %d\r\n" % (100 * MB),
            plain(100 * MB),
        )
        assert status == 413 and sent < 40 * MB
    baseline, peak = rss
    assert peak - baseline < 30 * MB, (baseline, peak)  # the body was never held whole
    assert httpx.post(ingest.url + "/api/open-wrapper", content=EVENT).status_code == 200


def trickle(port: int, body: bytes, every: float) -> tuple[int, float]:
    """Send a declared-length body a byte at a time. Returns (status, seconds to the answer)."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(b"POST /api/open-wrapper HTTP/1.1\r\nHost: x\r\nContent-Type: "
                     b"application/json\r\nContent-Length: %d\r\n\r\n" % len(body))  # fmt: skip
        started = time.monotonic()
        for byte in body:
            if select.select([sock], [], [], every)[0]:
                break
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                sock.sendall(bytes([byte]))
        return status_of(sock), time.monotonic() - started


async def test_trickled_bodies_time_out_while_others_are_served(procs: Stack) -> None:
    ingest = procs.service("ingest", body_timeout_s=1)
    body = EVENT * 10  # 600 bytes at 20 per second: half a minute if it were waited for
    slow = [asyncio.to_thread(trickle, ingest.port, body, 0.05) for _ in range(20)]
    trickling = asyncio.gather(*slow)
    async with httpx.AsyncClient(base_url=ingest.url, timeout=5) as client:
        await asyncio.sleep(0.3)
        for _ in range(10):  # meanwhile everybody else is served
            assert (await client.post("/api/open-wrapper", content=EVENT)).status_code == 200
    answers = await trickling
    assert all(status == 408 for status, _ in answers), answers
    assert all(seconds < 5 for _, seconds in answers), answers  # the body timeout is total
    assert not _open_connections(ingest)


def _open_connections(ingest: Service) -> list[object]:
    """The server's established client connections (the trickled ones were closed)."""
    time.sleep(0.2)
    return [c for c in psutil.Process(ingest.pid).net_connections("tcp")
            if c.status == psutil.CONN_ESTABLISHED and c.laddr.port == ingest.port]  # fmt: skip
