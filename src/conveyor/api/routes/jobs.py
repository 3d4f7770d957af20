"""``/api/jobs``: submit one or many, read one (live, then history), search the history,
cancel, retry, delete."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel

from conveyor.api import argsearch, views
from conveyor.api.deps import (
    IDEMPOTENCY_HEADER,
    Admin,
    Caller,
    Submission,
    body_openapi,
    submission,
)
from conveyor.api.direct import Endpoint
from conveyor.api.errors import ApiError, responses
from conveyor.api.models import (
    NAME_PATTERN,
    BulkResult,
    BulkSubmission,
    JobAction,
    JobOut,
    JobPageOut,
    JobSubmission,
    SubmittedJob,
)
from conveyor.job import Status
from conveyor.store.base import SortField

router = APIRouter(prefix="/api/jobs", tags=["jobs"])

JobIdPath = Annotated[str, Path(pattern=NAME_PATTERN, description="The job's id")]
OneJob = Annotated[Submission[JobSubmission], Depends(submission(JobSubmission))]
ManyJobs = Annotated[Submission[BulkSubmission], Depends(submission(BulkSubmission))]
SUBMIT_ERRORS = responses(400, 401, 403, 408, 409, 413, 415, 422, 429, 503)
READ_ERRORS = responses(401, 403, 404, 422, 429, 503)


def _json(content: dict[str, Any], status: int) -> Response:
    """Built by hand: the response models document the shape, validating it again per job
    would cost more than writing it."""
    return Response(orjson.dumps(content), status_code=status, media_type="application/json")


@router.post(
    "", status_code=201, response_model=SubmittedJob, summary="Submit a job",
    responses={200: {"model": SubmittedJob, "description": "An existing job returned for "
                     "the Idempotency-Key"}, **SUBMIT_ERRORS},
    openapi_extra=body_openapi(JobSubmission, headers=[IDEMPOTENCY_HEADER]),
)
async def submit(sub: OneJob) -> Response:
    gateway, principal = sub.call.gateway, sub.call.principal
    await views.check_queue(gateway, sub.body)
    spec = views.submission_spec(sub.body, principal, idempotency_key=sub.idempotency_key,
                                 scope=gateway.settings.idempotency_scope)
    handle = await gateway.submitter.submit(spec)
    answer = await views.submitted(gateway, handle, principal)
    response = _json(answer, 201 if handle.created else 200)
    response.headers["Location"] = f"/api/jobs/{handle.id}"
    return response


@router.post(
    "/bulk", status_code=201, response_model=BulkResult, summary="Submit many jobs",
    description="All or nothing: every item is validated before any is written; the first "
    "invalid item is named in `field` (e.g. `jobs[3].args.width`).",
    responses=SUBMIT_ERRORS, openapi_extra=body_openapi(BulkSubmission),
)
async def submit_bulk(sub: ManyJobs) -> Response:
    gateway, principal = sub.call.gateway, sub.call.principal
    views.check_bulk(sub.body.jobs, gateway.settings.bulk_max)
    # Per item, only what it needs: most items name no queue and create their job, and an
    # await per item per step was a few percent of a 1,000-job request.
    for i, job in enumerate(sub.body.jobs):
        if job.queue is not None:
            await views.check_queue(gateway, job, f"jobs[{i}].")
    specs = [views.submission_spec(job, principal, f"jobs[{i}].",
                                   scope=gateway.settings.idempotency_scope)
             for i, job in enumerate(sub.body.jobs)]
    handles = await gateway.submitter.submit_many(specs)  # validates in slices: reads go on
    answers = [views.created(h) if h.created else
               await views.submitted(gateway, h, principal, f"jobs[{i}].idempotency_key")
               for i, h in enumerate(handles)]
    return _json({"jobs": answers}, 201)


# Served by the gateway middleware itself, with these body models (see conveyor.api.direct);
# the declarations above document them and serve a path the middleware does not match.
DIRECT: dict[str, tuple[type[BaseModel], Endpoint]] = {
    "/api/jobs": (JobSubmission, submit), "/api/jobs/bulk": (BulkSubmission, submit_bulk)}


@router.get("", response_model=JobPageOut, summary="Search the job history",
            responses=READ_ERRORS)
async def search(
    request: Request,
    call: Caller,
    status: Annotated[list[Status] | None, Query(description="Any of these statuses")] = None,
    queue: Annotated[str | None, Query(pattern=NAME_PATTERN)] = None,
    type: Annotated[str | None, Query(pattern=NAME_PATTERN)] = None,
    text: Annotated[str | None, Query(min_length=1, max_length=200,
                                      description="Substring of any error of the job")] = None,
    since_ms: Annotated[int | None, Query(ge=0, le=2**53)] = None,
    until_ms: Annotated[int | None, Query(ge=0, le=2**53)] = None,
    sort: SortField = "submitted_ms",
    order: Literal["asc", "desc"] = "desc",
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    id_prefix: Annotated[str | None, Query(pattern=NAME_PATTERN,
                                           description="Jobs whose id starts so")] = None,
    arg: Annotated[list[str] | None, Query(
        max_length=5, description="key=value: equality on a top-level argument (also "
        "?args.key=value); JSON scalars, else strings. Looks through 20,000 jobs that "
        "match the other filters per page: an empty page may have a next_cursor")] = None,
) -> JobPageOut:
    args = argsearch.parse(request.query_params.multi_items(), arg)
    query = {"status": status, "queue": queue, "type": type, "text": text,
             "since_ms": since_ms, "until_ms": until_ms, "sort": sort,
             "descending": order == "desc", "limit": limit, "cursor": cursor,
             "id_prefix": id_prefix, "args": args}
    page = await views.search(call.store, call.principal, query)
    return JobPageOut(items=[JobOut.from_stored(j) for j in page.items],
                      next_cursor=page.next_cursor)


@router.get("/{job_id}", response_model=JobOut, summary="Get a job", responses=READ_ERRORS)
async def get_job(job_id: JobIdPath, call: Caller) -> JobOut:
    job = await views.find_job(call.gateway, job_id)
    if job is None or not views.owns(call.principal, job):
        raise ApiError(404, "job_not_found", f"job {job_id!r} not found")
    return job


@router.post("/{job_id}/cancel", response_model=JobAction, summary="Cancel a job",
             description="A waiting job ends `canceled`; a running one gets "
             "`cancel_requested` and its worker stops it.",
             responses=responses(401, 403, 404, 409, 422, 429, 503))
async def cancel(job_id: JobIdPath, call: Admin) -> JobAction:
    return JobAction(id=job_id, status=await call.conveyor.cancel(job_id))


@router.post("/{job_id}/retry", response_model=JobAction, summary="Retry a dead or canceled job",
             responses=responses(401, 403, 404, 409, 422, 429, 503))
async def retry(job_id: JobIdPath, call: Admin) -> JobAction:
    await call.conveyor.retry(job_id)
    return JobAction(id=job_id, status="queued")


@router.delete("/{job_id}", status_code=204, summary="Delete a job that is not running",
               response_class=Response, responses=responses(401, 403, 404, 409, 422, 429, 503))
async def delete(job_id: JobIdPath, call: Admin) -> Response:
    await call.conveyor.delete(job_id)
    return Response(status_code=204)
