"""The worker process: claims jobs, runs them, acknowledges them, and never loses one.

It is put together from one part per concern, each a loop under one ``Supervisor`` (a
transient Redis error backs the loop off and retries it forever; a bug restarts it; a loop
that keeps crashing ends the process non-zero):

- ``Fetcher`` (one per queue, ``fetcher.py``): claims when ``Slots`` are free, else blocks
  on the queue's marker;
- ``JobRunner`` (``runner.py``): one task per running job, timeouts, failures, stops;
- ``Acker`` (``acker.py``): completes finished jobs in batches;
- ``LeaseKeeper`` (``leases.py``): renews every lease in one call per queue;
- ``Liveness`` (``liveness.py``): the heartbeat, from a thread that a blocked event loop
  cannot stop, and the warning that names a handler that blocked the loop;
- here: the reaper, the cancel listener, and shutdown: on the first SIGTERM/SIGINT stop
  claiming, give running jobs the grace period, then hand the rest back to their queues; a
  second signal skips the grace period.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from conveyor import serde
from conveyor.catalog import warn_on_conflicts
from conveyor.job import ClaimedJob
from conveyor.supervise import LoopHealth, Supervisor, describe, every, is_transient
from conveyor.worker.acker import Acker
from conveyor.worker.fetcher import Fetcher
from conveyor.worker.leases import LeaseKeeper
from conveyor.worker.liveness import Liveness
from conveyor.worker.reaper import SETTLE_SECONDS, reap_once
from conveyor.worker.runner import JobRunner, Outcome, Running
from conveyor.worker.slots import Slots
from conveyor.worker.stats import Stats

if TYPE_CHECKING:
    from conveyor.app import Conveyor

log = logging.getLogger("conveyor.worker")
__all__ = ["Running", "Stats", "Worker", "cancel_all"]


async def cancel_all(tasks: list[asyncio.Task[Any]]) -> None:
    """Cancel ``tasks`` and wait until every one has ended.

    A cancellation can be lost: on Python 3.11, ``asyncio.wait_for`` (which redis-py uses to
    send a command) returns the result instead of raising when the cancellation lands just as
    the send completes, and the task carries on with its loop. So cancel again until done.
    """
    while pending := [t for t in tasks if not t.done()]:
        for task in pending:
            task.cancel()
        await asyncio.wait(pending, timeout=0.5)
    await asyncio.gather(*tasks, return_exceptions=True)


class Worker:
    """Runs the app's registered jobs from ``queues`` with at most ``concurrency`` at once."""

    def __init__(
        self,
        app: Conveyor,
        queues: list[str] | None = None,
        concurrency: int = 10,
        *,
        grace: float | None = None,
        worker_id: str | None = None,
    ) -> None:
        self.app = app
        self.settings = app.settings
        self.queues = queues or sorted(
            {q for jt in app.registry.values() for q in jt.all_queues}) or ["default"]
        self.concurrency = concurrency
        self.grace = self.settings.grace_seconds if grace is None else grace
        self.id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.stats = Stats()
        self.slots = Slots(concurrency)
        self._stop = asyncio.Event()
        self._signals = 0
        self._executor = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="job")
        self.acker = Acker(app.broker, self.id, self.stats)
        self.runner = JobRunner(app, self.id, self.slots, self.acker, self.stats, self._executor)
        self.leases = LeaseKeeper(app, self.id, self.runner)
        self.liveness = Liveness(app, self.id, self.info, self.stats)
        # One queue: its fetcher claims in the same round trip as its wake-up (see Fetcher).
        self.fetchers = {q: Fetcher(app, q, self.id, self.slots, self.runner, self._stop,
                                    wake_claims=len(self.queues) == 1)
                         for q in self.queues}
        self.supervisor = Supervisor("worker", backoff_cap=2.0)
        self.stopped_cleanly = False

    @property
    def running(self) -> dict[str, Running]:
        return self.runner.running

    # -- lifecycle ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Run until ``stop()`` (or a signal, with ``install_signal_handlers``)."""
        await warn_on_conflicts(self.app)
        await self.app.publish_catalog()
        await self.app._register_queues(self.queues)
        await self.app.broker.heartbeat(self.id, self.info(), 3_600_000)
        self.liveness.landed()
        self.liveness.start()
        await self.app.middleware.on_worker_start(self)
        s, sup = self.settings, self.supervisor
        block = s.block_seconds + 10
        fetch_tasks = {q: sup.spawn(f"fetch:{q}", f.loop, stale_after=block)
                       for q, f in self.fetchers.items()}
        sup.spawn("acker", self.acker.loop, stale_after=30)
        sup.spawn("renew", lambda h: every(s.renew_seconds, self.leases.renew, h),
                  stale_after=s.renew_seconds * 3 + 10)
        sup.spawn("reap", lambda h: every(s.reap_seconds, self._reap, h),
                  stale_after=s.reap_seconds * 3 + 10)
        sup.spawn("cancels", self._listen_cancels, stale_after=60, needed=False)
        log.info("worker %s: queues %s, concurrency %d", self.id, self.queues, self.concurrency)
        await self._stop.wait()
        await self._shutdown(fetch_tasks)

    def stop(self) -> None:
        """First call: graceful stop. Second call: skip the grace period."""
        self._signals += 1
        if self._signals > 1:
            self.grace = 0
            self.runner.stop_all("shutdown")
        self._stop.set()

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)

    async def _stop_fetchers(self, tasks: dict[str, asyncio.Task[None]]) -> None:
        """Cancel fetchers that wait (on the marker or for a slot); one that is claiming
        starts what it claimed and then sees the stop flag; one that waits with a claim
        queued behind the wait is unblocked (its claim runs then) and does the same."""
        while pending := {q: t for q, t in tasks.items() if not t.done()}:
            for queue, task in pending.items():
                fetcher = self.fetchers[queue]
                if fetcher.waking:
                    await fetcher.unblock()
                elif not fetcher.claiming:
                    task.cancel()
            await asyncio.wait(pending.values(), timeout=0.5)
        await asyncio.gather(*tasks.values(), return_exceptions=True)

    async def _shutdown(self, fetch_tasks: dict[str, asyncio.Task[None]]) -> None:
        await self._stop_fetchers(fetch_tasks)
        tasks = self.runner.tasks()
        if tasks and self.grace > 0:
            log.info("worker %s: waiting up to %ss for %d jobs", self.id, self.grace, len(tasks))
            await asyncio.wait(tasks, timeout=self.grace)
        self.runner.stop_all("shutdown")
        await asyncio.gather(*self.runner.tasks(), return_exceptions=True)
        await self._final_flush()
        await self.supervisor.stop()
        await self.liveness.stop()
        await self._sign_off()
        self._executor.shutdown(wait=False, cancel_futures=True)
        await self.app.middleware.on_worker_stop(self)
        self.stopped_cleanly = True
        log.info("worker %s stopped: %s", self.id, self.stats)

    async def _final_flush(self) -> None:
        """Acknowledge what finished (after the acker's own flush in flight, if any)."""
        try:
            await self.acker.flush()
        except Exception as exc:
            if not is_transient(exc):
                raise
            log.warning("worker %s: %d completions could not be acknowledged (%s); their "
                        "leases will run out and the jobs will run again", self.id,
                        self.acker.pending, describe(exc))

    async def _sign_off(self) -> None:
        try:
            await self.app.redis.zrem(self.app.keys.glob.workers, self.id)
            await self.app.redis.delete(self.app.keys.glob.worker(self.id))
        except Exception as exc:
            if not is_transient(exc):
                raise
            log.warning("worker %s: could not sign off (%s); others will see its heartbeat "
                        "stop", self.id, describe(exc))

    async def _fail(self, job: ClaimedJob, outcome: Outcome) -> None:
        await self.runner.fail(job, outcome)

    # -- status, orphans, cancellation -------------------------------------------------------

    def info(self) -> dict[str, Any]:
        """What the heartbeat publishes (called from the heartbeat thread too: it reads a
        copy of the running jobs, never iterates the live dict)."""
        current = [{"id": r.job.id, "queue": r.job.queue, "type": r.job.type,
                    "attempt": r.job.attempt, "started": r.job.started}
                   for r in _snapshot(self.runner.running)]
        loops = {**self.supervisor.health(), "heartbeat": self.liveness.health.as_dict()}
        return {
            "id": self.id, "host": socket.gethostname(), "pid": os.getpid(),
            "queues": serde.dumps(self.queues), "concurrency": self.concurrency,
            "types": serde.dumps(sorted(self.app.registry)),
            "started": self.stats.started_ms, "processed": self.stats.processed,
            "failed": self.stats.failed, "stale": self.stats.stale,
            "stalls": self.stats.stalls, "longest_stall_ms": self.stats.longest_stall_ms,
            "current": serde.dumps(current), "loops": serde.dumps(loops),
        }

    async def _reap(self) -> None:
        # After an outage, leases that ran out meanwhile belong to their live owners until
        # those renewed them: wait past a renewal retry before taking expired leases.
        await reap_once(self.app.broker, await self.app.queues(),
                        int(self.settings.heartbeat_ttl_seconds * 1000), alive=self.id,
                        judge_workers=self.liveness.may_judge(),
                        expired_leases=self.liveness.may_judge(settle=SETTLE_SECONDS))

    async def _listen_cancels(self, health: LoopHealth) -> None:
        """Stop a running job as soon as its cancellation is published (renewal backs it up)."""
        pubsub = self.app.redis.pubsub()
        try:
            await pubsub.subscribe(self.app.broker.cancel_channel)
            health.ok()
            async with health.idle():
                async for message in pubsub.listen():
                    job_id = message.get("data")
                    if message.get("type") == "message" and job_id in self.running:
                        self.runner.stop(self.running[job_id], "canceled")
        finally:
            await pubsub.aclose()  # type: ignore[no-untyped-call]


def _snapshot(running: dict[str, Running]) -> list[Running]:
    """The running jobs, read from another thread: retry if the dict changed meanwhile."""
    for _ in range(5):
        try:
            return list(running.values())
        except RuntimeError:
            continue
    return []
