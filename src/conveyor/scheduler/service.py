"""``conveyor scheduler``: the services that are not workers.

Responsibilities:
- the reaper (every scheduler runs one; they are idempotent);
- the history recorder (when a store is configured);
- cron: schedulers elect a leader through a lock with a fencing token; the leader fires due
  ticks, each under a per-tick dedup key, so a tick fires exactly once even while two
  schedulers briefly both believe they lead.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from typing import TYPE_CHECKING

from conveyor.connect import server_ms
from conveyor.scheduler.cron import ScheduleBook
from conveyor.worker.reaper import reap_once

if TYPE_CHECKING:
    from conveyor.app import Conveyor

log = logging.getLogger("conveyor.scheduler")
LEADER_LOCK = "scheduler-leader"


class Scheduler:
    """Runs the reaper and cron (and the recorder, when ``store_url`` is set)."""

    def __init__(self, app: Conveyor, *, lease_seconds: float | None = None,
                 record_history: bool = True) -> None:
        self.app = app
        self.settings = app.settings
        self.lease_ms = int((lease_seconds or self.settings.scheduler_lease_seconds) * 1000)
        self.grace_ms = self.lease_ms + 2000  # a failover must not turn on-time ticks into misfires
        self.owner = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.book = ScheduleBook(app)
        self.record_history = record_history
        self.leading = False
        self.token = 0
        self._stop = asyncio.Event()
        self._changed = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        await self.sync_code_schedules()
        tasks = [asyncio.create_task(self._reap_loop()), asyncio.create_task(self._cron_loop())]
        if self.record_history:
            tasks.append(asyncio.create_task(self._record()))
        await self._stop.wait()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.leading:
            await self.app.broker.lock("release", LEADER_LOCK, self.owner, self.lease_ms)

    async def sync_code_schedules(self) -> None:
        """Store the schedules declared with ``@app.job(cron=...)`` (code wins over Redis)."""
        for schedule in self.app.code_schedules():
            await self.book.put(schedule)

    async def _reap_loop(self) -> None:
        ttl = self.settings.heartbeat_ttl_seconds
        loop = asyncio.get_running_loop()
        healthy_since = loop.time()
        while True:
            # After Redis was unreachable every worker looks silent until it beats again:
            # judge heartbeats only once Redis has answered us for a whole TTL.
            judge = loop.time() - healthy_since >= ttl
            try:
                await reap_once(self.app.broker, await self.app.queues(), int(ttl * 1000),
                                judge_workers=judge)
            except OSError as exc:
                log.warning("reaper: %s", exc)
                healthy_since = loop.time() + self.settings.reap_seconds
            await asyncio.sleep(self.settings.reap_seconds)  # a period, not a wait for state

    async def _record(self) -> None:
        from conveyor.scheduler.history import run_recorder

        await run_recorder(self.app)

    async def _cron_loop(self) -> None:
        while True:
            try:
                wait = await self._cron_step()
            except OSError as exc:
                log.warning("scheduler: %s", exc)
                self.leading = False
                wait = 1.0
            await asyncio.sleep(wait)  # until the next tick or lease renewal is due

    async def _cron_step(self) -> float:
        """Take or keep the lead, fire due ticks; returns seconds until there is work again."""
        op = "renew" if self.leading else "acquire"
        answer = await self.app.broker.lock(op, LEADER_LOCK, self.owner, self.lease_ms)
        was_leading, self.leading = self.leading, answer > 0
        renew_in = self.lease_ms / 3000
        if not self.leading:
            if was_leading:
                log.warning("scheduler %s lost the lead", self.owner)
            return min(renew_in, -answer / 1000 if answer < 0 else renew_in)
        if not was_leading:
            self.token = answer
            log.info("scheduler %s leads (fencing token %d)", self.owner, answer)
        return min(renew_in, await self.fire_due())

    async def fire_due(self) -> float:
        """Fire every due tick of every schedule; returns seconds until the next tick.

        A schedule that cannot fire is skipped, logged once per distinct error and its
        ``last_error`` kept (``ScheduleBook.fire_due``); transient Redis errors propagate so
        the cron loop's supervisor backs off."""
        now = server_ms(await self.app.redis.time())
        return await self.book.fire_due(now, self.grace_ms)
