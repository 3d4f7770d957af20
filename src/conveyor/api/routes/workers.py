"""``/api/workers``: workers known from their heartbeats (``alive`` false once silent), and
the quiet control (claim nothing new, finish the running jobs), carried over Redis."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from pydantic import Field

from conveyor import control
from conveyor import inspect as live
from conveyor.api.deps import Admin, Viewer
from conveyor.api.errors import ApiError, responses
from conveyor.api.models import NAME_PATTERN
from conveyor.inspect import WorkerInfo

router = APIRouter(prefix="/api/workers", tags=["workers"])

WorkerPath = Annotated[str, Path(pattern=NAME_PATTERN, description="The worker's id")]


class WorkerOut(WorkerInfo):
    quiet: bool = Field(False, description="Asked to claim no new job (it finishes its own)")


@router.get("", response_model=list[WorkerOut], summary="Workers and what they run",
            responses=responses(401, 403, 429, 503))
async def list_workers(call: Viewer) -> list[WorkerOut]:
    workers = await live.workers(call.conveyor)
    quiet = await control.quiet_workers(call.conveyor, [w.id for w in workers])
    return [WorkerOut(**w.model_dump(), quiet=w.id in quiet) for w in workers]


async def _set_quiet(call: Admin, worker_id: str, quiet: bool) -> WorkerOut:
    for worker in await live.workers(call.conveyor):
        if worker.id == worker_id:
            await control.set_quiet(call.conveyor, worker_id, quiet)
            return WorkerOut(**worker.model_dump(), quiet=quiet)
    raise ApiError(404, "worker_not_found", f"no worker {worker_id!r} has a heartbeat")


@router.post("/{worker_id}/quiet", response_model=WorkerOut, summary="Quiet a worker",
             description="It claims no new job and finishes those it runs (until resumed, or "
             "7 days).", responses=responses(401, 403, 404, 422, 429, 503))
async def quiet(worker_id: WorkerPath, call: Admin) -> WorkerOut:
    return await _set_quiet(call, worker_id, True)


@router.post("/{worker_id}/resume", response_model=WorkerOut, summary="Resume a quiet worker",
             responses=responses(401, 403, 404, 422, 429, 503))
async def resume(worker_id: WorkerPath, call: Admin) -> WorkerOut:
    return await _set_quiet(call, worker_id, False)
