"""Conveyor: a distributed job scheduler on Redis.

    from conveyor import Conveyor, Context, Retry, JobFailed

    app = Conveyor()

    @app.job(queue="default", max_attempts=3, timeout=60.0)
    async def resize(image_id: str, width: int, ctx: Context) -> dict:
        ...

    handle = await app.enqueue("resize", {"image_id": "a", "width": 10}, priority="high")
    await handle.result(timeout=30)
"""

from conveyor.app import Conveyor
from conveyor.errors import (
    ConveyorError,
    IdempotencyConflict,
    InvalidState,
    JobFailed,
    JobNotFound,
    NonRetryable,
    Retry,
    UnknownJobType,
    ValidationError,
)
from conveyor.handle import JobHandle
from conveyor.job import JobInfo, Status
from conveyor.settings import Settings
from conveyor.worker.context import Context
from conveyor.worker.worker import Worker

__all__ = [
    "Context",
    "Conveyor",
    "ConveyorError",
    "IdempotencyConflict",
    "InvalidState",
    "JobFailed",
    "JobHandle",
    "JobInfo",
    "JobNotFound",
    "NonRetryable",
    "Retry",
    "Settings",
    "Status",
    "UnknownJobType",
    "ValidationError",
    "Worker",
]
__version__ = "0.1.0"
