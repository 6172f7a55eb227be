"""What the numbers were measured on: CPU, cores, memory, load, tool versions."""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
from typing import Any

import psutil


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(argv: list[str]) -> str | None:
    if not shutil.which(argv[0]) and not os.access(argv[0], os.X_OK):
        return None
    try:
        out = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (out.stdout or out.stderr).strip().splitlines()
    return text[0].strip() if text else None


def short_version(text: str | None) -> str | None:
    """ "Redis server v=6.2.14 sha=…" → "redis 6.2.14"; "wrk debian/4.1.0-3 …" → "wrk 4.1.0"."""
    if not text:
        return None
    found = re.search(r"(?:v=|/|version )v?(\d+\.\d+(?:\.\d+)?)", text)
    name = text.split()[0].lower()
    return f"{name} {found.group(1)}" if found else text


def describe(redis_binary: str | None = None) -> dict[str, Any]:
    """A dict for the JSON and the BENCHMARKS.md header. Load average shows how quiet it was."""
    mem = psutil.virtual_memory()
    return {
        "cpu_model": cpu_model(),
        "nproc": os.cpu_count() or 0,
        "cpu_physical": psutil.cpu_count(logical=False) or 0,
        "memory_bytes": int(mem.total),
        "memory_gib": round(mem.total / 2**30, 1),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "redis_server": short_version(_version([redis_binary, "--version"]))
        if redis_binary
        else None,
        "wrk": short_version(_version(["wrk", "--version"])),
        "nginx": short_version(_version(["nginx", "-v"])),
    }
