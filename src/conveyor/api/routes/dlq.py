"""``/api/dlq``: dead-letter triage on the server. Find a queue's dead jobs by type, error
text and time of death, page through every match, and retry or purge all that match (or
given ids) in a background run whose progress the caller polls."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from conveyor import triage
from conveyor.api import views
from conveyor.api.deps import Admin, Viewer
from conveyor.api.errors import ApiError, responses
from conveyor.api.models import NAME_PATTERN, JobId, JobOut
from conveyor.api.triage import Action, Run, TriageRuns

router = APIRouter(prefix="/api/dlq", tags=["queues"])

QueuePath = Annotated[str, Path(pattern=NAME_PATTERN, description="Queue name")]
READ_ERRORS = responses(401, 403, 404, 422, 429, 503)
WRITE_ERRORS = responses(400, 401, 403, 404, 413, 415, 422, 429, 503)


async def _runs(request: Request) -> TriageRuns:
    runs: TriageRuns | None = getattr(request.app.state, "triage_runs", None)
    if runs is None:
        runs = request.app.state.triage_runs = TriageRuns()
    return runs


Runs = Annotated[TriageRuns, Depends(_runs)]


class DeadMatches(BaseModel):
    queue: str
    total: int = Field(description="Dead jobs in the queue's dead-letter queue")
    matched: int = Field(description="Dead jobs that match the filter")
    offset: int
    items: list[JobOut]


class DlqTriage(BaseModel):
    """Either ``ids`` (those dead jobs) or ``filter`` (every dead job that matches it; ``{}``
    for all)."""

    model_config = ConfigDict(strict=True, extra="forbid", json_schema_extra={"examples": [
        {"filter": {"text": "timeout", "type": "resize"}}, {"ids": ["6f1c0c1e0e0b4b8f"]}]})

    ids: list[JobId] | None = Field(None, min_length=1, max_length=10_000)
    filter: triage.DeadFilter | None = None


class TriageRun(BaseModel):
    """A retry or purge run: ``done`` of ``matched`` jobs handled so far, ``changed`` of them
    requeued or deleted (a job that left the DLQ meanwhile is left alone)."""

    id: str
    queue: str
    action: Action
    state: str = Field(description="running, done or failed")
    matched: int
    done: int
    changed: int
    error: str | None = None

    @classmethod
    def of(cls, run: Run) -> TriageRun:
        return cls(id=run.id, queue=run.queue, action=run.action, state=run.state,
                   matched=run.matched, done=run.done, changed=run.changed, error=run.error)


def _filter(type: str | None, text: str | None, since_ms: int | None,
            until_ms: int | None) -> triage.DeadFilter:
    return triage.DeadFilter(type=type, text=text, since_ms=since_ms, until_ms=until_ms)


@router.get("/{queue}", response_model=DeadMatches, summary="Find dead jobs of a queue",
            description="Newest death first. `matched` counts every match (read from Redis in "
            "chunks: bounded by the size of the dead-letter queue).", responses=READ_ERRORS)
async def find(
    queue: QueuePath, call: Viewer,
    type: Annotated[str | None, Query(pattern=NAME_PATTERN)] = None,
    text: Annotated[str | None, Query(min_length=1, max_length=200,
                                      description="Substring of the last error")] = None,
    since_ms: Annotated[int | None, Query(ge=0, le=2**53, description="Died at or after")] = None,
    until_ms: Annotated[int | None, Query(ge=0, le=2**53, description="Died before")] = None,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> DeadMatches:
    name = await views.known_queue(call.gateway, queue)
    total = await call.conveyor.redis.zcard(call.conveyor.keys.queue(name).dead)
    matched, jobs = await triage.page(call.conveyor, name,
                                      _filter(type, text, since_ms, until_ms), offset, limit)
    return DeadMatches(queue=name, total=total, matched=matched, offset=offset,
                       items=[JobOut.from_live(j) for j in jobs])


async def _start(call: Admin, runs: TriageRuns, queue: str, body: DlqTriage,
                 action: Action) -> TriageRun:
    if (body.ids is None) == (body.filter is None):
        raise ApiError(422, "invalid_selection", "send either ids (a list of dead job ids) or "
                       "filter (type, text, since_ms, until_ms; {} for every dead job)", "ids")
    name = await views.known_queue(call.gateway, queue)
    if body.ids is not None:
        ids = await triage.in_dlq(call.conveyor, name, body.ids)
    else:
        ids = await triage.matching(call.conveyor, name, body.filter or triage.DeadFilter())
    return TriageRun.of(runs.start(call.conveyor, name, action, ids))


@router.post("/{queue}/retry", status_code=202, response_model=TriageRun,
             summary="Requeue dead jobs by ids or filter",
             description="Answers at once with how many matched; the jobs are requeued in "
             "chunks of 500 in the background: poll `GET /api/dlq/runs/{id}`.",
             responses=WRITE_ERRORS)
async def retry(queue: QueuePath, body: DlqTriage, call: Admin, runs: Runs) -> TriageRun:
    return await _start(call, runs, queue, body, "retry")


@router.post("/{queue}/purge", status_code=202, response_model=TriageRun,
             summary="Delete dead jobs by ids or filter",
             description="Like retry: answers with how many matched, deletes in chunks.",
             responses=WRITE_ERRORS)
async def purge(queue: QueuePath, body: DlqTriage, call: Admin, runs: Runs) -> TriageRun:
    return await _start(call, runs, queue, body, "purge")


@router.get("/runs/{run_id}", response_model=TriageRun, summary="Progress of a triage run",
            description="Known to the API process that started it, for 10 minutes after it "
            "ends.", responses=READ_ERRORS)
async def progress(
    run_id: Annotated[str, Path(pattern=r"^[0-9a-f]{16}$")], call: Viewer, runs: Runs
) -> TriageRun:
    run = runs.get(run_id)
    if run is None:
        raise ApiError(404, "run_not_found", f"no triage run {run_id!r} in this API process")
    return TriageRun.of(run)
