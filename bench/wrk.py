"""Drive wrk (Debian's, 4.x) with a Lua script and read back its summary as JSON."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LUA = Path(__file__).with_name("lua")


class WrkError(RuntimeError):
    pass


@dataclass(frozen=True)
class WrkResult:
    requests: int
    duration_s: float
    errors: dict[str, int]
    latency_us: dict[str, float]

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "duration_s": round(self.duration_s, 3),
            "rps": round(self.rps, 1),
            "errors": self.errors,
            "latency_us": self.latency_us,
        }


def binary() -> str:
    found = shutil.which("wrk")
    if not found:
        raise WrkError("wrk is not installed (apt-get install wrk)")
    return found


def script(workdir: Path, kind: str) -> Path:
    """A one-file Lua script: `post` (body from a file, unique ids) or `get`, + the JSON report."""
    path = workdir / f"wrk-{kind}.lua"
    parts = [(LUA / "post.lua").read_text()] if kind == "post" else []
    parts.append((LUA / "report.lua").read_text())
    path.write_text("\n".join(parts))
    return path


def run(
    url: str,
    *,
    workdir: Path,
    duration_s: float,
    connections: int = 64,
    threads: int = 1,
    body_file: Path | None = None,
    run_id: str = "run",
) -> WrkResult:
    """One wrk run. With `body_file` it POSTs that body (unique ids), else it GETs `url`."""
    kind = "post" if body_file else "get"
    argv = [
        binary(), f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration_s))}s",
        "--timeout", "10s", "-s", str(script(workdir, kind)), url,
    ]  # fmt: skip
    if body_file:
        argv += ["--", str(body_file), run_id]
    proc = subprocess.run(
        argv, check=False, capture_output=True, text=True, timeout=duration_s + 60
    )
    return parse(proc.stdout, proc.stderr, proc.returncode)


def parse(stdout: str, stderr: str = "", returncode: int = 0) -> WrkResult:
    for line in stdout.splitlines():
        if line.startswith("BENCHJSON "):
            data = json.loads(line[len("BENCHJSON ") :])
            return WrkResult(
                requests=int(data["requests"]),
                duration_s=data["duration_us"] / 1e6,
                errors={k: int(v) for k, v in data["errors"].items()},
                latency_us={k: float(v) for k, v in data["latency_us"].items()},
            )
    raise WrkError(f"wrk gave no summary (exit {returncode}): {stderr.strip() or stdout.strip()}")
