"""Runs claimed jobs: a handler's call turned into an ``Outcome``, and the ``JobRunner``
that starts, stops and settles the jobs of one worker."""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import time
import traceback
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from conveyor import serde
from conveyor.broker.broker import Completion
from conveyor.broker.codes import END_CANCELED, NO_RETRY, Code, FailOutcome
from conveyor.errors import ConveyorError, NonRetryable, NotJSON, Retry
from conveyor.job import ClaimedJob
from conveyor.registry import JobType
from conveyor.supervise import describe, is_transient
from conveyor.worker.backoff import full_jitter
from conveyor.worker.context import Context
from conveyor.worker.process import ChildFailed, run_in_child

if TYPE_CHECKING:
    from conveyor.app import Conveyor
    from conveyor.worker.acker import Acker
    from conveyor.worker.slots import Slots
    from conveyor.worker.stats import Stats

log = logging.getLogger("conveyor.worker")
# A job of a type this worker has no handler for goes back for this long (doubling with each
# hand-back of the job, to the cap, plus up to as much jitter): long enough not to spin, short
# enough that a worker with the type picks it up within a few seconds.
HANDBACK_FIRST_MS = 1000
HANDBACK_CAP_MS = 10_000


@dataclass(frozen=True, slots=True)
class Outcome:
    """``ok`` with ``result_json``, or an error with how to go on: ``retry_delay`` is None for
    backoff, a number of seconds for ``Retry(delay=...)``, and ``retryable`` False for the DLQ."""

    ok: bool
    result_json: str = "null"
    error: dict[str, Any] | None = None
    retryable: bool = True
    retry_delay: float | None = None
    value: Any = None  # the handler's return value, for middleware
    exception: BaseException | None = None  # what failed, for middleware


class HandlerTimeout(ConveyorError):
    """The handler ran past its timeout and was stopped (a sync one is told via ctx)."""


def error_dict(exc: BaseException, job: ClaimedJob, worker_id: str) -> dict[str, Any]:
    remote = exc.remote_traceback if isinstance(exc, ChildFailed) else ""
    return {
        "type": type(exc).__name__,
        "message": str(exc) or type(exc).__name__,
        "traceback": remote or "".join(traceback.format_exception(exc)),
        "worker": worker_id,
        "attempt": job.attempt,
        "started": job.started,
        "finished": time.time(),
    }


async def run_handler(
    jt: JobType, job: ClaimedJob, ctx: Context, executor: Executor
) -> Any:
    """Validate arguments and call the handler; sync handlers run in the thread pool.

    The worker enforces the timeout (one timer per job, cheaper than a context manager)."""
    if jt.in_process:
        # JSON in, JSON out: the child validates nothing the worker has not validated.
        jt.validate_json(job.args_json)
        return await run_in_child(jt.func, orjson.loads(job.args_json))
    kwargs = jt.call_kwargs(jt.validate_json(job.args_json))
    if jt.ctx_param:
        kwargs[jt.ctx_param] = ctx
    if jt.is_async:
        return await jt.func(**kwargs)
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(executor, functools.partial(jt.func, **kwargs))


async def execute(
    jt: JobType | None, job: ClaimedJob, ctx: Context, executor: Executor, worker_id: str
) -> Outcome:
    """Run the job; every exception becomes an outcome. Cancellation propagates."""
    if jt is None:
        exc = LookupError(f"no handler for job type {job.type!r} on worker {worker_id}")
        return Outcome(False, error=error_dict(exc, job, worker_id), exception=exc)
    try:
        value = await run_handler(jt, job, ctx, executor)
        serde.check_json(value, "result")
        return Outcome(True, result_json=serde.dumps(value), value=value)
    except Retry as exc:
        return Outcome(False, error=error_dict(exc, job, worker_id), retry_delay=exc.delay,
                       exception=exc)
    except (NonRetryable, NotJSON) as exc:
        return Outcome(False, error=error_dict(exc, job, worker_id), retryable=False,
                       exception=exc)
    except ConveyorError as exc:
        retryable = not isinstance(exc, ValueError)  # bad arguments will not get better
        return Outcome(False, error=error_dict(exc, job, worker_id), retryable=retryable,
                       exception=exc)
    except Exception as exc:
        return Outcome(False, error=error_dict(exc, job, worker_id), exception=exc)


