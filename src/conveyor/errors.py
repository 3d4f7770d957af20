"""Exceptions a user can meet, each with a message that says what to do."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conveyor.job import JobInfo


class ConveyorError(Exception):
    """Base class of every Conveyor error."""


class ValidationError(ConveyorError, ValueError):
    """Bad input from a caller. ``field`` is the dotted path of the offending field."""

    code = "invalid"

    def __init__(self, field: str, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.message = message
        if code:
            self.code = code

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "field": self.field, "message": self.message}


class InvalidName(ValidationError):
    code = "invalid_name"


class UnknownJobType(ValidationError):
    code = "unknown_job_type"

    def __init__(self, name: str, known: list[str]) -> None:
        hint = f"known types: {', '.join(sorted(known))}" if known else "none are registered"
        super().__init__(
            "type",
            f"unknown job type {name!r}: register it with @app.job or start a worker "
            f"that does ({hint})",
        )


class InvalidArguments(ValidationError):
    code = "invalid_arguments"


class NotJSON(ValidationError):
    code = "not_json"


class JobNotFound(ConveyorError, LookupError):
    def __init__(self, job_id: str) -> None:
        super().__init__(f"job {job_id!r} not found (it may have expired from Redis)")
        self.job_id = job_id


class InvalidState(ConveyorError):
    """The job is not in a state that allows the operation (e.g. cancel a completed job)."""

    def __init__(self, job_id: str, status: str, operation: str) -> None:
        super().__init__(f"cannot {operation} job {job_id!r}: it is {status}")
        self.job_id = job_id
        self.status = status
        self.operation = operation


class StaleLease(ConveyorError):
    """A worker presented a lease token the job no longer has (someone else runs it now)."""


class JobFailed(ConveyorError):
    """Raised by ``handle.result()`` when the job ends dead or canceled."""

    def __init__(self, job: JobInfo) -> None:
        super().__init__(f"job {job.id} ended {job.status}: {job.error or 'no error recorded'}")
        self.job = job
        self.status = job.status
        self.error = job.error


class Retry(ConveyorError):
    """Raise from a handler to ask for another attempt after ``delay`` seconds."""

    def __init__(self, delay: float | None = None, reason: str = "retry requested") -> None:
        super().__init__(reason)
        self.delay = delay


class NonRetryable(ConveyorError):
    """Raise (or subclass) from a handler to send the job to the DLQ without more attempts."""


class IdempotencyConflict(ConveyorError):
    """The idempotency key is live for a job submitted with different content."""

    def __init__(self, key: str, existing_id: str) -> None:
        super().__init__(
            f"idempotency key {key!r} already names job {existing_id} with different content: "
            "use a new key for a different job"
        )
        self.key = key
        self.existing_id = existing_id


class NotDurable(ConveyorError):
    """The primary accepted the jobs but the requested replicas / AOF did not confirm them in
    time. They may survive or not; resubmitting with the same idempotency key is safe."""

    def __init__(self, detail: str) -> None:
        super().__init__(
            f"not durably acknowledged: {detail}; resubmit with the same idempotency key "
            "(it returns the same job) or lower CONVEYOR_DURABLE_REPLICAS")
