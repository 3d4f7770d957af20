"""The history store interface every backend implements, and the documents it returns.

Times are epoch milliseconds (Redis time, as the events carry them), like ``job.JobInfo``.
"""

from __future__ import annotations

import base64
import math
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterable, Sequence
from types import TracebackType
from typing import Any, Literal, Self

import orjson
from pydantic import BaseModel, Field, field_validator

from conveyor import serde
from conveyor.job import Status
from conveyor.store.events import Event
from conveyor.store.fold import Doc, Transform, folder, group_by_job, new_life

SortField = Literal["submitted_ms", "updated_ms", "finished_ms"]
ArgValue = str | int | float | bool | None  # an argument value a search can match exactly
ARGS_SCAN_ROWS = 20_000  # jobs an argument search looks through per page (SQLite), at most
SORT_FIELDS: tuple[str, ...] = ("submitted_ms", "updated_ms", "finished_ms")
EQUALITY_FILTERS = ("queue", "tenant", "api_key_id")  # JobQuery fields matched exactly
ANY_OF_FILTERS = ("type",)  # JobQuery fields that list the values to match (any of them)
MAX_BUCKETS = 10_000
DAY_MS = 86_400_000


class ErrorInfo(BaseModel):
    type: str = "Error"
    message: str = ""


class Attempt(BaseModel):
    """One run of a job by a worker. ``incarnation`` > 0 after recovery re-enqueued the job.

    ``outcome`` is the event that ended the attempt (completed, retrying, dead, canceled,
    requeued, released), ``lost`` when the job was lost with Redis, None while it runs.
    """

    attempt: int
    incarnation: int = 0
    worker: str | None = None
    started_ms: int | None = None
    finished_ms: int | None = None
    outcome: str | None = None
    error: ErrorInfo | None = None
    traceback: str | None = None
    reason: str | None = None

    @property
    def duration_ms(self) -> int | None:
        if self.started_ms is None or self.finished_ms is None:
            return None
        return self.finished_ms - self.started_ms


class StoredJob(BaseModel):
    """A job as the history store holds it.

    ``attempts`` is None in search results (not loaded), a list from ``Store.get_job``.
    ``scheduled_ms`` is when the job was first due; ``due_ms`` its current due time (a retry
    moves it). ``started_ms`` is the start of the latest attempt, ``first_started_ms`` of the
    first. ``deleted_ms`` is set when the job was deleted from Redis; deleted jobs stay
    readable by id but leave searches, counts and series. ``incarnation`` counts the times
    recovery enqueued the job again after Redis lost it.
    """

    id: str
    queue: str
    type: str
    status: Status
    priority: str = "normal"
    args: dict[str, Any] = {}
    result: Any = None
    attempt: int = 0
    max_attempts: int | None = None
    attempts: list[Attempt] | None = None
    worker: str | None = None
    error: ErrorInfo | None = None
    progress: float | None = None
    progress_message: str | None = None
    cancel_requested: bool = False
    submitted_ms: int | None = None
    scheduled_ms: int | None = None
    due_ms: int | None = None
    started_ms: int | None = None
    first_started_ms: int | None = None
    finished_ms: int | None = None
    updated_ms: int | None = None
    deleted_ms: int | None = None
    idempotency_key: str | None = None
    tenant: str | None = None
    api_key_id: str | None = None
    meta: dict[str, Any] = {}
    seq: int = 0
    incarnation: int = 0

    @classmethod
    def from_doc(cls, doc: Doc, with_attempts: bool = True) -> StoredJob:
        """The public form of a store document (``fold.Doc``)."""
        data = {k: v for k, v in doc.items() if k in cls.model_fields and v is not None}
        data["args"] = serde.loads(doc.get("args")) or {}
        data["result"] = serde.loads(doc.get("result"))
        data["meta"] = serde.loads(doc.get("meta")) or {}
        data["attempts"] = list(doc.get("attempts") or []) if with_attempts else None
        return cls.model_validate(data)


class Gap(BaseModel):
    """Events of one queue's stream that were trimmed (``MAXLEN``) before the recorder read
    them: the history of a job whose newest stored event is not newer than ``end_ms`` may
    be missing a later event (its completion, say), so recovery must not trust it.

    ``after_id``: the last entry the recorder had read (exclusive; ``0-0`` for none);
    ``end_id``: the first entry still in the stream, or its last entry when none is left
    (the lost entries are older); ``end_ms``: the time part of ``end_id``."""

    queue: str
    after_id: str
    end_id: str
    end_ms: int
    lost: int | None = None  # how many entries were lost, when Redis could count them
    detected_ms: int


