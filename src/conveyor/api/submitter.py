"""``Submitter``: single submissions of concurrent requests go to Redis together.

Each request is validated on its own (``Conveyor.prepare``: a bad one fails alone); the
valid jobs that arrive while a write is in flight are written by the next one, through the
library's ``submit_prepared`` (one script call per queue). Jobs of different requests are
independent: if one hits an idempotency conflict, the batch is redone job by job, which is
safe because a job id that already exists is never enqueued twice (see enqueue.lua).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from conveyor.api.batching import Batcher
from conveyor.errors import IdempotencyConflict

if TYPE_CHECKING:
    from conveyor.app import Conveyor
    from conveyor.handle import JobHandle
    from conveyor.job import NewJob


class Submitter:
    """Validates one submission, then writes it in the next shared batch."""

    def __init__(self, conveyor: Conveyor, max_batch: int = 500) -> None:
        self.conveyor = conveyor
        self.batcher: Batcher[NewJob, JobHandle] = Batcher(self._write, max_batch)

    async def submit(self, spec: Mapping[str, Any]) -> JobHandle:
        job = await self.conveyor.prepare(spec)
        return await self.conveyor.submit_one(job, self.batcher.submit)  # middleware hooks

    async def _write(self, jobs: list[NewJob]) -> list[JobHandle | BaseException]:
        try:
            return list(await self.conveyor.submit_prepared(jobs))
        except IdempotencyConflict:
            if len(jobs) == 1:
                raise
        return [await self._one(job) for job in jobs]

    async def _one(self, job: NewJob) -> JobHandle | BaseException:
        try:
            (handle,) = await self.conveyor.submit_prepared([job])
        except IdempotencyConflict as exc:
            return exc
        return handle
