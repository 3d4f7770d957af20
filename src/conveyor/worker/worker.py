"""The worker process: claims jobs, runs them, acknowledges them, and never loses one.

Responsibilities, each one task:
- one *fetcher* per queue: claims a batch when slots are free, otherwise blocks on the
  queue's marker (BZPOPMIN) with a timeout that doubles as the connection watchdog;
- one task per running job (async handlers directly, sync ones in a thread pool);
- the *acker*: completes finished jobs in batches, one script call per queue;
- the *renewer*: extends every lease it holds in one call per queue, and stops handlers whose
  lease was lost or whose cancellation was requested;
- the *heartbeat*: keeps the worker's info and liveness in Redis;
- the *reaper*: requeues orphans of dead workers and expired leases;
- the *cancel listener*: stops a running job within moments of ``app.cancel``;
- shutdown: on the first SIGTERM/SIGINT stop claiming, give running jobs the grace period,
  then hand the rest back to their queues; a second signal skips the grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from redis.asyncio import Redis
from redis.exceptions import ConnectionError, TimeoutError

from conveyor import serde
from conveyor.broker.broker import Completion
from conveyor.broker.codes import END_CANCELED, NO_RETRY, Code, FailOutcome
from conveyor.connect import make_redis
from conveyor.job import ClaimedJob
from conveyor.worker.backoff import full_jitter
from conveyor.worker.context import Context
from conveyor.worker.reaper import reap_once
from conveyor.worker.runner import HandlerTimeout, Outcome, error_dict, execute

if TYPE_CHECKING:
    from conveyor.app import Conveyor

log = logging.getLogger("conveyor.worker")
REDIS_ERRORS = (ConnectionError, TimeoutError, OSError)


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


@dataclass
class Running:
    job: ClaimedJob
    ctx: Context
    task: asyncio.Task[None] | None = None
    stop_reason: str | None = None  # "lease lost" | "canceled" | "shutdown" | "timeout"
    timer: asyncio.TimerHandle | None = None


@dataclass
class Stats:
    processed: int = 0
    failed: int = 0
    stale: int = 0
    started_ms: int = field(default_factory=lambda: int(time.time() * 1000))


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
        self.queues = queues or sorted({jt.queue for jt in app.registry.values()}) or ["default"]
        self.concurrency = concurrency
        self.grace = self.settings.grace_seconds if grace is None else grace
        self.id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.running: dict[str, Running] = {}
        self.stats = Stats()
        self._free = concurrency
        self._slot_freed = asyncio.Event()
        self._acks: dict[str, list[Completion]] = {}
        self._ack_ready = asyncio.Event()
        self._ack_lock = asyncio.Lock()
        self._claiming: set[str] = set()
        self._stop = asyncio.Event()
        self._signals = 0
        self._executor = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="job")
        self._background: list[asyncio.Task[Any]] = []
        self.stopped_cleanly = False
        # Loop times: since when our heartbeats have landed with no gap over the TTL, and the
        # last one that landed (see _may_judge_workers).
        self._beats_since: float | None = None
        self._last_beat = 0.0

    # -- lifecycle ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Run until ``stop()`` (or a signal, with ``install_signal_handlers``)."""
        await self.app.publish_catalog()
        await self.app._register_queues(self.queues)
        await self._heartbeat_once()
        fetchers = {q: asyncio.create_task(self._fetch(q), name=f"fetch:{q}") for q in self.queues}
        self._background = [
            asyncio.create_task(self._ack_loop(), name="acker"),
            asyncio.create_task(
                self._every(self.settings.renew_seconds, self._renew), name="renew"),
            asyncio.create_task(
                self._every(self.settings.heartbeat_seconds, self._heartbeat_once), name="beat"),
            asyncio.create_task(self._every(self.settings.reap_seconds, self._reap), name="reap"),
            asyncio.create_task(self._listen_cancels(), name="cancels"),
        ]
        log.info("worker %s: queues %s, concurrency %d", self.id, self.queues, self.concurrency)
        await self._stop.wait()
        await self._shutdown(fetchers)

    def stop(self) -> None:
        """First call: graceful stop. Second call: skip the grace period."""
        self._signals += 1
        if self._signals > 1:
            self.grace = 0
            for r in self.running.values():
                self._stop_job(r, "shutdown")
        self._stop.set()

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)

    async def _stop_fetchers(self, fetchers: dict[str, asyncio.Task[None]]) -> None:
        """Cancel fetchers that wait (on the marker or for a slot); one that is claiming
        starts what it claimed and then sees the stop flag."""
        while pending := {q: t for q, t in fetchers.items() if not t.done()}:
            for queue, task in pending.items():
                if queue not in self._claiming:
                    task.cancel()
            await asyncio.wait(pending.values(), timeout=0.5)
        await asyncio.gather(*fetchers.values(), return_exceptions=True)

    async def _shutdown(self, fetchers: dict[str, asyncio.Task[None]]) -> None:
        await self._stop_fetchers(fetchers)
        tasks = [r.task for r in self.running.values() if r.task]
        if tasks and self.grace > 0:
            log.info("worker %s: waiting up to %ss for %d jobs", self.id, self.grace, len(tasks))
            await asyncio.wait(tasks, timeout=self.grace)
        for r in list(self.running.values()):
            self._stop_job(r, "shutdown")
        await asyncio.gather(*[r.task for r in self.running.values() if r.task],
                             return_exceptions=True)
        await self._flush_acks()  # after the acker's own flush in flight, if any
        await cancel_all(self._background)
        await self.app.redis.zrem(self.app.keys.glob.workers, self.id)
        await self.app.redis.delete(self.app.keys.glob.worker(self.id))
        self._executor.shutdown(wait=False, cancel_futures=True)
        self.stopped_cleanly = True
        log.info("worker %s stopped: %s", self.id, self.stats)

    async def _every(self, period: float, step: Any) -> None:
        """Run ``step`` every ``period`` seconds; a Redis outage is logged, never fatal."""
        while True:
            await asyncio.sleep(period)  # a timer is the event here
            try:
                await step()
            except REDIS_ERRORS as exc:
                log.warning("worker %s: %s failed: %s", self.id, step.__name__, exc)

    # -- claiming ----------------------------------------------------------------------------

    def _blocking_client(self) -> Redis:
        # Its own connection, with a socket timeout just past the longest block: a connection
        # that stops answering (the wedge after a failover) raises and is replaced.
        return make_redis(self.settings.redis_url, blocking_timeout=self.settings.block_seconds,
                          retry_on_error=[])

    async def _fetch(self, queue: str) -> None:
        blocker = self._blocking_client()
        marker = self.app.keys.queue(queue).marker
        backoff = 0.05
        try:
            while not self._stop.is_set():
                try:
                    await self._fetch_step(queue, blocker, marker)
                    backoff = 0.05
                except REDIS_ERRORS as exc:
                    log.warning("worker %s: fetch from %s failed: %s", self.id, queue, exc)
                    await blocker.aclose()
                    blocker = self._blocking_client()
                    await asyncio.sleep(backoff)  # reconnect backoff, not synchronisation
                    backoff = min(backoff * 2, 2.0)
        finally:
            await blocker.aclose()

    async def _fetch_step(self, queue: str, blocker: Redis, marker: str) -> None:
        while self._free <= 0:
            self._slot_freed.clear()
            await self._slot_freed.wait()
        want = min(self._free, self.settings.claim_batch)
        # Marked: shutdown never cancels a claim between Redis leasing the jobs and this worker
        # starting them (they would sit leased until the lease ran out).
        self._claiming.add(queue)
        try:
            result = await self.app.broker.claim(queue, self.id, want)
        finally:
            self._claiming.discard(queue)
        for job in result.jobs:
            self._start(job)
        if result.jobs or self._stop.is_set():
            return
        wait = self.settings.block_seconds
        if result.wait_ms >= 0:
            wait = min(wait, result.wait_ms / 1000)
        if wait > 0:
            await blocker.bzpopmin(marker, timeout=max(wait, 0.001))

    def _start(self, job: ClaimedJob) -> None:
        job.started = time.time()
        ctx = Context(job.id, job.type, job.queue, job.attempt, job.max_attempts, self.id, self.app)
        running = Running(job, ctx)
        self.running[job.id] = running
        self._free -= 1
        running.task = asyncio.create_task(self._run_job(running), name=f"job:{job.id}")
        jt = self.app.registry.get(job.type)
        timeout = job.timeout or (jt.timeout if jt else self.settings.timeout_seconds)
        loop = asyncio.get_running_loop()
        running.timer = loop.call_at(loop.time() + timeout, self._stop_job, running, "timeout")

    # -- running -----------------------------------------------------------------------------

    async def _admitted(self, job: ClaimedJob) -> bool:
        """True when the job's execution limits let it run now (else the limit script has
        parked or delayed it, which is no failure)."""
        jt = self.app.registry.get(job.type)
        if jt is None or jt.limits is None:
            return True
        lim = jt.limits
        code, _ = await self.app.broker.limit(
            job, self.id, lim.name(job.type, job.args_json), lim.concurrency, lim.interval_ms,
            lim.burst)
        return code == 1

    async def _run_job(self, r: Running) -> None:
        job = r.job
        try:
            if not await self._admitted(job):
                return
            outcome = await execute(
                self.app.registry.get(job.type), job, r.ctx, self._executor, self.id)
        except asyncio.CancelledError:
            await self._after_stop(r)
            return
        except Exception:
            # Only a bug or a Redis outage gets here; the lease runs out and the job is
            # offered again, so it is not lost, but say so loudly.
            log.exception("worker %s: job %s could not be run or settled", self.id, job.id)
            return
        finally:
            if r.timer:
                r.timer.cancel()
            self.running.pop(job.id, None)
            self._free += 1
            self._slot_freed.set()
        if outcome.ok:
            self._acks.setdefault(job.queue, []).append(
                Completion(job.id, job.attempt, outcome.result_json))
            self._ack_ready.set()
        else:
            await self._fail(job, outcome)

    def _stop_job(self, r: Running, reason: str) -> None:
        if r.task and not r.task.done():
            r.stop_reason = r.stop_reason or reason
            r.ctx._cancelled = True  # a sync handler can see it and return
            r.task.cancel()

    async def _after_stop(self, r: Running) -> None:
        """A handler was stopped from outside: settle the job by the reason."""
        reason = r.stop_reason or "shutdown"
        if reason == "lease lost":
            return  # someone else holds the job now; nothing of ours to write
        if reason == "canceled":
            error = {"type": "Canceled", "message": "canceled on request", "worker": self.id}
            await self.app.broker.fail(r.job, self.id, error, END_CANCELED)
            return
        if reason == "timeout":
            timeout = HandlerTimeout(f"timed out after {r.job.timeout:g}s")
            await self._fail(r.job, Outcome(False, error=error_dict(timeout, r.job, self.id)))
            return
        await self.app.broker.release(r.job, self.id, "worker shutdown")

    async def _fail(self, job: ClaimedJob, outcome: Outcome) -> None:
        self.stats.failed += 1
        jt = self.app.registry.get(job.type)
        if not outcome.retryable:
            delay_ms = NO_RETRY
        elif outcome.retry_delay is not None:
            delay_ms = int(max(0.0, outcome.retry_delay) * 1000)
        else:
            base = (jt.backoff_base if jt and jt.backoff_base is not None
                    else self.settings.backoff_base_seconds)
            cap = (jt.backoff_cap if jt and jt.backoff_cap is not None
                   else self.settings.backoff_cap_seconds)
            delay_ms = int(full_jitter(job.failures + 1, base, cap) * 1000)
        code, _ = await self.app.broker.fail(job, self.id, outcome.error or {}, delay_ms)
        if code == Code.STALE_LEASE:
            self.stats.stale += 1
        elif code == FailOutcome.DEAD:
            log.warning("job %s (%s) is dead: %s", job.id, job.type, (outcome.error or {}).get(
                "message"))

    # -- acknowledging -----------------------------------------------------------------------

    async def _ack_loop(self) -> None:
        while True:
            await self._ack_ready.wait()
            self._ack_ready.clear()
            try:
                await self._flush_acks()
            except REDIS_ERRORS as exc:
                log.warning("worker %s: acknowledging failed, will retry: %s", self.id, exc)
                await asyncio.sleep(0.2)  # back off while Redis is away
                self._ack_ready.set()

    async def _flush_acks(self) -> None:
        async with self._ack_lock:  # one flush at a time: shutdown waits for the acker's
            await self._flush_acks_locked()

    async def _flush_acks_locked(self) -> None:
        while self._acks:
            queue, items = self._acks.popitem()
            try:
                codes = await self.app.broker.complete(queue, self.id, items)
            except BaseException:
                self._acks.setdefault(queue, []).extend(items)  # keep them for the retry
                raise
            for code in codes:
                if code == 1:
                    self.stats.processed += 1
                elif code == Code.STALE_LEASE:
                    self.stats.stale += 1
            if Code.STALE_LEASE in codes:
                log.warning("worker %s: %d late completions refused (their lease had moved on)",
                            self.id, codes.count(Code.STALE_LEASE))

    # -- leases, liveness, orphans -----------------------------------------------------------

    async def _renew(self) -> None:
        by_queue: dict[str, list[tuple[str, int]]] = {}
        for r in self.running.values():
            by_queue.setdefault(r.job.queue, []).append((r.job.id, r.job.attempt))
        for queue, leases in by_queue.items():
            lost, cancel = await self.app.broker.renew(queue, leases)
            for job_id in lost:
                if job_id in self.running:
                    log.warning("worker %s: lease of job %s lost; stopping it", self.id, job_id)
                    self._stop_job(self.running[job_id], "lease lost")
            for job_id in cancel:
                if job_id in self.running:
                    self._stop_job(self.running[job_id], "canceled")

    def info(self) -> dict[str, Any]:
        current = [{"id": r.job.id, "queue": r.job.queue, "type": r.job.type,
                    "attempt": r.job.attempt, "started": r.job.started}
                   for r in self.running.values()]
        return {
            "id": self.id, "host": socket.gethostname(), "pid": os.getpid(),
            "queues": serde.dumps(self.queues), "concurrency": self.concurrency,
            "started": self.stats.started_ms, "processed": self.stats.processed,
            "failed": self.stats.failed, "stale": self.stats.stale,
            "current": serde.dumps(current),
        }

    async def _heartbeat_once(self) -> None:
        ttl_ms = int(max(self.settings.heartbeat_ttl_seconds * 20, 3600) * 1000)
        await self.app.broker.heartbeat(self.id, self.info(), ttl_ms)
        now = asyncio.get_running_loop().time()
        if self._beats_since is None or now - self._last_beat > self.settings.heartbeat_ttl_seconds:
            self._beats_since = now  # our own heartbeat was silent past the TTL meanwhile
        self._last_beat = now

    def _may_judge_workers(self) -> bool:
        """Heartbeats say who is dead only once ours have landed regularly for a whole TTL.

        While Redis is unreachable, and after it comes back, every worker looks silent (as
        they do to a process that was starved of CPU): the others need a TTL to beat again,
        or the first reaper back takes their running jobs, and a job re-claimed by a worker
        that is reaped in turn piles up deaths until it ends as a poison pill."""
        now = asyncio.get_running_loop().time()
        ttl = self.settings.heartbeat_ttl_seconds
        return (self._beats_since is not None and now - self._last_beat <= ttl
                and now - self._beats_since >= ttl)

    async def _reap(self) -> None:
        queues = await self.app.queues()
        await reap_once(self.app.broker, queues, int(self.settings.heartbeat_ttl_seconds * 1000),
                        alive=self.id, judge_workers=self._may_judge_workers())

    async def _listen_cancels(self) -> None:
        """Stop a running job as soon as its cancellation is published (renewal backs it up)."""
        while True:
            pubsub = self.app.redis.pubsub()
            try:
                await pubsub.subscribe(self.app.broker.cancel_channel)
                async for message in pubsub.listen():
                    job_id = message.get("data")
                    if message.get("type") == "message" and job_id in self.running:
                        self._stop_job(self.running[job_id], "canceled")
            except REDIS_ERRORS as exc:
                log.warning("worker %s: cancel listener reconnecting: %s", self.id, exc)
                await asyncio.sleep(1.0)  # reconnect backoff
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
