"""Request and response bodies of the HTTP API (the OpenAPI schema is generated from these).

Request models are strict (``"5"`` is not an int, ``true`` is not a number) and forbid
unknown fields. They check the shape; the library then checks what only it knows (the job
type's argument schema, run_at's timezone), naming the field the same way.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, StringConstraints

from conveyor.inspect import QueueStats
from conveyor.job import AttemptError, JobInfo, Status
from conveyor.store.base import ErrorInfo, StoredJob, TimeBucket
from conveyor.submit import MAX_ATTEMPTS_CAP, MAX_DELAY_SECONDS, MAX_TIMEOUT_SECONDS

NAME_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
# The pattern alone bounds the length, so a long name fails as invalid_name, like braces.
Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
JobId = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
Priority = Literal["high", "normal", "low"]
RESERVED_META = ("api_key_id", "idempotency_key", "tenant")
STRICT = ConfigDict(strict=True, extra="forbid")

RESIZE_EXAMPLE: dict[str, JsonValue] = {"type": "resize", "args": {"image_id": "a1", "width": 640},
                  "priority": "high"}


class JobSubmission(BaseModel):
    """One job to submit. Unset options take the job type's defaults."""

    model_config = ConfigDict(strict=True, extra="forbid",
                              json_schema_extra={"examples": [RESIZE_EXAMPLE]})

    type: Name = Field(description="A registered job type (see GET /api/types)")
    args: dict[str, Any] = Field(
        default_factory=dict, description="Named arguments, checked against the type's schema")
    queue: Name | None = Field(None, description="Queue (default: the job type's)")
    priority: Priority | None = Field(None, description="high, normal (default) or low")
    delay: float | None = Field(
        None, ge=0, le=MAX_DELAY_SECONDS, description="Seconds to wait before running")
    run_at: str | None = Field(
        None, max_length=64, json_schema_extra={"format": "date-time"},
        description="When to run: ISO-8601 with a timezone (not with delay)")
    max_attempts: int | None = Field(
        None, ge=1, le=MAX_ATTEMPTS_CAP, description="Attempts before the dead-letter queue")
    timeout: float | None = Field(
        None, gt=0, le=MAX_TIMEOUT_SECONDS, description="Seconds an attempt may run")
    meta: dict[str, Any] | None = Field(
        None, description="Free-form JSON kept with the job (api_key_id, idempotency_key "
        "and tenant are reserved)")


class BulkJob(JobSubmission):
    """One item of a bulk submission; may carry its own idempotency key."""

    idempotency_key: Name | None = Field(
        None, description="Return the existing job for this key while it lives")


class BulkSubmission(BaseModel):
    """Jobs submitted all or nothing: one invalid item rejects the request and is named."""

    model_config = ConfigDict(strict=True, extra="forbid", json_schema_extra={"examples": [
        {"jobs": [RESIZE_EXAMPLE, {"type": "resize", "args": {"image_id": "b2", "width": 64}}]}
    ]})

    jobs: list[BulkJob] = Field(min_length=1, description="The jobs (at most the bulk cap)")


class SubmittedJob(BaseModel):
    id: str
    status: str = Field(description="queued or delayed; the current status for an existing job")
    queue: str
    created: bool = Field(description="False when an idempotency key returned an existing job")


class BulkResult(BaseModel):
    jobs: list[SubmittedJob]


class AttemptOut(BaseModel):
    """One run of the job by a worker."""

    attempt: int
    worker: str | None = None
    started_ms: int | None = None
    finished_ms: int | None = None
    outcome: str | None = Field(None, description="completed, retrying, dead, canceled, "
                                "requeued, released, lost; null while running")
    error: ErrorInfo | None = None
    traceback: str | None = None

    @classmethod
    def from_error(cls, e: AttemptError) -> AttemptOut:
        return cls(attempt=e.attempt, worker=e.worker, started_ms=_ms(e.started),
                   finished_ms=_ms(e.finished), outcome="failed",
                   error=ErrorInfo(type=e.type or "Error", message=e.message),
                   traceback=e.traceback or None)


class JobOut(BaseModel):
    """A job: live from Redis (``source: live``) or from the history store (``history``)."""

    id: str
    type: str
    queue: str
    status: Status
    priority: str = "normal"
    args: dict[str, Any] = {}
    attempt: int = 0
    max_attempts: int | None = None
    result: Any = None
    error: str | None = Field(None, description="The last error, as 'Type: message'")
    attempts: list[AttemptOut] = []
    worker: str | None = None
    progress: float | None = None
    progress_message: str | None = None
    created_ms: int | None = None
    due_ms: int | None = None
    started_ms: int | None = None
    finished_ms: int | None = None
    cancel_requested: bool = False
    meta: dict[str, Any] = {}
    source: Literal["live", "history"]

    @classmethod
    def from_live(cls, job: JobInfo, stored: StoredJob | None = None) -> JobOut:
        attempts = _stored_attempts(stored) or [AttemptOut.from_error(e) for e in job.errors]
        data = job.model_dump(exclude={"errors", "failures"})
        return cls(**data, attempts=attempts, source="live")

    @classmethod
    def from_stored(cls, job: StoredJob) -> JobOut:
        error = f"{job.error.type}: {job.error.message}" if job.error else None
        return cls(
            id=job.id, type=job.type, queue=job.queue, status=job.status,
            priority=job.priority, args=job.args, attempt=job.attempt,
            max_attempts=job.max_attempts, result=job.result, error=error,
            attempts=_stored_attempts(job), worker=job.worker, progress=job.progress,
            progress_message=job.progress_message, created_ms=job.submitted_ms,
            due_ms=job.due_ms, started_ms=job.started_ms, finished_ms=job.finished_ms,
            cancel_requested=job.cancel_requested, meta=job.meta, source="history",
        )


