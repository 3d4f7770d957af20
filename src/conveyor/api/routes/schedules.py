"""``/api/schedules``: cron schedules over ``app.schedules`` (list, get, put, pause, resume,
run now, delete), each with its next fire times and the outcome of the job it submitted
last; and ``/api/delayed``: delayed jobs by due time, with run now (cancel is
``POST /api/jobs/{id}/cancel``)."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from conveyor import delayed
from conveyor.api import views
from conveyor.api.deps import Admin, Viewer
from conveyor.api.errors import ApiError, responses
from conveyor.api.models import NAME_PATTERN, JobId, JobOut
from conveyor.app import Conveyor
from conveyor.scheduler.cron import Schedule, ScheduleBook, ScheduleNotFound, parse_schedule

router = APIRouter(prefix="/api/schedules", tags=["schedules"])
delayed_router = APIRouter(prefix="/api/delayed", tags=["schedules"])

NamePath = Annotated[str, Path(pattern=NAME_PATTERN, description="Schedule name")]
READ_ERRORS = responses(401, 403, 404, 422, 429, 503)
NEXT_RUNS = 5


class ScheduleIn(BaseModel):
    """A schedule's definition (the name is in the path)."""

    model_config = ConfigDict(strict=True, extra="forbid", json_schema_extra={"examples": [
        {"type": "report", "cron": "0 7 * * 1-5", "tz": "Europe/Paris", "args": {"kind": "daily"}}
    ]})

    type: str = Field(pattern=NAME_PATTERN)
    cron: str = Field(min_length=1, max_length=120,
                      description="5 fields, or 6 with seconds (croniter)")
    args: dict[str, Any] = {}
    tz: str = Field("UTC", max_length=64)
    queue: str | None = Field(None, pattern=NAME_PATTERN)
    priority: str | None = Field(None, pattern="^(high|normal|low)$")
    misfire: str = Field("once", pattern="^(skip|once|all)$")
    max_catchup: int = Field(100, ge=1, le=10_000)
    paused: bool = False


class LastRun(BaseModel):
    job_id: str
    status: str | None = Field(None, description="The job's status; null once it is gone")
    error: str | None = None
    finished_ms: int | None = None


class ScheduleOut(BaseModel):
    name: str
    type: str
    cron: str
    tz: str
    args: dict[str, Any]
    queue: str | None
    priority: str | None
    misfire: str
    max_catchup: int
    paused: bool
    next_runs_ms: list[int] = Field(description="The next five fire times (even when paused)")
    last_tick_ms: int | None = None
    last_run: LastRun | None = None
    last_error: str | None = Field(None, description="Why it cannot fire, while it cannot")


class RunNow(BaseModel):
    name: str
    job_id: str


class DelayedPage(BaseModel):
    total: int = Field(description="Delayed jobs in the queues read")
    items: list[JobOut] = Field(description="Soonest due first")


def _book(call: Viewer | Admin) -> ScheduleBook:
    return call.conveyor.schedules


async def _describe(call: Viewer | Admin, schedules: list[Schedule]) -> list[ScheduleOut]:
    book = _book(call)
    ticks, errors, runs = await book.last_ticks(), await book.last_errors(), await book.last_runs()
    now = int(time.time() * 1000)
    out = []
    for s in schedules:
        run = runs.get(s.name)
        out.append(ScheduleOut(
            **s.model_dump(), next_runs_ms=s.ticks_after(now, 2**62, NEXT_RUNS),
            last_tick_ms=ticks.get(s.name),
            last_run=await _last_run(call, run) if run else None,
            last_error=(errors.get(s.name) or {}).get("error")))
    return out


async def _last_run(call: Viewer | Admin, job_id: str) -> LastRun:
    job = await views.find_job(call.gateway, job_id, with_history=False)
    if job is None:
        return LastRun(job_id=job_id)
    return LastRun(job_id=job_id, status=job.status, finished_ms=job.finished_ms,
                   error=job.error if job.status in ("dead", "retrying", "canceled") else None)


async def _one(call: Viewer | Admin, name: str) -> ScheduleOut:
    try:
        schedule = await _book(call).get(name)
    except ScheduleNotFound:
        raise ApiError(404, "schedule_not_found", f"schedule {name!r} not found") from None
    (out,) = await _describe(call, [schedule])
    return out


