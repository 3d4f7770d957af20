"""``conveyor scheduler``: the services that are not workers.

Every loop runs under one ``Supervisor`` (outages and error replies back off and retry
forever; a bug restarts the loop; a loop that keeps crashing ends the process non-zero).
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
import time
import uuid
from typing import TYPE_CHECKING

from conveyor import serde
from conveyor.connect import server_ms
from conveyor.scheduler.cron import ScheduleBook
from conveyor.supervise import LoopHealth, Supervisor, describe, is_transient
from conveyor.worker.reaper import SETTLE_SECONDS, reap_once

if TYPE_CHECKING:
    from conveyor.app import Conveyor

log = logging.getLogger("conveyor.scheduler")
LEADER_LOCK = "scheduler-leader"
STATUS_TTL_MS = 15_000


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
        self.supervisor = Supervisor("scheduler", backoff_cap=2.0)

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        await self.sync_code_schedules()
        s, sup = self.settings, self.supervisor
        sup.spawn("reap", self._reap_loop, stale_after=s.reap_seconds * 3 + 10)
        sup.spawn("cron", self._cron_loop, stale_after=self.lease_ms / 1000 + 10)
        if self.record_history:
            sup.spawn("recorder", self._record, stale_after=60)
        sup.spawn("status", self._publish_status, stale_after=30, needed=False)
        await self._stop.wait()
        await sup.stop()
        await self._step_down()

    async def _step_down(self) -> None:
        """Release the lead and withdraw the status, so another scheduler leads at its next
        try instead of after this one's lease, and ``conveyor status`` and ``/metrics`` stop
        counting this one. Always tried: stopping cancels the cron loop, which clears
        ``leading`` (the lock script releases only a lock this owner holds)."""
        glob = self.app.keys.glob
        try:
            await self.app.broker.lock("release", LEADER_LOCK, self.owner, self.lease_ms)
            async with self.app.redis.pipeline(transaction=True) as pipe:
                pipe.delete(glob.scheduler(self.owner))
                pipe.zrem(glob.schedulers, self.owner)
                await pipe.execute()
        except Exception as exc:
            if not is_transient(exc):
                raise
            log.warning("scheduler %s: could not release the lead (%s); it ends with its "
                        "lease", self.owner, describe(exc))

    async def sync_code_schedules(self) -> None:
        """Store the schedules declared with ``@app.job(cron=...)`` (code wins over Redis)."""
        for schedule in self.app.code_schedules():
            await self.book.put(schedule)

    async def _reap_loop(self, health: LoopHealth) -> None:
        ttl = self.settings.heartbeat_ttl_seconds
        loop = asyncio.get_running_loop()
        healthy_since = last_pass = loop.time()  # the supervisor runs us again after a fault
        while True:
            # After Redis was unreachable or refused writes, every worker looks silent until
            # it beats again, and leases ran out that their live owners are about to renew:
            # judge heartbeats only once Redis has taken our writes for a whole TTL with no
            # gap, and leases later. A fault the client's own retries hid shows as a gap.
            await self._probe_write()
            now = loop.time()
            if now - last_pass > self.settings.reap_seconds + ttl / 2:
                healthy_since = now
            last_pass = now
            healthy = now - healthy_since
            await reap_once(self.app.broker, await self.app.queues(), int(ttl * 1000),
                            judge_workers=healthy >= ttl,
                            expired_leases=healthy >= max(ttl, SETTLE_SECONDS))
            health.ok()
            await asyncio.sleep(self.settings.reap_seconds)  # a period, not a wait for state

    async def _probe_write(self) -> None:
        """A small write: raises while Redis refuses writes (READONLY, OOM), which workers'
        heartbeats meet too, so this reaper does not judge them meanwhile."""
        await self.app.redis.zadd(self.app.keys.glob.schedulers,
                                  {self.owner: int(time.time() * 1000)})

    async def _record(self, health: LoopHealth) -> None:
        from conveyor.scheduler.history import run_recorder

        await run_recorder(self.app, health=health)

    async def _cron_loop(self, health: LoopHealth) -> None:
        try:
            while True:
                wait = await self._cron_step()
                health.ok()
                await asyncio.sleep(wait)  # until the next tick or lease renewal is due
        except BaseException:
            self.leading = False  # take the lead afresh (the lock knows if it is still ours)
            raise

    async def _publish_status(self, health: LoopHealth) -> None:
        """Publish this scheduler's loops for ``conveyor status`` (a key with a short TTL)."""
        glob = self.app.keys.glob
        key = glob.scheduler(self.owner)
        while True:
            now_ms = int(time.time() * 1000)  # only orders and ages out the entries
            status: dict[str, str | int] = {
                "owner": self.owner, "leading": int(self.leading), "token": self.token,
                "published": now_ms, "loops": serde.dumps(self.supervisor.health())}
            async with self.app.redis.pipeline(transaction=True) as pipe:
                pipe.hset(key, mapping=status)  # type: ignore[arg-type]
                pipe.pexpire(key, STATUS_TTL_MS)
                pipe.zadd(glob.schedulers, {self.owner: now_ms})
                pipe.zremrangebyscore(glob.schedulers, "-inf", now_ms - 3_600_000)
                await pipe.execute()
            health.ok()
            await asyncio.sleep(STATUS_TTL_MS / 3000)  # a period

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
