"""Middleware: hooks around a job's life, for tracing, metrics, error reporting, tagging.

A ``Middleware`` is a class of no-op hooks (dramatiq's model); override the ones you need,
as plain methods or coroutines, and register it on the app:

    app = Conveyor(middleware=[Timing()])      # or app.add_middleware(Timing())

Where each hook runs:

- ``before_enqueue(job, meta)`` in the caller of ``enqueue``/``enqueue_many`` (a Python
  producer, the API's request, the scheduler's cron tick), once per job, before anything is
  written; ``meta`` is the job's metadata, a dict the hook may change (it is stored with the
  job and handed to the worker).
- ``after_enqueue(job, handle, error)`` in the same task, after the write: ``handle`` when it
  succeeded (``handle.created`` is False for an idempotent repeat), else ``error``.
- ``before_process(job, ctx)`` and ``after_process(job, ctx, result, error)`` in the job's own
  task around the handler, for every attempt (context variables set in ``before_process``
  are seen by an async handler and by ``after_process``); ``error`` is the exception, also
  for a timeout, a cancellation or a shutdown that stopped the handler.
- ``on_retry(job, error, delay)`` and ``on_dead(job, error)`` once the failure is recorded in
  Redis: the job will run again in ``delay`` seconds, or went to the dead-letter queue.
- ``on_worker_start(worker)`` and ``on_worker_stop(worker)`` in a worker process.

A hook that raises is logged with its traceback and otherwise ignored: it never fails, loses
or holds back a job. With no middleware registered, the worker's only cost is one ``if``.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

from conveyor import serde

if TYPE_CHECKING:
    from conveyor.handle import JobHandle
    from conveyor.job import ClaimedJob, NewJob
    from conveyor.worker.context import Context
    from conveyor.worker.worker import Worker

log = logging.getLogger("conveyor.middleware")

HOOKS = ("before_enqueue", "after_enqueue", "before_process", "after_process", "on_retry",
         "on_dead", "on_worker_start", "on_worker_stop")


class Middleware:
    """Every hook of a job's life, each a no-op; each may also be ``async def``."""

    def before_enqueue(self, job: NewJob, meta: dict[str, Any]) -> Awaitable[None] | None:
        """Before ``job`` is written; changes to ``meta`` are stored with the job."""
        return None

    def after_enqueue(
        self, job: NewJob, handle: JobHandle | None, error: BaseException | None
    ) -> Awaitable[None] | None:
        """After the write of ``job``: its ``handle``, or the ``error`` that refused it."""
        return None

    def before_process(self, job: ClaimedJob, ctx: Context) -> Awaitable[None] | None:
        """Before an attempt of ``job`` runs its handler, in the attempt's task."""
        return None

    def after_process(
        self, job: ClaimedJob, ctx: Context, result: Any, error: BaseException | None
    ) -> Awaitable[None] | None:
        """After the handler returned ``result`` or raised (or was stopped with) ``error``."""
        return None

    def on_retry(
        self, job: ClaimedJob, error: BaseException, delay: float
    ) -> Awaitable[None] | None:
        """The failed attempt is recorded; the job runs again in ``delay`` seconds."""
        return None

    def on_dead(self, job: ClaimedJob, error: BaseException) -> Awaitable[None] | None:
        """The job's last attempt failed (or it cannot be retried): it is in the DLQ."""
        return None

    def on_worker_start(self, worker: Worker) -> Awaitable[None] | None:
        """The worker registered and is about to claim jobs."""
        return None

    def on_worker_stop(self, worker: Worker) -> Awaitable[None] | None:
        """The worker settled its jobs and signed off."""
        return None


Hook = Callable[..., Awaitable[None] | None]


