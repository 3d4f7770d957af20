"""What the routes answer, assembled from the library (live state) and the history store.

Routes stay one call deep: each calls one function here or one library method. Store errors
become 503 ``store_unavailable`` (or 422 for a query the store refuses), never a 500.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, TypeVar

from conveyor import inspect as live
from conveyor.api.errors import ApiError
from conveyor.api.models import (
    RESERVED_META,
    BulkJob,
    JobOut,
    JobSubmission,
    QueueOut,
    Readiness,
    Throughput,
)
from conveyor.store.base import JobPage, JobQuery

if TYPE_CHECKING:
    from conveyor.api.auth import Principal
    from conveyor.api.gateway import Gateway
    from conveyor.handle import JobHandle
    from conveyor.store.base import Store, StoredJob

log = logging.getLogger("conveyor.api")
T = TypeVar("T")
THROUGHPUT_WINDOW_MS = 60_000


async def store_call(store: Store, call: Awaitable[T], field: str | None = None) -> T:
    """Await a store query: ValueError -> 422 naming ``field``, anything else -> 503."""
    try:
        return await call
    except ValueError as exc:
        raise ApiError(422, "invalid_query", str(exc), field) from None
    except Exception as exc:
        log.warning("history store error: %r", exc)
        raise ApiError(503, "store_unavailable", f"the history store failed: {exc}") from None


# -- submission --------------------------------------------------------------------------------

def submission_spec(item: JobSubmission, principal: Principal, field: str = "") -> dict[str, Any]:
    """The library's submission mapping for one validated item, owned by ``principal``."""
    meta = dict(item.meta or {})
    for reserved in RESERVED_META:
        if reserved in meta:
            raise ApiError(422, "reserved_field", f"{field}meta.{reserved} is set by the API",
                           f"{field}meta.{reserved}")
    meta["api_key_id"] = principal.id
    spec: dict[str, Any] = {"type": item.type, "args": item.args, "meta": meta}
    for name in ("queue", "priority", "delay", "run_at", "max_attempts", "timeout"):
        value = getattr(item, name)
        if value is not None:
            spec[name] = value
    if isinstance(item, BulkJob) and item.idempotency_key is not None:
        spec["idempotency_key"] = item.idempotency_key
    return spec


def check_bulk(jobs: list[BulkJob], cap: int) -> None:
    """422 for more jobs than ``cap`` or an idempotency key used twice in one batch."""
    if len(jobs) > cap:
        raise ApiError(422, "too_many_jobs", f"{len(jobs)} jobs in one request; the cap is "
                       f"{cap}: split the batch", "jobs")
    seen: dict[str, int] = {}
    for i, job in enumerate(jobs):
        key = job.idempotency_key
        if key is None:
            continue
        if key in seen:
            field = f"jobs[{i}].idempotency_key"
            raise ApiError(422, "duplicate_idempotency_key",
                           f"{field} repeats jobs[{seen[key]}].idempotency_key", field)
        seen[key] = i


async def submitted(gateway: Gateway, handle: JobHandle) -> dict[str, Any]:
    """The ``SubmittedJob`` answer for one handle (a plain dict: bulk answers hold thousands);
    for an existing job returned by an idempotency key, its current status."""
    status = handle.status
    if not handle.created:
        job = await find_job(gateway, handle.id, with_history=False)
        status = job.status.value if job else "unknown"
    return {"id": handle.id, "status": status, "queue": handle.queue, "created": handle.created}


# -- jobs --------------------------------------------------------------------------------------

async def find_job(gateway: Gateway, job_id: str, with_history: bool = True) -> JobOut | None:
    """Live state from Redis (with the attempt timeline from the store), else the history."""
    job = await gateway.conveyor.get_job(job_id)
    stored = await _stored(gateway, job_id) if with_history else None
    if job is not None:
        return JobOut.from_live(job, stored)
    if stored is None and not with_history:
        stored = await _stored(gateway, job_id)
    return JobOut.from_stored(stored) if stored is not None else None


async def _stored(gateway: Gateway, job_id: str) -> StoredJob | None:
    if gateway.store is None:
        return None
    return await store_call(gateway.store, gateway.store.get_job(job_id))


def owns(principal: Principal, job: JobOut) -> bool:
    return principal.reads_all or job.meta.get("api_key_id") == principal.id


async def search(store: Store, principal: Principal, query: dict[str, Any]) -> JobPage:
    """A page of the history; a producer sees only the jobs its key submitted."""
    if not principal.reads_all:
        query = {**query, "api_key_id": principal.id}
    return await store_call(store, store.search(JobQuery(**query)), "query.cursor")


# -- queues ------------------------------------------------------------------------------------

async def queues(gateway: Gateway, names: list[str] | None = None) -> list[QueueOut]:
    stats = await live.queue_stats(gateway.conveyor, names)
    rates = await asyncio.gather(*(throughput(gateway, q.name) for q in stats))
    return [QueueOut.from_stats(q, r) for q, r in zip(stats, rates, strict=True)]


async def throughput(gateway: Gateway, queue: str) -> Throughput | None:
    """Completed and failed jobs per second over the last minute, from the history."""
    if gateway.store is None:
        return None
    until = int(time.time() * 1000)
    try:
        (bucket,) = await gateway.store.time_series(
            until - THROUGHPUT_WINDOW_MS, until, THROUGHPUT_WINDOW_MS, queue=queue)
    except Exception as exc:  # depths are still worth answering
        log.warning("history store error (throughput of %s): %r", queue, exc)
        return None
    window = THROUGHPUT_WINDOW_MS / 1000
    return Throughput(window_seconds=int(window), completed_per_second=bucket.completed / window,
                      failed_per_second=bucket.failed / window)


async def known_queue(gateway: Gateway, queue: str) -> str:
    """``queue`` if jobs were ever submitted to it or a job type uses it, else 404."""
    if queue in await gateway.conveyor.queues():
        return queue
    catalog = await gateway.conveyor.catalog()
    if any(isinstance(e, dict) and e.get("queue") == queue for e in catalog.values()):
        return queue
    raise ApiError(404, "queue_not_found", f"queue {queue!r} is unknown: no job was ever "
                   "submitted to it and no job type uses it")


# -- probes ------------------------------------------------------------------------------------

PROBE_TIMEOUT = 2.0


async def readiness(gateway: Gateway) -> Readiness:
    """Whether Redis answers PING and the store a one-row query, within ``PROBE_TIMEOUT``."""
    redis = await _probe(gateway.conveyor.redis.ping())
    if gateway.store is None:
        store = gateway.store_error or "not configured"
    else:
        store = await _probe(gateway.store.search(JobQuery(limit=1)))
    ok = redis == "ok" and store == "ok"
    return Readiness(status="ready" if ok else "unavailable", redis=redis, store=store)


async def _probe(call: Awaitable[Any]) -> str:
    try:
        async with asyncio.timeout(PROBE_TIMEOUT):
            await call
    except Exception as exc:  # any failure means "not ready", with its reason
        return f"unavailable: {exc!r}"
    return "ok"
