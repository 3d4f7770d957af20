"""What the routes answer, assembled from the library (live state) and the history store.

Routes stay one call deep: each calls one function here or one library method. Store errors
become 503 ``store_unavailable`` (or 422 for a query the store refuses), never a 500.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar, cast

from conveyor import inspect as live
from conveyor.api import tenancy
from conveyor.api.errors import ApiError
from conveyor.api.models import (
    RESERVED_META,
    BulkJob,
    JobOut,
    JobSubmission,
    QueueOut,
    Readiness,
    Throughput,
    allowed_queues,
)
from conveyor.broker.keys import NAME_RE
from conveyor.store.base import JobPage, JobQuery, decode_cursor
from conveyor.submit import MAX_DELAY_SECONDS
from conveyor.supervise import Supervisor

if TYPE_CHECKING:
    from conveyor.api.auth import Principal
    from conveyor.api.gateway import Gateway
    from conveyor.api.tenancy import Scope
    from conveyor.handle import JobHandle
    from conveyor.store.base import Store, StoredJob

log = logging.getLogger("conveyor.api")
T = TypeVar("T")
THROUGHPUT_WINDOW_MS = 60_000


# Errors of a store that cannot be reached or is busy: the only ones that mean 503. Drivers
# are optional, so their classes are named, not imported.
UNAVAILABLE_CLASSES = frozenset({
    "ConnectionFailure", "AutoReconnect", "ServerSelectionTimeoutError", "NetworkTimeout",
    "ExecutionTimeout", "NotPrimaryError", "WTimeoutError", "WaitQueueTimeoutError"})
UNAVAILABLE_MESSAGES = ("database is locked", "database table is locked", "unable to open",
                        "disk i/o error", "readonly database", "database or disk is full")


def store_unavailable(exc: BaseException) -> bool:
    """Whether a store error says the store is down or busy (not that the query was bad)."""
    if isinstance(exc, OSError | TimeoutError | ConnectionError):
        return True
    if any(cls.__name__ in UNAVAILABLE_CLASSES for cls in type(exc).__mro__):
        return True
    if type(exc).__name__ == "OperationalError":  # sqlite3: also syntax errors, so by message
        return str(exc).lower().startswith(UNAVAILABLE_MESSAGES)
    return False


async def store_call(store: Store, call: Awaitable[T], field: str | None = None) -> T:
    """Await a store query: ValueError -> 422 naming ``field``; an outage -> 503; anything
    else is a bug (input is validated before the store sees it) and answers 500, logged."""
    try:
        return await call
    except (ValueError, OverflowError) as exc:
        raise ApiError(422, "invalid_query", str(exc), field) from None
    except Exception as exc:
        if not store_unavailable(exc):
            raise
        log.warning("history store unavailable: %r", exc)
        raise ApiError(503, "store_unavailable", f"the history store failed: {exc}") from None


# -- submission --------------------------------------------------------------------------------

def submission_spec(
    item: JobSubmission, principal: Principal, field: str = "", *,
    idempotency_key: str | None = None, scope: Scope = "key",
) -> dict[str, Any]:
    """The library's submission mapping for one validated item, owned by ``principal``; its
    idempotency key (the header's, or a bulk item's) scoped to the caller."""
    meta = {}
    if item.meta:  # (runs per bulk item: the checks an item does not need are skipped)
        meta.update(item.meta)
        for reserved in RESERVED_META:
            if reserved in meta:
                raise ApiError(422, "reserved_field", f"{field}meta.{reserved} is set by the "
                               "API", f"{field}meta.{reserved}")
    tenancy.stamp(principal, meta)
    spec: dict[str, Any] = {"type": item.type, "args": item.args, "meta": meta}
    if item.model_fields_set != _TYPE_AND_ARGS:
        if item.run_at is not None:
            check_run_at(item.run_at, f"{field}run_at")
        for name in ("queue", "priority", "delay", "run_at", "max_attempts", "timeout"):
            value = getattr(item, name)
            if value is not None:
                spec[name] = value
    if isinstance(item, BulkJob) and item.idempotency_key is not None:
        idempotency_key = item.idempotency_key
    if idempotency_key is not None:
        spec["idempotency_key"] = tenancy.scoped_key(principal, idempotency_key, scope)
    return spec


_TYPE_AND_ARGS = frozenset({"type", "args"})


async def check_queue(gateway: Gateway, item: JobSubmission, field: str = "") -> None:
    """A submission may name only its job type's queue or one declared for the type
    (``@app.job(queues=[...])``): 422 ``queue_not_allowed`` listing them. An unknown type is
    left to the library, which names it."""
    if item.queue is None:
        return
    conveyor = gateway.conveyor
    local = conveyor.registry.get(item.type)
    if local is not None:
        allowed = list(local.all_queues)
    else:
        entry = await conveyor.catalog_entry(item.type)
        if entry is None:
            return
        allowed = allowed_queues(entry)
    if item.queue not in allowed:
        raise ApiError(422, "queue_not_allowed", f"{field}queue {item.queue!r} is not declared "
                       f"for job type {item.type!r}: use one of {', '.join(allowed)} (or omit "
                       f"queue for {allowed[0]})", f"{field}queue")


def check_run_at(run_at: str | None, field: str) -> None:
    """``run_at`` at most ``MAX_DELAY_SECONDS`` ahead, like ``delay`` (the library checks
    its form: ISO-8601 with a timezone)."""
    if run_at is None:
        return
    try:
        when = datetime.fromisoformat(run_at)
    except ValueError:
        return
    if when.utcoffset() is None:
        return
    if when.timestamp() - time.time() > MAX_DELAY_SECONDS:
        raise ApiError(422, "invalid_value", f"{field} is more than {MAX_DELAY_SECONDS} "
                       "seconds (10 years) ahead, the most a delay may be", field)


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


async def submitted(
    gateway: Gateway, handle: JobHandle, principal: Principal, field: str = ""
) -> dict[str, Any]:
    """The ``SubmittedJob`` answer for one handle (a plain dict: bulk answers hold thousands);
    for an existing job returned by an idempotency key, its current status. An existing job
    the caller may not read is never named (a 409 instead)."""
    status = handle.status
    if not handle.created:
        job = await find_job(gateway, handle.id, with_history=False)
        if job is None or not owns(principal, job):
            raise ApiError(409, "idempotency_conflict", f"the {field or 'Idempotency-Key'} "
                           "is taken in this scope by a job this key may not read: use "
                           "another key", field or "header.Idempotency-Key")
        status = job.status.value
    return {"id": handle.id, "status": status, "queue": handle.queue, "created": handle.created}


def created(handle: JobHandle) -> dict[str, Any]:
    """What ``submitted`` answers for a handle whose job the submission created."""
    return {"id": handle.id, "status": handle.status, "queue": handle.queue, "created": True}


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
    return tenancy.owns(principal, job.meta)


async def search(store: Store, principal: Principal, query: dict[str, Any]) -> JobPage:
    """A page of the history; a producer sees only the jobs its key submitted."""
    check_text(query.get("text"))
    check_cursor(query.get("cursor"))
    query = {**query, **tenancy.search_filter(principal)}
    return await store_call(store, store.search(JobQuery(**query)), "query.cursor")


MAX_SORT_VALUE = 2**63 - 1  # the stores keep sort values as signed 64-bit integers


def check_text(text: str | None) -> None:
    """Search text: printable (no NUL or other control characters); its length is bounded
    by the route."""
    if text is not None and not text.isprintable():
        raise ApiError(422, "invalid_query", "query.text must not hold control characters "
                       "(NUL, newlines, ...)", "query.text")


def check_cursor(cursor: str | None) -> None:
    """A cursor is what a previous page's ``next_cursor`` holds: a sort value in range and
    a job id. Anything else is refused here, before the store sees it."""
    if cursor is None:
        return
    try:
        value, job_id = decode_cursor(cursor)
    except ValueError:
        value, job_id = -1, ""
    if not 0 <= value <= MAX_SORT_VALUE or not NAME_RE.fullmatch(job_id):
        raise ApiError(422, "invalid_query", "query.cursor is not a cursor: pass the "
                       "next_cursor of the previous page unchanged", "query.cursor")


# -- queues ------------------------------------------------------------------------------------

async def queues(gateway: Gateway, names: list[str] | None = None) -> list[QueueOut]:
    stats = await live.queue_stats(gateway.conveyor, names)
    rates = await asyncio.gather(*(throughput(gateway, q.name) for q in stats))
    return [QueueOut.from_stats(q, r) for q, r in zip(stats, rates, strict=True)]


THROUGHPUT_CACHE_SECONDS = 1.0
THROUGHPUT_STALE_SECONDS = 5.0


async def throughput(gateway: Gateway, queue: str) -> Throughput | None:
    """Completed and failed jobs per second over the last minute, from the history (read at
    most once a second per queue: it scans a minute of jobs, which under load is most of the
    cost of ``/api/queues`` and ``/api/stats``). A value up to ``THROUGHPUT_STALE_SECONDS``
    old is answered while a background task reads the next: under load that scan took
    0.1-0.5 s, and the request waited for it."""
    if gateway.store is None:
        return None
    cache = gateway.throughput_cache
    read_at, cached = cache.get(queue, (-THROUGHPUT_STALE_SECONDS, None))
    now = time.monotonic()
    if now - read_at < THROUGHPUT_CACHE_SECONDS:
        return cast("Throughput | None", cached)
    if now - read_at < THROUGHPUT_STALE_SECONDS:
        gateway.refresh_soon(f"throughput:{queue}", lambda: _refresh_throughput(gateway, queue))
        return cast("Throughput | None", cached)
    return await _refresh_throughput(gateway, queue)


async def _refresh_throughput(gateway: Gateway, queue: str) -> Throughput | None:
    if gateway.store is None:
        return None
    now = time.monotonic()
    result = await _throughput(gateway.store, queue)
    if len(gateway.throughput_cache) > 1000:
        gateway.throughput_cache.clear()
    gateway.throughput_cache[queue] = (now, result)
    return result


async def _throughput(store: Store, queue: str) -> Throughput | None:
    until = int(time.time() * 1000)
    try:
        (bucket,) = await store.time_series(
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
    if any(queue in allowed_queues(e) for e in catalog.values()):
        return queue
    raise ApiError(404, "queue_not_found", f"queue {queue!r} is unknown: no job was ever "
                   "submitted to it and no job type uses or declares it")


# -- probes ------------------------------------------------------------------------------------

PROBE_TIMEOUT = 2.0


async def readiness(gateway: Gateway) -> Readiness:
    """Whether Redis answers PING and the store a one-row query, within ``PROBE_TIMEOUT``,
    and no needed loop of this process (any ``Supervisor``: the hub's, and a worker's or
    scheduler's in ``conveyor up``) is stuck."""
    redis = await _probe(gateway.conveyor.redis.ping())
    if gateway.store is None:
        store = gateway.store_error or "not configured"
    else:
        store = await _probe(gateway.store.search(JobQuery(limit=1)))
    supervisors = list(Supervisor.registry.values())
    stuck = [name for sup in supervisors for name in sup.stuck()]
    loops = {sup.component: sup.health() for sup in supervisors}
    ok = redis == "ok" and store == "ok" and not stuck
    return Readiness.model_validate({"status": "ready" if ok else "unavailable", "redis": redis,
                                     "store": store, "stuck": stuck, "loops": loops})


async def _probe(call: Awaitable[Any]) -> str:
    try:
        async with asyncio.timeout(PROBE_TIMEOUT):
            await call
    except Exception as exc:  # any failure means "not ready", with its reason
        return f"unavailable: {exc!r}"
    return "ok"