class Middlewares:
    """The app's middleware and the runner of their hooks.

    Responsibilities: keep, per hook, only the middleware that override it (so a hook that
    nobody implements costs nothing); run each in registration order (the ``after_*`` hooks
    in reverse, so a middleware wraps the ones registered after it), awaiting those that
    are coroutines; log and swallow what a hook raises.

    ``items`` is the list the worker checks (``if items:``) before it calls any hook.
    """

    def __init__(self, middleware: Iterable[Middleware] = ()) -> None:
        self.items: list[Middleware] = []
        self._hooks: dict[str, list[Hook]] = {name: [] for name in HOOKS}
        for m in middleware:
            self.add(m)

    def __bool__(self) -> bool:
        return bool(self.items)

    def add(self, middleware: Middleware) -> None:
        if not isinstance(middleware, Middleware):
            raise TypeError(f"{middleware!r} is not a conveyor.middleware.Middleware")
        self.items.append(middleware)
        for name in HOOKS:
            if getattr(type(middleware), name) is getattr(Middleware, name):
                continue  # not overridden: never called
            hooks, bound = self._hooks[name], getattr(middleware, name)
            if name.startswith("after_"):
                hooks.insert(0, bound)
            else:
                hooks.append(bound)

    async def _run(self, name: str, *args: Any) -> None:
        for hook in self._hooks[name]:
            try:
                answer = hook(*args)
                if inspect.isawaitable(answer):
                    await answer
            except Exception:
                log.exception("middleware hook %s failed (ignored)", _name(hook))

    # -- enqueue ------------------------------------------------------------------------------

    async def before_enqueue(self, job: NewJob) -> NewJob:
        """Run ``before_enqueue``; returns the job with the metadata the hooks left."""
        if not self._hooks["before_enqueue"]:
            return job
        meta: dict[str, Any] = serde.loads(job.meta_json) or {}
        await self._run("before_enqueue", job, meta)
        try:
            serde.check_json(meta, "meta")
            meta_json = serde.dumps(meta)
        except Exception:
            log.exception("middleware left metadata that is not JSON; job %s keeps its own",
                          job.id)
            return job
        return job if meta_json == job.meta_json else job._replace(meta_json=meta_json)

    async def after_enqueue(
        self, job: NewJob, handle: JobHandle | None, error: BaseException | None
    ) -> None:
        await self._run("after_enqueue", job, handle, error)

    async def enqueue(
        self, jobs: list[NewJob], write: Callable[[list[NewJob]], Awaitable[list[JobHandle]]]
    ) -> list[JobHandle]:
        """``write(jobs)`` between the enqueue hooks of every job."""
        jobs = [await self.before_enqueue(job) for job in jobs]
        try:
            handles = await write(jobs)
        except BaseException as exc:  # a cancelled caller too: spans opened must be closed
            for job in jobs:
                await self.after_enqueue(job, None, exc)
            raise
        for job, handle in zip(jobs, handles, strict=True):
            await self.after_enqueue(job, handle, None)
        return handles

    # -- process ------------------------------------------------------------------------------

    async def before_process(self, job: ClaimedJob, ctx: Context) -> None:
        await self._run("before_process", job, ctx)

    async def after_process(
        self, job: ClaimedJob, ctx: Context, result: Any, error: BaseException | None
    ) -> None:
        await self._run("after_process", job, ctx, result, error)

    async def on_retry(self, job: ClaimedJob, error: BaseException, delay: float) -> None:
        await self._run("on_retry", job, error, delay)

    async def on_dead(self, job: ClaimedJob, error: BaseException) -> None:
        await self._run("on_dead", job, error)

    async def on_worker_start(self, worker: Worker) -> None:
        await self._run("on_worker_start", worker)

    async def on_worker_stop(self, worker: Worker) -> None:
        await self._run("on_worker_stop", worker)


def job_meta(job: ClaimedJob | NewJob) -> dict[str, Any]:
    """The job's metadata as a dict (a fresh copy each call: parse it once per hook)."""
    meta = serde.loads(job.meta_json)
    return meta if isinstance(meta, dict) else {}


def _name(hook: Hook) -> str:
    owner = getattr(hook, "__self__", None)
    return f"{type(owner).__name__}.{hook.__name__}" if owner else repr(hook)


Capture = Callable[[BaseException, dict[str, str], dict[str, Any]], object]


class ErrorReporter(Middleware):
    """Sends job failures to an error tracker through ``capture(error, tags, context)``: the
    exception (with its traceback), tags to search by (``conveyor.queue``,
    ``conveyor.job_type``, ``conveyor.attempt``) and the job's context (id, attempts, worker).

    By default it reports a job once, when it dies (its last attempt failed, or it could not
    be retried); ``every_attempt=True`` reports each failed attempt instead. An attempt
    stopped by a shutdown or a lost lease is no failure and is not reported. With Sentry:

        ErrorReporter(lambda error, tags, context: sentry_sdk.capture_exception(
            error, tags=tags, contexts={"conveyor": context}))
    """

    def __init__(self, capture: Capture, *, every_attempt: bool = False) -> None:
        self.capture = capture
        self.every_attempt = every_attempt

    def after_process(
        self, job: ClaimedJob, ctx: Context, result: Any, error: BaseException | None
    ) -> None:
        # A CancelledError is a shutdown, a cancel request or a lost lease: no failure.
        if self.every_attempt and error is not None and not isinstance(
                error, asyncio.CancelledError):
            self._send(job, error, ctx.worker_id)

    def on_dead(self, job: ClaimedJob, error: BaseException) -> None:
        if not self.every_attempt:
            self._send(job, error, None)

    def _send(self, job: ClaimedJob, error: BaseException, worker_id: str | None) -> None:
        tags = {"conveyor.queue": job.queue, "conveyor.job_type": job.type,
                "conveyor.attempt": str(job.attempt)}
        context: dict[str, Any] = {"job_id": job.id, "attempt": job.attempt,
                                   "max_attempts": job.max_attempts, "priority": job.priority}
        if worker_id is not None:
            context["worker"] = worker_id
        self.capture(error, tags, context)
