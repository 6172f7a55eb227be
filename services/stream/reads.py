"""Read APIs over the aggregator's state: history, stats, runs, notifications, dead letters."""

from __future__ import annotations

from fastapi import APIRouter

from shared.service import Context


def create_router(ctx: Context) -> APIRouter:
    return APIRouter(tags=["read"])