class JobQuery(BaseModel):
    """A search. ``since_ms``/``until_ms`` bound the ``sort`` field (``until`` exclusive);
    ``text`` matches a substring of any error of the job, case-insensitively (ASCII)."""

    status: list[Status] | None = None
    queue: str | None = None
    type: list[str] | None = None  # any of these job types (a plain string is one type)
    tenant: str | None = None
    api_key_id: str | None = None
    text: str | None = Field(None, min_length=1, max_length=200)
    since_ms: int | None = None
    until_ms: int | None = None
    sort: SortField = "submitted_ms"
    descending: bool = True
    limit: int = Field(50, ge=1, le=500)
    cursor: str | None = None
    id_prefix: str | None = Field(None, min_length=1, max_length=64)  # indexed (the id key)
    # Equality on top-level arguments: a bounded scan of the ARGS_SCAN_ROWS jobs that match
    # the other filters, in sort order from the cursor (narrow those to look further back).
    args: dict[str, ArgValue] | None = None

    @field_validator("type", mode="before")
    @classmethod
    def _one_type(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    def matches(self) -> dict[str, list[Any]]:
        """Field -> the values it may have, for the exact-match filters that are set."""
        out: dict[str, list[Any]] = {name: [getattr(self, name)] for name in EQUALITY_FILTERS
                                     if getattr(self, name) is not None}
        out.update({name: list(getattr(self, name)) for name in ANY_OF_FILTERS
                    if getattr(self, name)})
        return out


class JobPage(BaseModel):
    items: list[StoredJob]
    next_cursor: str | None = None


class TimeBucket(BaseModel):
    """Jobs that ended, and their latencies, in ``[start_ms, start_ms + interval)``.

    ``failed`` counts jobs that ended dead. Durations are of the attempt that ended the job;
    pickup latency is from when the job was first due to when its first attempt started
    (counted in the bucket of that start).
    """

    start_ms: int
    completed: int = 0
    failed: int = 0
    canceled: int = 0
    duration_p50: float | None = None
    duration_p95: float | None = None
    duration_p99: float | None = None
    pickup_p50: float | None = None
    pickup_p95: float | None = None
    pickup_p99: float | None = None


class Store(ABC):
    """The history store: job documents folded from the events streams.

    Responsibilities: apply batches of events idempotently and in one commit (``apply``);
    answer what Redis should not — get a job with its attempts, search, counts, time series;
    keep retention; list unfinished jobs for recovery and start their new life. Backends
    implement ``_update`` (read, transform, write back safely) and the queries; the shared
    rules (folding, cursors, buckets) live here and in ``fold``.
    """

    retention_days: float = 30.0

    async def apply(self, events: Sequence[Event]) -> None:
        """Fold ``events`` into their jobs and commit. Safe to repeat, in any order."""
        if events:
            by_job = group_by_job(events)
            await self._update({job: folder(evs) for job, evs in by_job.items()})

    async def begin_new_life(self, job_ids: Sequence[str]) -> None:
        """Recovery is about to enqueue these jobs again, under the same ids: their events
        will count ``seq`` from 1 again (see ``fold.new_life``)."""
        if job_ids:
            await self._update(dict.fromkeys(job_ids, new_life))

    @abstractmethod
    async def _update(self, changes: dict[str, Transform]) -> None:
        """Read the documents of the jobs in ``changes``, pass each (None when the store has
        none) through its transform, and write back those that changed, in one commit or,
        where the backend has none, so that concurrent writers never lose an update."""

    @abstractmethod
    async def get_job(self, job_id: str) -> StoredJob | None:
        """The job with its attempts, or None if the store never saw it."""

    @abstractmethod
    async def search(self, query: JobQuery) -> JobPage:
        """One page of jobs, newest first by default; pass ``next_cursor`` for the next."""

    @abstractmethod
    async def count_by_status(self, queue: str | None = None) -> dict[str, int]:
        """How many jobs are in each status (every status is present, maybe 0)."""

    @abstractmethod
    async def time_series(
        self, since_ms: int, until_ms: int, interval_ms: int,
        queue: str | None = None, type: str | None = None,
    ) -> list[TimeBucket]:
        """One bucket per interval from ``since_ms`` (inclusive) to ``until_ms`` (exclusive)."""

    @abstractmethod
    async def purge(self, before_ms: int) -> int:
        """Delete jobs that ended (finished or deleted) before ``before_ms``; returns how many.
        Unfinished jobs are never purged."""

    @abstractmethod
    def unfinished(self, queue: str | None = None) -> AsyncIterator[StoredJob]:
        """Jobs the store holds as queued, delayed, retrying or active (not deleted)."""

    @abstractmethod
    async def record_gap(self, gap: Gap) -> None:
        """Keep ``gap`` (recording the same gap again changes nothing)."""

    @abstractmethod
    async def gaps(self, queue: str | None = None) -> list[Gap]:
        """Every gap recorded (of ``queue``), oldest first."""

    @abstractmethod
    async def close(self) -> None: ...

    async def apply_retention(self, now_ms: int | None = None) -> int:
        """Purge what is older than ``retention_days``; returns how many jobs went."""
        now = int(time.time() * 1000) if now_ms is None else now_ms
        return await self.purge(now - int(self.retention_days * DAY_MS))

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


def encode_cursor(value: int, job_id: str) -> str:
    """An opaque cursor: the sort value and id of the last item of a page."""
    return base64.urlsafe_b64encode(orjson.dumps([value, job_id])).decode()


def decode_cursor(cursor: str) -> tuple[int, str]:
    try:
        value, job_id = orjson.loads(base64.urlsafe_b64decode(cursor.encode()))
        return int(value), str(job_id)
    except (ValueError, TypeError, orjson.JSONDecodeError):
        raise ValueError(
            f"invalid cursor {cursor!r}: pass the next_cursor of the previous page unchanged"
        ) from None


def next_cursor(items: Sequence[StoredJob], query: JobQuery) -> str | None:
    if len(items) < query.limit:
        return None
    last = items[-1]
    return encode_cursor(getattr(last, query.sort) or 0, last.id)


def check_series(since_ms: int, until_ms: int, interval_ms: int) -> int:
    """The number of buckets; raises ValueError for a range the caller should narrow."""
    if interval_ms <= 0 or until_ms <= since_ms:
        raise ValueError("time series needs interval_ms > 0 and until_ms > since_ms")
    n = math.ceil((until_ms - since_ms) / interval_ms)
    if n > MAX_BUCKETS:
        raise ValueError(f"{n} buckets asked, at most {MAX_BUCKETS}: widen interval_ms")
    return n


def build_series(
    since_ms: int, until_ms: int, interval_ms: int,
    ended: Iterable[tuple[int, str, int | None]], pickups: Iterable[tuple[int, int]],
) -> list[TimeBucket]:
    """Buckets from (bucket index, status, duration or None) of jobs that ended in the range
    and (bucket index, pickup latency) of jobs first started in it, as the backend's queries
    return them."""
    n = check_series(since_ms, until_ms, interval_ms)
    counts = {s: [0] * n for s in ("completed", "dead", "canceled")}
    durations: list[list[int]] = [[] for _ in range(n)]
    latencies: list[list[int]] = [[] for _ in range(n)]
    for i, status, duration in ended:  # a tight loop: a day of history is many rows
        counts[status][i] += 1
        if duration is not None and status != "canceled":
            durations[i].append(duration)
    for i, latency in pickups:
        latencies[i].append(latency)
    return [
        TimeBucket(
            start_ms=since_ms + i * interval_ms, completed=counts["completed"][i],
            failed=counts["dead"][i], canceled=counts["canceled"][i],
            **_named("duration", percentiles(durations[i])),
            **_named("pickup", percentiles(latencies[i])),
        )
        for i in range(n)
    ]


def _named(prefix: str, values: tuple[float | None, ...]) -> dict[str, float | None]:
    return {f"{prefix}_p{p}": v for p, v in zip((50, 95, 99), values, strict=True)}


def percentiles(values: list[int]) -> tuple[float | None, float | None, float | None]:
    """p50, p95, p99 by the nearest-rank method (None for no values)."""
    if not values:
        return None, None, None
    values.sort()
    n = len(values)
    return tuple(  # type: ignore[return-value]
        float(values[max(0, math.ceil(p * n) - 1)]) for p in (0.50, 0.95, 0.99)
    )


def empty_counts() -> dict[str, int]:
    return {s.value: 0 for s in Status}
