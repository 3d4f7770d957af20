"""``JobHandle``: what ``enqueue`` returns; waits for a job's outcome without polling."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from conveyor.errors import JobFailed, JobNotFound
from conveyor.job import TERMINAL, JobInfo, Status

if TYPE_CHECKING:
    from conveyor.app import Conveyor

TERMINAL_VALUES = frozenset(s.value for s in TERMINAL)


class JobHandle:
    """A submitted job. ``created`` is False when an idempotency key returned an existing job."""

    def __init__(self, app: Conveyor, job_id: str, queue: str, status: str, created: bool) -> None:
        self.app = app
        self.id = job_id
        self.queue = queue
        self.status = status
        self.created = created

    def __repr__(self) -> str:
        return f"JobHandle(id={self.id!r}, queue={self.queue!r}, status={self.status!r})"

    async def info(self) -> JobInfo:
        job = await self.app.get_job(self.id)
        if job is None:
            raise JobNotFound(self.id)
        return job

    async def cancel(self) -> str:
        return await self.app.cancel(self.id)

    async def result(self, timeout: float | None = None) -> Any:
        """The job's return value once it completes; ``JobFailed`` if it ends dead or canceled.

        Reads the queue's events stream (blocking XREAD) from before the state check, so a
        transition that happens in between is never missed.
        """
        redis = self.app.redis
        stream = self.app.keys.queue(self.queue).events
        last: Any = await redis.xrevrange(stream, count=1)
        cursor: str = last[0][0] if last else "0-0"
        deadline = None if timeout is None else time.monotonic() + timeout
        job = await self.info()
        while job.status not in TERMINAL:
            block = 5.0 if deadline is None else deadline - time.monotonic()
            if block <= 0:
                raise TimeoutError(f"job {self.id} is still {job.status} after {timeout}s")
            reply: Any = await redis.xread(
                {stream: cursor}, block=max(1, int(min(block, 5.0) * 1000)))
            for _, entries in reply or []:
                for entry_id, fields in entries:
                    cursor = entry_id
                    if fields.get("job") == self.id and fields.get("status") in TERMINAL_VALUES:
                        job = await self.info()
        if job.status == Status.COMPLETED:
            return job.result
        raise JobFailed(job)
