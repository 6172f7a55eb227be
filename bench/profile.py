"""py-spy on a server under test: where its time goes while the same load runs again.

The sampling perturbs the numbers a little, so it runs as an extra pass after the measured one,
and its findings go into the JSON (and BENCHMARKS.md) next to the figure. Every sample counts,
idle ones included (`--idle`): py-spy's idle guess is unreliable for a process that spends its
time in uvloop's C code, so the event loop's own frame (`Runner.run`: waiting, and the C work
of the loop and its transports) appears as one line, and the figure's CPU line says how busy
the process really was.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# Leaves of threads that only wait (an idle thread-pool worker, a thread blocked on a lock):
# `--idle` samples them too, but they say nothing about where the work goes.
IDLE_LEAVES = frozenset({"_worker (futures/thread.py)", "wait (threading.py)"})


def py_spy() -> str | None:
    return shutil.which("py-spy") or _venv_py_spy()


def _venv_py_spy() -> str | None:
    candidate = Path(sys.executable).with_name("py-spy")
    return str(candidate) if candidate.exists() else None


def start(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes] | None:
    binary = py_spy()
    if binary is None:
        return None
    argv = [binary, "record", "--pid", str(pid), "--duration", str(max(1, round(seconds))),
            "--rate", "200", "--format", "raw", "--output", str(out), "--nonblocking",
            "--idle"]  # fmt: skip
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def finish(proc: subprocess.Popen[bytes] | None, out: Path, seconds: float) -> dict[str, Any]:
    if proc is None:
        return {"error": "py-spy not installed"}
    try:
        proc.wait(timeout=seconds + 30)
    except subprocess.TimeoutExpired:
        proc.kill()
        return {"error": "py-spy did not finish"}
    if not out.exists():
        return {"error": f"py-spy exited {proc.returncode} without output"}
    return summarize(out.read_text(errors="replace"), rate=200, seconds=seconds)


def summarize(raw: str, *, rate: int, seconds: float, top: int = 12) -> dict[str, Any]:
    """Top functions by self share of the sampled (non-idle) stacks, and llmwatch's own
    functions (services/, shared/) by inclusive share: what the project's code costs with
    everything it calls."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";")
                  if f and not f.startswith("process ") and not f.startswith("thread ")]  # fmt: skip
        if not frames or _short(frames[-1]) in IDLE_LEAVES:
            continue
        total += count
        own[_short(frames[-1])] += count
        for frame in {_short(f) for f in frames if _is_project(f)}:
            inclusive[frame] += count
    if not total:
        return {"samples": 0}

    def share(counter: Counter[str]) -> list[list[Any]]:
        return [[name, round(100 * n / total, 1)] for name, n in counter.most_common(top)]

    return {"samples": total, "self": share(own), "inclusive": share(inclusive)}


def _is_project(frame: str) -> bool:
    where = frame.partition(" (")[2].removeprefix(str(ROOT) + "/")
    return where.startswith(("services/", "shared/")) and not where.startswith("services/cli.py")


def _short(frame: str) -> str:
    """`func (path/to/module.py:123)` → `func (module.py)`: stable across line edits."""
    name, _, where = frame.partition(" (")
    module = where.rstrip(")").rsplit(":", 1)[0]
    parts = Path(module).parts
    short = "/".join(parts[-2:]) if len(parts) >= 2 else module
    return f"{name} ({short})" if where else name