def _stored_attempts(job: StoredJob | None) -> list[AttemptOut]:
    if job is None or not job.attempts:
        return []
    return [AttemptOut(attempt=a.attempt, worker=a.worker, started_ms=a.started_ms,
                       finished_ms=a.finished_ms, outcome=a.outcome, error=a.error,
                       traceback=a.traceback) for a in job.attempts]


def _ms(seconds: float | None) -> int | None:
    return None if seconds is None else int(seconds * 1000)


class JobPageOut(BaseModel):
    items: list[JobOut]
    next_cursor: str | None = Field(None, description="Pass as ?cursor= for the next page")


class JobAction(BaseModel):
    id: str
    status: str = Field(description="canceled, cancel_requested or queued")


class Throughput(BaseModel):
    """Jobs that ended over the last ``window_seconds``, per second (from the history)."""

    window_seconds: int
    completed_per_second: float
    failed_per_second: float


class QueueOut(BaseModel):
    name: str
    paused: bool
    high: int
    normal: int
    low: int
    waiting: int
    delayed: int
    active: int
    dead: int
    oldest_waiting_seconds: float | None
    throughput: Throughput | None = None

    @classmethod
    def from_stats(cls, q: QueueStats, throughput: Throughput | None) -> QueueOut:
        return cls(**q.model_dump(), waiting=q.waiting, throughput=throughput)


class DlqPage(BaseModel):
    queue: str
    total: int
    items: list[JobOut]


class DlqSelection(BaseModel):
    """Either ``ids`` (those dead jobs) or ``all: true`` (every dead job of the queue)."""

    model_config = ConfigDict(strict=True, extra="forbid", json_schema_extra={
        "examples": [{"ids": ["6f1c0c1e0e0b4b8f9f7f2b3a1c2d3e4f"]}, {"all": True}]})

    ids: list[JobId] | None = Field(None, min_length=1, max_length=10_000)
    all: bool = False


class DlqResult(BaseModel):
    queue: str
    count: int = Field(description="How many dead jobs were requeued or deleted")


class JobTypeOut(BaseModel):
    name: str
    queue: str = "default"
    priority: str = "normal"
    max_attempts: int | None = None
    timeout: float | None = None
    doc: str = ""
    queues: list[str] = Field(default_factory=list, description="The queues a submission may "
                              "name: the type's own first, then those declared for it")
    args_schema: dict[str, Any] = Field(default_factory=dict,
                                        description="JSON schema of the arguments")

    @classmethod
    def from_entry(cls, name: str, entry: Any) -> JobTypeOut:
        e = entry if isinstance(entry, dict) else {}
        schema = e.get("schema")
        queue = str(e.get("queue") or "default")
        return cls(name=name, queue=queue, queues=allowed_queues(e),
                   priority=str(e.get("priority") or "normal"),
                   max_attempts=_int_or_none(e.get("max_attempts")),
                   timeout=_float_or_none(e.get("timeout")), doc=str(e.get("doc") or ""),
                   args_schema=schema if isinstance(schema, dict) else {})


def allowed_queues(entry: Any) -> list[str]:
    """The queues a catalog entry allows: its ``queues`` (workers since declared queues
    publish it), else its one ``queue``."""
    e = entry if isinstance(entry, dict) else {}
    queues = e.get("queues")
    if isinstance(queues, list) and queues and all(isinstance(q, str) for q in queues):
        return list(queues)
    return [str(e.get("queue") or "default")]


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _float_or_none(value: Any) -> float | None:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    return float(value) if ok else None


class StatsOut(BaseModel):
    """Counts by status (all history), a time series for charts, and the queues right now."""

    now_ms: int
    since_ms: int
    until_ms: int
    interval_ms: int
    counts: dict[str, int]
    series: list[TimeBucket]
    queues: list[QueueOut]


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class LoopOut(BaseModel):
    """The health of one supervised loop (``conveyor.supervise.LoopHealth``)."""

    state: str = Field(description="starting, ok, idle, backing off or restarting")
    age: float = Field(description="Seconds since the loop last succeeded")
    stuck: bool = Field(description="Running with no success for longer than it may")
    needed: bool = Field(description="A stuck needed loop makes the process not ready")
    errors: int = Field(description="Transient errors (Redis unavailable, error replies)")
    restarts: int = Field(description="Restarts after a crash")
    last_error: str = ""


class Readiness(BaseModel):
    status: Literal["ready", "unavailable"]
    redis: str
    store: str
    stuck: list[str] = Field(
        default_factory=list, description="Needed loops of this process that are stuck "
        "(component.loop); any makes the process unavailable")
    loops: dict[str, dict[str, LoopOut]] = Field(
        default_factory=dict, description="Every supervised loop of this process, by "
        "component and loop name")
