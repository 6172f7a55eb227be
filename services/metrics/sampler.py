"""The sampler loop: every `sample_interval_s`, read CPU and memory with psutil, publish the
sample, update the gauges, feed the pressure machines, and check whether llmwatch.toml changed.

A Redis error skips one tick (logged, counted); it never stops the loop.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psutil
from prometheus_client import CollectorRegistry, Counter, Gauge
from redis.exceptions import ResponseError

from services.metrics import pressure, ring
from services.metrics.config_watch import ConfigWatch
from shared.notify import raise_notification
from shared.redis import UNAVAILABLE
from shared.service import Context

log = logging.getLogger(__name__)

RESOURCES = {"memory": "mem", "cpu": "cpu"}  # notification task_name -> sample field


def read_sample(now: float | None = None) -> dict[str, Any]:
    """`{ts, cpu, mem, mem_used, mem_total}`: ts in epoch milliseconds, percentages 0-100, bytes.
    CPU is the utilisation since the previous call (psutil's non-blocking mode)."""
    vm = psutil.virtual_memory()
    return {
        "ts": int((now if now is not None else time.time()) * 1000),
        "cpu": round(float(psutil.cpu_percent(interval=None)), 1),
        "mem": round(float(vm.percent), 1),
        "mem_used": int(vm.used),
        "mem_total": int(vm.total),
    }


@dataclass
class SamplerMetrics:
    cpu: Gauge
    mem: Gauge
    mem_used: Gauge
    mem_total: Gauge
    config_stale: Gauge
    under_pressure: Gauge
    samples: Counter
    errors: Counter
    pressure_raised: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> SamplerMetrics:
        return cls(
            cpu=Gauge("llmwatch_system_cpu_percent", "Host CPU utilisation", registry=registry),
            mem=Gauge("llmwatch_system_memory_percent", "Host memory in use", registry=registry),
            mem_used=Gauge("llmwatch_system_memory_used_bytes", "Host memory used", registry=registry),
            mem_total=Gauge("llmwatch_system_memory_total_bytes", "Host memory", registry=registry),
            config_stale=Gauge(
                "llmwatch_config_stale", "1 while llmwatch.toml differs from what was loaded",
                registry=registry,
            ),
            under_pressure=Gauge(
                "llmwatch_resource_pressure", "1 while a resource is over its pressure threshold",
                ["resource"], registry=registry,
            ),
            samples=Counter("llmwatch_sampler_samples", "System samples published", registry=registry),
            errors=Counter(
                "llmwatch_sampler_errors", "Sampler ticks that failed (Redis errors)", registry=registry
            ),
            pressure_raised=Counter(
                "llmwatch_pressure_notifications", "Resource-pressure notifications raised",
                ["resource"], registry=registry,
            ),
        )  # fmt: skip


@dataclass
class Sampler:
    ctx: Context
    metrics: SamplerMetrics
    watch: ConfigWatch
    read: Callable[[], dict[str, Any]] = read_sample
    started: float = field(default_factory=time.monotonic)
    states: dict[str, pressure.Pressure] = field(
        default_factory=lambda: {name: pressure.Pressure() for name in RESOURCES}
    )

    @property
    def uptime(self) -> int:
        return int(time.monotonic() - self.started)

    async def run(self) -> None:
        psutil.cpu_percent(interval=None)  # prime: the first reading is measured from here
        stopping = self.ctx.stopping
        while not stopping.is_set():
            try:
                await self.tick()
            except (*UNAVAILABLE, ResponseError, RuntimeError) as exc:
                self.metrics.errors.inc()
                log.warning("sampler tick failed: %s", exc)
            try:
                await asyncio.wait_for(stopping.wait(), self.ctx.settings.sample_interval_s)
            except TimeoutError:
                pass

    async def tick(self) -> dict[str, Any]:
        sample = self.read()
        m = self.metrics
        m.cpu.set(sample["cpu"])
        m.mem.set(sample["mem"])
        m.mem_used.set(sample["mem_used"])
        m.mem_total.set(sample["mem_total"])
        await ring.publish_sample(self.ctx.redis, sample, self.uptime, psutil.cpu_count() or 1)
        m.samples.inc()
        await self.check_pressure(sample)
        await self.check_config()
        return sample

    async def check_pressure(self, sample: dict[str, Any]) -> None:
        settings = self.ctx.settings
        thresholds = {"memory": settings.pressure_mem_pct, "cpu": settings.pressure_cpu_pct}
        now = sample["ts"] / 1000
        for resource, field_name in RESOURCES.items():
            value = float(sample[field_name])
            state, fire = pressure.step(
                self.states[resource], value, thresholds[resource], settings.pressure_for_s, now
            )
            self.states[resource] = state
            self.metrics.under_pressure.labels(resource).set(1 if state.active else 0)
            if fire:
                await self._raise(resource, value, thresholds[resource], state, sample)

    async def _raise(
        self, resource: str, value: float, threshold: float, state: pressure.Pressure,
        sample: dict[str, Any],
    ) -> None:  # fmt: skip
        held = self.ctx.settings.pressure_for_s
        title = f"{resource.capitalize()} above {threshold:g}% for {held:g}s"
        body = f"{resource} at {value:g}% on {socket.gethostname()}"
        if resource == "memory":
            body += f" ({sample['mem_used']} of {sample['mem_total']} bytes used)"
        since = state.since if state.since is not None else sample["ts"] / 1000
        await raise_notification(
            self.ctx.redis, self.ctx.settings,
            kind="resource.pressure", severity="warning", task_name=resource,
            end_reason="sustained", title=title, body=body, run_id=None,
            occurred_at=sample["ts"] / 1000,
            dedup_id=f"pressure:{socket.gethostname()}:{resource}:{int(since * 1000)}",
        )  # fmt: skip
        self.metrics.pressure_raised.labels(resource).inc()
        log.warning("resource pressure: %s", title)

    async def check_config(self) -> None:
        stale = self.watch.stale()
        self.metrics.config_stale.set(1 if stale else 0)
        if await ring.set_stale(self.ctx.redis, stale):
            log.info("llmwatch.toml %s", "changed on disk" if stale else "matches the loaded one")
