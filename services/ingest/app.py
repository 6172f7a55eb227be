"""The ingest service: create_service(ctx) -> Service."""

from __future__ import annotations

from shared.service import Context, Service


def create_service(ctx: Context) -> Service:
    return Service(name="ingest")
