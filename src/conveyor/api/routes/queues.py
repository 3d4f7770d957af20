"""``/api/queues``: depths and throughput, pause and resume, and each queue's dead-letter
queue (list, retry all or some, purge all or some)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel

from conveyor import inspect as live
from conveyor.api import views
from conveyor.api.deps import Admin, Viewer, body_openapi, json_body
from conveyor.api.errors import ApiError, responses
from conveyor.api.models import NAME_PATTERN, DlqPage, DlqResult, DlqSelection, JobOut, QueueOut

router = APIRouter(prefix="/api/queues", tags=["queues"])

QueuePath = Annotated[str, Path(pattern=NAME_PATTERN, description="Queue name")]
SelectionBody = Annotated[DlqSelection, Depends(json_body(DlqSelection))]
READ_ERRORS = responses(401, 403, 404, 422, 429, 503)
WRITE_ERRORS = responses(400, 401, 403, 404, 408, 413, 415, 422, 429, 503)


class QueueState(BaseModel):
    name: str
    paused: bool


@router.get("", response_model=list[QueueOut], summary="Queues with depths and throughput",
            responses=responses(401, 403, 429, 503))
async def list_queues(call: Viewer) -> list[QueueOut]:
    return await views.queues(call.gateway)


@router.post("/{queue}/pause", response_model=QueueState, summary="Pause a queue",
             description="Workers stop claiming from it; running jobs go on.",
             responses=READ_ERRORS)
async def pause(queue: QueuePath, call: Admin) -> QueueState:
    await call.conveyor.pause(await views.known_queue(call.gateway, queue))
    return QueueState(name=queue, paused=True)


@router.post("/{queue}/resume", response_model=QueueState, summary="Resume a queue",
             responses=READ_ERRORS)
async def resume(queue: QueuePath, call: Admin) -> QueueState:
    await call.conveyor.resume(await views.known_queue(call.gateway, queue))
    return QueueState(name=queue, paused=False)


@router.get("/{queue}/dlq", response_model=DlqPage, summary="Dead jobs of a queue, newest first",
            responses=READ_ERRORS)
async def dead_letters(
    queue: QueuePath, call: Viewer,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> DlqPage:
    (stats,) = await live.queue_stats(call.conveyor, [await views.known_queue(call.gateway, queue)])
    jobs = await live.dead_letters(call.conveyor, queue, offset, limit)
    return DlqPage(queue=queue, total=stats.dead, items=[JobOut.from_live(j) for j in jobs])


def _selection(body: DlqSelection) -> list[str] | None:
    if body.all == (body.ids is not None):
        raise ApiError(422, "invalid_selection", "send either ids (a list of job ids) or "
                       "all: true", "ids")
    return body.ids


@router.post("/{queue}/dlq/retry", response_model=DlqResult, summary="Requeue dead jobs",
             responses=WRITE_ERRORS, openapi_extra=body_openapi(DlqSelection))
async def retry_dead(
    queue: QueuePath, call: Admin, body: SelectionBody
) -> DlqResult:
    ids = _selection(body)
    count = await call.conveyor.retry_dead(await views.known_queue(call.gateway, queue), ids)
    return DlqResult(queue=queue, count=count)


@router.post("/{queue}/dlq/purge", response_model=DlqResult, summary="Delete dead jobs",
             responses=WRITE_ERRORS, openapi_extra=body_openapi(DlqSelection))
async def purge_dead(
    queue: QueuePath, call: Admin, body: SelectionBody
) -> DlqResult:
    ids = _selection(body)
    count = await call.conveyor.purge_dead(await views.known_queue(call.gateway, queue), ids)
    return DlqResult(queue=queue, count=count)
