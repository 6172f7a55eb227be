"""The dashboard: static files served by the stream gateway at `/`."""

from __future__ import annotations

from fastapi import APIRouter

from shared.service import Context


def create_router(ctx: Context) -> APIRouter:
    return APIRouter(tags=["dashboard"])