@dataclass
class Running:
    job: ClaimedJob
    ctx: Context
    task: asyncio.Task[None] | None = None
    stop_reason: str | None = None  # "lease lost" | "canceled" | "shutdown" | "timeout"
    timer: asyncio.TimerHandle | None = None


class JobRunner:
    """Runs claimed jobs, one task each, and settles the ones that do not complete.

    Responsibilities: start a job (its task, its timeout timer, its execution limit), hand
    a success to the acker, record a failure (backoff, ``Retry``, non-retryable), stop a job
    from outside (timeout, cancel, lost lease, shutdown) and settle it by the reason. A
    settlement that meets a Redis outage is retried until the job's lease is surely gone
    (then the reaper owns the job), so an outage does not turn a failure into a lost lease.
    """

    def __init__(self, app: Conveyor, worker_id: str, slots: Slots, acker: Acker,
                 stats: Stats, executor: Executor) -> None:
        self.app = app
        self.settings = app.settings
        self.worker_id = worker_id
        self.slots = slots
        self.acker = acker
        self.stats = stats
        self.executor = executor
        self.running: dict[str, Running] = {}
        self.middleware = app.middleware
        self._middleware = app.middleware.items  # the same list: checked before any hook
        self._unrunnable: set[str] = set()  # job types handed back, warned about once each
        # Limit checks go out one at a time, in the order the jobs were claimed (the lock
        # is FIFO): parked and rate-delayed jobs then keep their submission order.
        self._limit_turn = asyncio.Lock()

    def start(self, job: ClaimedJob) -> None:
        """Run ``job`` in a task of its own; its slot was taken by the fetcher."""
        job.started = time.time()
        ctx = Context(job.id, job.type, job.queue, job.attempt, job.max_attempts,
                      self.worker_id, self.app)
        running = Running(job, ctx)
        self.running[job.id] = running
        running.task = asyncio.create_task(self._run(running), name=f"job:{job.id}")
        jt = self.app.registry.get(job.type)
        timeout = job.timeout or (jt.timeout if jt else self.settings.timeout_seconds)
        loop = asyncio.get_running_loop()
        running.timer = loop.call_at(loop.time() + timeout, self.stop, running, "timeout")

    def stop(self, r: Running, reason: str) -> None:
        if r.task and not r.task.done():
            r.stop_reason = r.stop_reason or reason
            r.ctx._cancelled = True  # a sync handler can see it and return
            r.task.cancel()

    def stop_all(self, reason: str) -> None:
        for r in list(self.running.values()):
            self.stop(r, reason)

    def tasks(self) -> list[asyncio.Task[None]]:
        return [r.task for r in self.running.values() if r.task]

    async def _admitted(self, job: ClaimedJob) -> bool:
        """True when the job's execution limits let it run now (else the limit script has
        parked or delayed it, which is no failure)."""
        jt = self.app.registry.get(job.type)
        if jt is None or jt.limits is None:
            return True
        lim = jt.limits
        async with self._limit_turn:
            code, _ = await self.app.broker.limit(
                job, self.worker_id, lim.name(job.type, job.args_json), lim.concurrency,
                lim.interval_ms, lim.burst)
        return code == 1

    async def _run(self, r: Running) -> None:
        job = r.job
        try:
            if job.type not in self.app.registry:
                await self._settle("hand back a job", job, lambda: self._hand_back(job))
                return
            if not await self._admitted(job):
                return
            outcome = await (self._process(r) if self._middleware else execute(
                self.app.registry.get(job.type), job, r.ctx, self.executor, self.worker_id))
        except asyncio.CancelledError:
            await self._settle("settle a stopped job", job, lambda: self._after_stop(r))
            return
        except Exception:
            # Only a bug or a Redis outage past every retry gets here; the lease runs out
            # and the job is offered again, so it is not lost, but say so loudly.
            log.exception("worker %s: job %s could not be run or settled", self.worker_id,
                          job.id)
            return
        finally:
            if r.timer:
                r.timer.cancel()
            self.running.pop(job.id, None)
            self.slots.give(1)
        if outcome.ok:
            self.acker.add(job.queue, Completion(job.id, job.attempt, outcome.result_json))
        else:
            await self._settle("record a failure", job, lambda: self.fail(job, outcome))

    async def _hand_back(self, job: ClaimedJob) -> None:
        """A job of a type this app did not register (another app shares the queue): back
        to the queue, unrun, no attempt spent, for a worker that has the type."""
        if job.type not in self._unrunnable:
            self._unrunnable.add(job.type)
            log.warning("worker %s has no handler for job type %r (queue %s): it hands such "
                        "jobs back, unrun, for a worker that registers the type; `conveyor "
                        "status` lists types that no live worker can run", self.worker_id,
                        job.type, job.queue)
        await self.app.broker.handback(job, self.worker_id, HANDBACK_FIRST_MS, HANDBACK_CAP_MS,
                                       random.random())

    async def _process(self, r: Running) -> Outcome:
        """``execute`` between the middleware's ``before_process`` and ``after_process``."""
        job, ctx = r.job, r.ctx
        try:  # a job stopped while before_process runs still gets its after_process
            await self.middleware.before_process(job, ctx)
            outcome = await execute(
                self.app.registry.get(job.type), job, ctx, self.executor, self.worker_id)
        except asyncio.CancelledError as exc:
            stopped: BaseException = exc
            if r.stop_reason == "timeout":
                stopped = HandlerTimeout(f"timed out after {job.timeout:g}s")
            elif r.stop_reason:
                stopped = asyncio.CancelledError(r.stop_reason)
            await self.middleware.after_process(job, ctx, None, stopped)
            raise
        await self.middleware.after_process(job, ctx, outcome.value, outcome.exception)
        return outcome

    async def _settle(
        self, what: str, job: ClaimedJob, call: Callable[[], Awaitable[None]]
    ) -> None:
        """Run ``call``, retrying Redis outages and error replies until the lease is over."""
        deadline = time.monotonic() + self.settings.lease_seconds
        delay = 0.05
        while True:
            try:
                await call()
                return
            except Exception as exc:
                if not is_transient(exc) or time.monotonic() + delay > deadline:
                    log.warning("worker %s: could not %s for job %s (%s); its lease will run "
                                "out and the job will be offered again", self.worker_id, what,
                                job.id, describe(exc))
                    return
            await asyncio.sleep(delay)  # backoff while Redis is away
            delay = min(delay * 2, 2.0)

    async def _after_stop(self, r: Running) -> None:
        """A handler was stopped from outside: settle the job by the reason."""
        reason = r.stop_reason or "shutdown"
        if reason == "lease lost":
            return  # someone else holds the job now; nothing of ours to write
        if reason == "canceled":
            error = {"type": "Canceled", "message": "canceled on request",
                     "worker": self.worker_id}
            await self.app.broker.fail(r.job, self.worker_id, error, END_CANCELED)
            return
        if reason == "timeout":
            timeout = HandlerTimeout(f"timed out after {r.job.timeout:g}s")
            await self.fail(r.job, Outcome(False, error=error_dict(timeout, r.job,
                                                                   self.worker_id),
                                           exception=timeout))
            return
        await self.app.broker.release(r.job, self.worker_id, "worker shutdown")

    async def fail(self, job: ClaimedJob, outcome: Outcome) -> None:
        self.stats.failed += 1
        delay_ms = self._retry_delay_ms(job, outcome)
        code, _ = await self.app.broker.fail(job, self.worker_id, outcome.error or {}, delay_ms)
        if code == Code.STALE_LEASE:
            self.stats.stale += 1
        elif code == FailOutcome.DEAD:
            log.warning("job %s (%s) is dead: %s", job.id, job.type,
                        (outcome.error or {}).get("message"))
        if self._middleware:
            await self._failed_hooks(job, outcome, code, delay_ms)

    async def _failed_hooks(
        self, job: ClaimedJob, outcome: Outcome, code: int, delay_ms: int
    ) -> None:
        error = outcome.exception or RuntimeError((outcome.error or {}).get("message", "failed"))
        if code == FailOutcome.DEAD:
            await self.middleware.on_dead(job, error)
        elif code == FailOutcome.RETRYING:
            await self.middleware.on_retry(job, error, delay_ms / 1000)

    def _retry_delay_ms(self, job: ClaimedJob, outcome: Outcome) -> int:
        if not outcome.retryable:
            return NO_RETRY
        if outcome.retry_delay is not None:
            return int(max(0.0, outcome.retry_delay) * 1000)
        jt = self.app.registry.get(job.type)
        base = (jt.backoff_base if jt and jt.backoff_base is not None
                else self.settings.backoff_base_seconds)
        cap = (jt.backoff_cap if jt and jt.backoff_cap is not None
               else self.settings.backoff_cap_seconds)
        return int(full_jitter(job.failures + 1, base, cap) * 1000)
