"""The orchestrator's side of `bench.receiver`: several receiver processes driven together."""

from __future__ import annotations

import array
import asyncio
import json
import math
import sys
from pathlib import Path
from typing import Any

from bench.procs import ROOT, cpu_seconds


class ReceiverGroup:
    def __init__(self, port: int, clients: int, processes: int, *, mode: str, workdir: Path,
                 path: str = "/api/events") -> None:  # fmt: skip
        self.port = port
        self.clients = clients
        self.processes = max(1, min(processes, clients))
        self.mode = mode
        self.workdir = workdir
        self.path = path
        self.procs: list[asyncio.subprocess.Process] = []
        self.connected = 0
        self.refused: dict[str, int] = {}
        self.errors = 0

    def _out(self, i: int) -> Path:
        return self.workdir / f"latency-{i}.bin"

    async def start(self, timeout: float = 120.0) -> None:
        per = math.ceil(self.clients / self.processes)
        left = self.clients
        for i in range(self.processes):
            n = min(per, left)
            left -= n
            argv = [sys.executable, "-m", "bench.receiver", str(self.port), "--path", self.path,
                    "--clients", str(n), "--mode", self.mode, "--out", str(self._out(i))]  # fmt: skip
            self.procs.append(await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, cwd=ROOT))  # fmt: skip
        for ready in await asyncio.wait_for(self._read_all(), timeout):
            self.connected += ready["connected"]
            self.errors += ready["errors"]
            for status, n in ready["refused"].items():
                self.refused[status] = self.refused.get(status, 0) + n

    async def _read_all(self) -> list[dict[str, Any]]:
        out = []
        for proc in self.procs:
            assert proc.stdout is not None
            line = await proc.stdout.readline()
            if not line:
                raise RuntimeError(f"receiver exited with {await proc.wait()}")
            out.append(json.loads(line))
        return out

    async def command(self, verb: str, timeout: float = 60.0) -> dict[str, Any]:
        """Send `snap`/`stop` to every receiver; frames and closed connections summed."""
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.write(verb.encode() + b"\n")
            await proc.stdin.drain()
        replies = await asyncio.wait_for(self._read_all(), timeout)
        return {
            "frames": sum(r["frames"] for r in replies),
            "closed": sum(r["closed"] for r in replies),
            "t": max(r["t"] for r in replies),
            "last": max(r.get("last", 0.0) for r in replies),
        }

    async def stop(self) -> dict[str, Any]:
        totals = await self.command("stop")
        await asyncio.gather(*(p.wait() for p in self.procs))
        return totals

    def latencies(self) -> array.array[int]:
        values: array.array[int] = array.array("q")
        for i in range(len(self.procs)):
            path = self._out(i)
            if path.exists():
                values.frombytes(path.read_bytes())
        return values

    def kill(self) -> None:
        for proc in self.procs:
            if proc.returncode is None:
                try:
                    proc.kill()
                except ProcessLookupError:
                    pass

    def cpu_seconds(self) -> float:
        return sum(cpu_seconds(p.pid) for p in self.procs)