@router.get("", response_model=list[ScheduleOut], summary="Every cron schedule",
            responses=responses(401, 403, 429, 503))
async def list_schedules(call: Viewer) -> list[ScheduleOut]:
    return await _describe(call, (await _book(call).definitions())[0])


@router.get("/{name}", response_model=ScheduleOut, summary="One schedule", responses=READ_ERRORS)
async def get_schedule(name: NamePath, call: Viewer) -> ScheduleOut:
    return await _one(call, name)


@router.put("/{name}", response_model=ScheduleOut, summary="Create or replace a schedule",
            description="The job type and arguments are validated as a submission would be.",
            responses=responses(400, 401, 403, 422, 429, 503))
async def put_schedule(name: NamePath, body: ScheduleIn, call: Admin) -> ScheduleOut:
    schedule = parse_schedule({**body.model_dump(), "name": name})
    await _book(call).put(schedule)
    return await _one(call, name)


async def _pause(call: Admin, name: str, paused: bool) -> ScheduleOut:
    try:
        await _book(call).set_paused(name, paused)
    except ScheduleNotFound:
        raise ApiError(404, "schedule_not_found", f"schedule {name!r} not found") from None
    return await _one(call, name)


@router.post("/{name}/pause", response_model=ScheduleOut, summary="Pause a schedule",
             responses=READ_ERRORS)
async def pause(name: NamePath, call: Admin) -> ScheduleOut:
    return await _pause(call, name, True)


@router.post("/{name}/resume", response_model=ScheduleOut, summary="Resume a schedule",
             description="Missed ticks follow the schedule's misfire policy.",
             responses=READ_ERRORS)
async def resume(name: NamePath, call: Admin) -> ScheduleOut:
    return await _pause(call, name, False)


@router.post("/{name}/run", response_model=RunNow, summary="Submit the schedule's job now",
             description="Does not move its ticks.", responses=READ_ERRORS)
async def run_now(name: NamePath, call: Admin) -> RunNow:
    try:
        return RunNow(name=name, job_id=await _book(call).run_now(name))
    except ScheduleNotFound:
        raise ApiError(404, "schedule_not_found", f"schedule {name!r} not found") from None


@router.delete("/{name}", status_code=204, response_class=Response,
               summary="Delete a schedule", responses=READ_ERRORS)
async def delete(name: NamePath, call: Admin) -> Response:
    try:
        await _book(call).delete(name)
    except ScheduleNotFound:
        raise ApiError(404, "schedule_not_found", f"schedule {name!r} not found") from None
    return Response(status_code=204)


async def _queues(conveyor: Conveyor, queue: str | None) -> list[str]:
    return [queue] if queue else sorted(await conveyor.queues())


@delayed_router.get("", response_model=DelayedPage, summary="Delayed jobs, soonest due first",
                    responses=responses(401, 403, 404, 422, 429, 503))
async def list_delayed(
    call: Viewer,
    queue: Annotated[str | None, Query(pattern=NAME_PATTERN)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> DelayedPage:
    if queue is not None:
        await views.known_queue(call.gateway, queue)
    queues = await _queues(call.conveyor, queue)
    jobs = await delayed.due_order(call.conveyor, queues, limit)
    return DelayedPage(total=await delayed.count(call.conveyor, queues),
                       items=[JobOut.from_live(j) for j in jobs])


@delayed_router.post("/{job_id}/run", response_model=JobOut, summary="Make a delayed job due now",
                     responses=responses(401, 403, 404, 409, 422, 429, 503))
async def run_delayed(
    job_id: Annotated[JobId, Path(pattern=NAME_PATTERN)], call: Admin
) -> JobOut:
    job = await call.conveyor.get_job(job_id)
    if job is None:
        raise ApiError(404, "job_not_found", f"job {job_id!r} not found")
    if job.status != "delayed" or not await delayed.run_now(call.conveyor, job.queue, job_id):
        raise ApiError(409, "not_delayed", f"job {job_id!r} is {job.status}, not delayed")
    return JobOut.from_live(job)
