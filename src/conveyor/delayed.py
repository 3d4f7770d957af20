"""Delayed jobs: list them by due time across queues, and make one due now.

A delayed job waits in its queue's ``delayed`` ZSET (score: due time) until a worker's claim
promotes it. "Run now" moves its score to 0, so the next claim promotes it, and wakes an idle
worker of the queue the way a submission does (``broker/lua/includes/wake.lua``).
"""

from __future__ import annotations

import heapq
from typing import TYPE_CHECKING

from conveyor.job import JobInfo

if TYPE_CHECKING:
    from conveyor.app import Conveyor


async def due_order(app: Conveyor, queues: list[str], limit: int) -> list[JobInfo]:
    """The ``limit`` delayed jobs due soonest across ``queues``, soonest first."""
    found: list[tuple[float, str, str]] = []
    for queue in queues:
        pairs = await app.redis.zrange(app.keys.queue(queue).delayed, 0, limit - 1,
                                       withscores=True)
        found += [(float(p[1]), str(p[0]), queue) for p in pairs]
    soonest = heapq.nsmallest(limit, found)
    async with app.redis.pipeline(transaction=False) as pipe:
        for _, job_id, queue in soonest:
            pipe.hgetall(app.keys.queue(queue).job(job_id))
        hashes = await pipe.execute()
    jobs = []
    for (score, _, _), h in zip(soonest, hashes, strict=True):
        if h:
            job = JobInfo.from_hash(h)
            jobs.append(job.model_copy(update={"due_ms": int(score)}))
    return jobs


async def count(app: Conveyor, queues: list[str]) -> int:
    async with app.redis.pipeline(transaction=False) as pipe:
        for queue in queues:
            pipe.zcard(app.keys.queue(queue).delayed)
        return sum(await pipe.execute())


async def run_now(app: Conveyor, queue: str, job_id: str) -> bool:
    """Make a delayed job due now; False when it is not delayed (any more)."""
    qk = app.keys.queue(queue)
    async with app.redis.pipeline(transaction=True) as pipe:
        pipe.zadd(qk.delayed, {job_id: 0}, xx=True, ch=True)
        pipe.zadd(qk.marker, {"0": 0}, lt=True)
        changed, _ = await pipe.execute()
    return bool(changed) or await _still_delayed(app, queue, job_id)


async def _still_delayed(app: Conveyor, queue: str, job_id: str) -> bool:
    """A score already 0 counts as made due (asked twice)."""
    score = await app.redis.zscore(app.keys.queue(queue).delayed, job_id)
    return score is not None

