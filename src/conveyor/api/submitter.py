"""``Submitter``: single submissions of concurrent requests go to Redis together.

Each request is validated on its own (``Conveyor.prepare``: a bad one fails alone); the
valid jobs that arrive while a write is in flight are written by the next one, through the
library's ``submit_prepared`` (one script call per queue). Jobs of different requests are
independent: if one hits an idempotency conflict, the batch is redone job by job, which is
safe because a job id that already exists is never enqueued twice (see enqueue.lua).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from conveyor.api.batching import Batcher
from conveyor.errors import IdempotencyConflict

if TYPE_CHECKING:
    from conveyor.app import Conveyor
    from conveyor.handle import JobHandle
    from conveyor.job import NewJob


# Bulk items validated between two yields to the event loop. Validating 500 items is about
# 20 ms of CPU with no await in it (over 200 ms on a busy 2-core machine), and every other
# request of the process, a dashboard's read too, waited behind it; 100 items hold the loop
# for a few ms.
BULK_SLICE = 100


class Submitter:
    """Validates one submission, then writes it in the next shared batch; validates a bulk
    in slices, then writes it at once (all or nothing)."""

    def __init__(self, conveyor: Conveyor, max_batch: int = 500) -> None:
        self.conveyor = conveyor
        self.batcher: Batcher[NewJob, JobHandle] = Batcher(self._write, max_batch)

    async def submit(self, spec: Mapping[str, Any]) -> JobHandle:
        job = await self.conveyor.prepare(spec)
        return await self.conveyor.submit_one(job, self.batcher.submit)  # middleware hooks

    async def submit_many(self, specs: Sequence[Mapping[str, Any]]) -> list[JobHandle]:
        """``Conveyor.enqueue_many`` (every item validated, then all written or none, items
        named ``jobs[i].``), yielding to the event loop every ``BULK_SLICE`` items."""
        conveyor = self.conveyor
        jobs = []
        for i, spec in enumerate(specs):
            if i and i % BULK_SLICE == 0:
                await asyncio.sleep(0)  # let other requests run between slices
            jobs.append(await conveyor.prepare(spec, f"jobs[{i}]."))
        if conveyor.middleware:
            return await conveyor.middleware.enqueue(jobs, conveyor.submit_prepared)
        return await conveyor.submit_prepared(jobs)

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
