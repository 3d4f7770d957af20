"""The fetcher: one per queue, claims jobs when slots are free and waits on the marker."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING

from conveyor.connect import make_redis

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from conveyor.app import Conveyor
    from conveyor.supervise import LoopHealth
    from conveyor.worker.runner import JobRunner
    from conveyor.worker.slots import Slots


class Fetcher:
    """Responsibilities: take free slots, claim up to that many jobs in one script call,
    give back what the claim did not fill, start the jobs, and otherwise block on the
    queue's marker (BZPOPMIN) until a job is submitted or the next delayed one is due.
    While the worker's quiet flag is set (``keys.worker_quiet``) it claims nothing and looks
    again every ``block_seconds``: the running jobs finish, no new one starts. The flag is
    read at most once per ``heartbeat_seconds`` while the worker claims: read before every
    claim, it cost a round trip per claim, and a draining worker claims a few jobs at a time
    (the drain benchmark lost a quarter of its rate to it). So a worker goes quiet within a
    heartbeat period of the request, as its status shows within one.

    The blocking connection's socket timeout is just past the longest block, so a
    connection that stops answering (the wedge after a fail-over) raises; the supervisor
    backs off and runs ``loop`` again, which opens a fresh connection."""

    def __init__(self, app: Conveyor, queue: str, worker_id: str, slots: Slots,
                 runner: JobRunner, stop: asyncio.Event) -> None:
        self.app = app
        self.settings = app.settings
        self.queue = queue
        self.worker_id = worker_id
        self.slots = slots
        self.runner = runner
        self.stop = stop
        self.claiming = False
        self.marker = app.keys.queue(queue).marker
        self.quiet = app.keys.glob.worker_quiet(worker_id)
        self._quiet = False  # the flag as last read
        self._quiet_read_at = -float("inf")  # monotonic time of that read

    def _blocking_client(self) -> Redis:
        return make_redis(self.settings.redis_url, blocking_timeout=self.settings.block_seconds,
                          retry_on_error=[])

    async def loop(self, health: LoopHealth) -> None:
        blocker = self._blocking_client()
        try:
            while not self.stop.is_set():
                await self._step(blocker, health)
        finally:
            await blocker.aclose()

    async def _quiet_now(self) -> bool:
        now = time.monotonic()
        if self._quiet or now - self._quiet_read_at >= self.settings.heartbeat_seconds:
            self._quiet = bool(await self.app.redis.exists(self.quiet))
            self._quiet_read_at = now
        return self._quiet

    async def _step(self, blocker: Redis, health: LoopHealth) -> None:
        # Before any slot is taken: a Redis error here must not leak slots (it did, and
        # after an outage a worker with every slot leaked claimed nothing ever again).
        if await self._quiet_now():  # an operator asked: claim nothing new
            health.ok()
            async with health.idle():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), self.settings.block_seconds)
            return
        async with health.idle():
            want = await self.slots.take(self.settings.claim_batch)
        # Marked: shutdown never cancels a claim between Redis leasing the jobs and this
        # worker starting them (they would sit leased until the lease ran out).
        self.claiming = True
        try:
            result = await self.app.broker.claim(self.queue, self.worker_id, want)
        except BaseException:
            self.slots.give(want)
            raise
        finally:
            self.claiming = False
        self.slots.give(want - len(result.jobs))
        for job in result.jobs:
            self.runner.start(job)
        health.ok()
        if result.jobs or self.stop.is_set():
            return
        wait = self.settings.block_seconds
        if result.wait_ms >= 0:
            wait = min(wait, result.wait_ms / 1000)
        if wait > 0:
            async with health.idle():
                await blocker.bzpopmin(self.marker, timeout=max(wait, 0.001))
