"""``/api/workers``: workers known from their heartbeats (``alive`` false once silent)."""

from __future__ import annotations

from fastapi import APIRouter

from conveyor import inspect as live
from conveyor.api.deps import Viewer
from conveyor.api.errors import responses
from conveyor.inspect import WorkerInfo

router = APIRouter(prefix="/api/workers", tags=["workers"])


@router.get("", response_model=list[WorkerInfo], summary="Workers and what they run",
            responses=responses(401, 403, 429, 503))
async def list_workers(call: Viewer) -> list[WorkerInfo]:
    return await live.workers(call.conveyor)
