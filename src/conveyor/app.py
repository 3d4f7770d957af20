"""``Conveyor``: the application object. Registers job types and submits, inspects and steers
jobs. Everything else (worker, scheduler, API, CLI) goes through it."""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from typing import Any, TypeVar

import orjson
from redis.asyncio import Redis

from conveyor import serde, submit
from conveyor.broker.broker import Broker, MissingParent
from conveyor.broker.codes import CancelOutcome, Code
from conveyor.broker.keys import Keys, check_name
from conveyor.connect import make_redis, strs, text_map
from conveyor.errors import (
    ConveyorError,
    InvalidState,
    JobNotFound,
    UnknownJobType,
    ValidationError,
)
from conveyor.handle import JobHandle
from conveyor.job import JobInfo, NewJob
from conveyor.locks import Lock
from conveyor.middleware import Middleware, Middlewares
from conveyor.registry import JobType, unknown_option
from conveyor.scheduler.cron import Schedule, ScheduleBook, parse_schedule
from conveyor.settings import Settings, announce_up_url, up_redis_url
from conveyor.store.base import Store
from conveyor.worker.context import Context

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")
LOCATE_CACHE = 50_000


class Conveyor:
    """The app: job registry, Redis connections (one per event loop), submission and control.

    ``Conveyor()`` reads ``CONVEYOR_*`` settings; keyword arguments override them. Redis is
    ``redis_url`` if given, else ``CONVEYOR_REDIS_URL``, else the server a ``conveyor up``
    runs in the working folder (its ``.conveyor/redis.url``, logged), else the default.
    ``async with Conveyor() as app:`` closes its connections at the end (``await
    app.close()`` does the same).
    """

    def __init__(
        self,
        redis_url: str | None = None,
        store_url: str | None = None,
        prefix: str | None = None,
        settings: Settings | None = None,
        middleware: Iterable[Middleware] = (),
        **overrides: Any,
    ) -> None:
        self.redis_url_given = redis_url is not None or settings is not None
        if not self.redis_url_given:
            redis_url = up_redis_url()  # None unless `conveyor up` runs in this folder
            if redis_url:
                announce_up_url(redis_url)
        given = {"redis_url": redis_url, "store_url": store_url, "prefix": prefix, **overrides}
        base = settings or Settings()
        self.settings = base.model_copy(update={k: v for k, v in given.items() if v is not None})
        self.keys = Keys(self.settings.prefix)
        self.registry: dict[str, JobType] = {}
        self._conns: dict[asyncio.AbstractEventLoop, tuple[Redis, Broker]] = {}
        self._located: OrderedDict[str, str] = OrderedDict()
        self._known_queues: set[str] = set()
        self._catalog_cache: dict[str, tuple[float, dict[str, Any] | None]] = {}
        self._sync: _SyncRunner | None = None
        self._code_schedules: dict[str, Schedule] = {}
        self._stores: dict[asyncio.AbstractEventLoop, Store] = {}
        self.middleware = Middlewares(middleware)

    def add_middleware(self, middleware: Middleware) -> None:
        """Add a ``conveyor.middleware.Middleware``: its hooks run after those added before."""
        self.middleware.add(middleware)

    def configure(self, **overrides: Any) -> None:
        """Change settings before the app first connects (e.g. ``redis_url``)."""
        if self._conns:
            raise ConveyorError("configure() must be called before the app connects to Redis")
        self.settings = self.settings.model_copy(update=overrides)
        self.keys = Keys(self.settings.prefix)

    # -- registration ------------------------------------------------------------------------

    def job(
        self,
        name: str | None = None,
        *,
        queue: str = "default",
        queues: Iterable[str] = (),
        max_attempts: int | None = None,
        timeout: float | None = None,
        priority: str = "normal",
        backoff_base: float | None = None,
        backoff_cap: float | None = None,
        cron: str | None = None,
        tz: str = "UTC",
        misfire: str = "once",
        rate: str | None = None,
        burst: int | None = None,
        concurrency: int | None = None,
        limit_key: str | None = None,
        process: bool = False,
        **extra: Any,
    ) -> Callable[[F], F]:
        """Register a handler: ``@app.job(queue="emails", max_attempts=5, timeout=30)``.

        With ``cron="*/5 * * * *"`` (and ``tz``, ``misfire``) the schedulers also submit it on
        that schedule, with no arguments; the schedule is named after the job type.

        ``rate="100/m"`` and ``concurrency=5`` limit the type across all workers (per value
        of the argument ``limit_key`` when given); a job over a limit waits, uncounted. The
        rate allows a burst of its count (``"6/m"``: 6 at once, then one every 10 s; set
        ``burst=`` to change it, ``burst=1`` for even spacing). Limited jobs start in
        submission order within a priority.

        ``process=True`` runs a sync handler in a child process, which a timeout or a
        cancellation kills (after SIGTERM and a grace period): for CPU-bound work.

        ``queues=["media-bulk"]`` declares more queues its jobs may be submitted to over HTTP
        (the API refuses any other); workers started without ``--queues`` serve them too."""

        if extra:
            raise unknown_option(sorted(extra)[0], self._job_options())

        def register(func: F) -> F:
            job_name = name or func.__name__
            if cron is not None:
                self._code_schedules[job_name] = parse_schedule(
                    {"name": job_name, "type": job_name, "cron": cron, "tz": tz,
                     "misfire": misfire})
            check_name("job type", job_name)
            check_name("queue", queue)
            more = tuple(dict.fromkeys(check_name("queue", q) for q in queues if q != queue))
            submit.check_priority(priority)
            self.registry[job_name] = JobType.from_function(
                job_name, func, queue=queue, priority=priority,
                max_attempts=submit.check_attempts(max_attempts or self.settings.max_attempts),
                timeout=timeout or self.settings.timeout_seconds,
                backoff_base=backoff_base, backoff_cap=backoff_cap,
                rate=rate, burst=burst, concurrency=concurrency, limit_key=limit_key,
                process=process,
                queues=more,
            )
            return func

        return register

    def _job_options(self) -> list[str]:
        params = inspect.signature(self.job).parameters.values()
        return [p.name for p in params if p.kind is not p.VAR_KEYWORD]

    # -- connections -------------------------------------------------------------------------

    def _conn(self) -> tuple[Redis, Broker]:
        loop = asyncio.get_running_loop()
        conn = self._conns.get(loop)
        if conn is None:
            redis = make_redis(self.settings.redis_url)
            conn = (redis, Broker(redis, self.keys, self.settings))
            self._conns[loop] = conn
        return conn

    @property
    def redis(self) -> Redis:
        """The Redis client of the running event loop."""
        return self._conn()[0]

    @property
    def broker(self) -> Broker:
        return self._conn()[1]

    async def history(self) -> Store:
        """The history store named by ``store_url`` (opened once per event loop): every job
        Redis has let go of, with its attempts; search, counts, time series, retention."""
        loop = asyncio.get_running_loop()
        if loop not in self._stores:
            from conveyor.store import open_store

            self._stores[loop] = await open_store(
                self.settings.store_url, retention_days=self.settings.history_retention_days)
        return self._stores[loop]

    async def close(self) -> None:
        store = self._stores.pop(asyncio.get_running_loop(), None)
        if store is not None:
            await store.close()
        conn = self._conns.pop(asyncio.get_running_loop(), None)
        if conn:
            await conn[0].aclose()
        if self._sync:
            self._sync.close()
            self._sync = None

    async def __aenter__(self) -> Conveyor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- submission --------------------------------------------------------------------------

    async def enqueue(
        self,
        type: str,
        args: Mapping[str, Any] | None = None,
        *,
        queue: str | None = None,
        priority: str | None = None,
        delay: float | None = None,
        run_at: Any = None,
        max_attempts: int | None = None,
        idempotency_key: str | None = None,
        timeout: float | None = None,
        meta: Mapping[str, Any] | None = None,
        depends_on: list[str] | None = None,
        on_parent_failure: str | None = None,
    ) -> JobHandle:
        """Submit one job. Raises a ``ValidationError`` (naming the field) for bad input.

        ``depends_on`` (ids of jobs in the same queue) holds the job until they complete; if
        one ends dead or canceled the job is canceled, or runs with ``on_parent_failure="run"``.
        """
        spec = {"type": type, "args": args, "queue": queue, "priority": priority, "delay": delay,
                "run_at": run_at, "max_attempts": max_attempts,
                "idempotency_key": idempotency_key, "timeout": timeout, "meta": meta,
                "depends_on": depends_on, "on_parent_failure": on_parent_failure}
        if self.middleware:
            return (await self.enqueue_many([spec], field_prefix=""))[0]
        return await self._submit_one(await self.prepare(spec))

    async def enqueue_many(
        self, specs: Iterable[Mapping[str, Any]], *, field_prefix: str = "jobs"
    ) -> list[JobHandle]:
        """Submit many jobs, all or nothing: every item is validated before any is written,
        and items of one queue go in one atomic script call.

        A batch over several queues (several Cluster slots, so no common transaction) is
        first checked in every queue, read-only, and refused before anything is written; if a
        queue still refuses its part (a concurrent producer took an idempotency key, or a
        parent was deleted, in between), the jobs this call created in the earlier queues are
        taken back by a script, each only while no worker has touched it yet.
        """
        jobs = [await self.prepare(spec, self._item_field(field_prefix, i))
                for i, spec in enumerate(specs)]
        if self.middleware:
            return await self.middleware.enqueue(jobs, self.submit_prepared)
        return await self.submit_prepared(jobs)

    async def submit_one(
        self, job: NewJob, write: Callable[[NewJob], Awaitable[JobHandle]]
    ) -> JobHandle:
        """``write(job)`` (a prepared job) between the middleware's enqueue hooks, in the
        caller's task: for writers that batch the jobs of many callers, like the API's."""
        if not self.middleware:
            return await write(job)

        async def one(jobs: list[NewJob]) -> list[JobHandle]:
            return [await write(jobs[0])]

        return (await self.middleware.enqueue([job], one))[0]

    @staticmethod
    def _item_field(prefix: str, index: int) -> str:
        return f"{prefix}[{index}]." if prefix else ""

    async def prepare(self, spec: Mapping[str, Any], field: str = "") -> NewJob:
        """Validate one submission (a mapping with the ``enqueue`` keyword names)."""
        if not submit.SUBMIT_FIELDS.issuperset(spec):
            name = sorted(set(spec) - submit.SUBMIT_FIELDS)[0]
            raise ValidationError(f"{field}{name}", f"{field}{name} is not a submission field")
        type_ = spec.get("type")
        if not isinstance(type_, str):
            raise ValidationError(f"{field}type", f"{field}type must be a job type name")
        args_json = submit.encode_args(spec.get("args"), f"{field}args")
        defaults = await self._validate_args(type_, args_json, f"{field}args", f"{field}type")
        get = spec.get
        queue, priority = get("queue"), get("priority")
        max_attempts, timeout = get("max_attempts"), get("timeout")
        return submit.build(
            type_, args_json,
            queue=defaults["queue"] if queue is None else queue,
            priority=defaults["priority"] if priority is None else priority,
            delay=get("delay"), run_at=get("run_at"),
            max_attempts=defaults["max_attempts"] if max_attempts is None else max_attempts,
            timeout=defaults["timeout"] if timeout is None else timeout,
            idempotency_key=spec.get("idempotency_key"), meta=spec.get("meta"),
            depends_on=spec.get("depends_on"), on_parent_failure=spec.get("on_parent_failure"),
            field=field,
        )

    async def _validate_args(
        self, type_: str, args_json: str, args_field: str, type_field: str
    ) -> dict[str, Any]:
        """Validate against the local handler, else the catalog workers publish."""
        local = self.registry.get(type_)
        if local is not None:
            local.validate_json(args_json, args_field)
            return {"queue": local.queue, "priority": local.priority,
                    "max_attempts": local.max_attempts, "timeout": local.timeout}
        entry = await self.catalog_entry(type_)
        if entry is None:
            err = UnknownJobType(type_, list(await self.catalog()))
            err.field = type_field
            raise err
        from conveyor.catalog import validate_with_schema

        validate_with_schema(entry["schema"], orjson.loads(args_json), args_field, type_)
        return entry

    async def submit_prepared(self, jobs: list[NewJob]) -> list[JobHandle]:
        """Write validated jobs: one script call per queue, all or nothing (see
        ``enqueue_many`` and ``Broker.enqueue_many``)."""
        if len(jobs) == 1:
            return [await self._submit_one(jobs[0])]
        by_queue: dict[str, list[int]] = {}
        for i, job in enumerate(jobs):
            by_queue.setdefault(job.queue, []).append(i)
        await self._register_queues(by_queue)
        try:
            answers = await self.broker.enqueue_many(
                {queue: [jobs[i] for i in indexes] for queue, indexes in by_queue.items()})
        except MissingParent as exc:
            i = by_queue[exc.queue][exc.index]
            raise _missing_parent(exc, self._item_field("jobs", i)) from None
        results: list[Any] = [None] * len(jobs)
        for queue, indexes in by_queue.items():
            for i, res in zip(indexes, answers[queue], strict=True):
                results[i] = res
        return [self._handle(job, res) for job, res in zip(jobs, results, strict=True)]

    async def _submit_one(self, job: NewJob) -> JobHandle:
        """One validated job: the enqueue script's one-job form (``Broker.enqueue_one``),
        without the batch's grouping by queue."""
        if job.queue not in self._known_queues:
            await self._register_queues((job.queue,))
        try:
            res = await self._conn()[1].enqueue_one(job)
        except MissingParent as exc:
            raise _missing_parent(exc, "") from None
        return self._handle(job, res)

    def _handle(self, job: NewJob, res: Any) -> JobHandle:
        # A key naming another job was refused by the script before it wrote anything.
        self._remember(res.id, job.queue)
        return JobHandle(self, res.id, job.queue, res.status or "existing", res.created)

    async def _register_queues(self, queues: Iterable[str]) -> None:
        new = [q for q in queues if q not in self._known_queues]
        if new:
            await self.redis.sadd(self.keys.glob.queues, *new)
            self._known_queues.update(new)

    def enqueue_sync(self, *args: Any, **kwargs: Any) -> JobHandle:
        """``enqueue`` for synchronous code (runs on a private event loop thread)."""
        return self._run_sync(self.enqueue(*args, **kwargs))

    def _run_sync(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._sync is None:
            self._sync = _SyncRunner()
        return self._sync.run(coro)

    # -- lookups -----------------------------------------------------------------------------

    def _remember(self, job_id: str, queue: str) -> None:
        self._located[job_id] = queue
        if len(self._located) > LOCATE_CACHE:
            self._located.popitem(last=False)

    async def queues(self) -> list[str]:
        return sorted(strs(await self.redis.smembers(self.keys.glob.queues)))

    async def locate(self, job_id: str) -> str | None:
        """The queue of a job still in Redis (ids are opaque; one pipelined EXISTS per queue)."""
        if job_id in self._located:
            return self._located[job_id]
        queues = await self.queues()
        async with self.redis.pipeline(transaction=False) as pipe:
            for q in queues:
                pipe.exists(self.keys.queue(q).job(job_id))
            found = await pipe.execute()
        for q, hit in zip(queues, found, strict=True):
            if hit:
                self._remember(job_id, q)
                return q
        return None

    async def get_job(self, job_id: str) -> JobInfo | None:
        """The job's live state from Redis, or None if Redis no longer has it."""
        queue = await self.locate(job_id)
        if queue is None:
            return None
        h = text_map(await self.redis.hgetall(self.keys.queue(queue).job(job_id)))
        return JobInfo.from_hash(h) if h else None

    async def _require(self, job_id: str) -> str:
        queue = await self.locate(job_id)
        if queue is None:
            raise JobNotFound(job_id)
        return queue

    # -- control -----------------------------------------------------------------------------

    async def cancel(self, job_id: str) -> str:
        """Cancel a job: 'canceled' at once if waiting, 'cancel_requested' if running."""
        queue = await self._require(job_id)
        code, status = await self.broker.cancel(queue, job_id)
        if code == CancelOutcome.CANCELED:
            return "canceled"
        if code == CancelOutcome.REQUESTED:
            return "cancel_requested"
        if code == Code.MISSING:
            raise JobNotFound(job_id)
        raise InvalidState(job_id, status, "cancel")

    async def retry(self, job_id: str) -> None:
        """Queue a dead or canceled job again with a fresh attempt budget."""
        queue = await self._require(job_id)
        code, status = await self.broker.retry(queue, job_id)
        if code == Code.MISSING:
            raise JobNotFound(job_id)
        if code == Code.WRONG_STATE:
            raise InvalidState(job_id, status, "retry")

    async def delete(self, job_id: str) -> None:
        queue = await self._require(job_id)
        (code,) = await self.broker.delete(queue, [job_id])
        if code == Code.MISSING:
            raise JobNotFound(job_id)
        if code == Code.WRONG_STATE:
            raise InvalidState(job_id, "active", "delete (cancel it first)")

    async def pause(self, queue: str) -> None:
        await self._register_queues([check_name("queue", queue)])
        await self.broker.pause(queue, True)

    async def resume(self, queue: str) -> None:
        await self._register_queues([check_name("queue", queue)])
        await self.broker.pause(queue, False)

    async def retry_dead(self, queue: str, job_ids: Iterable[str] | None = None) -> int:
        """Queue dead jobs of ``queue`` again (all of them when ``job_ids`` is None)."""
        qk = self.keys.queue(queue)
        ids = (list(job_ids) if job_ids is not None
               else strs(await self.redis.zrange(qk.dead, 0, -1)))
        done = 0
        for job_id in ids:
            code, _ = await self.broker.retry(queue, job_id)
            done += code == 1
        return done

    async def purge_dead(self, queue: str, job_ids: Iterable[str] | None = None) -> int:
        """Delete dead jobs of ``queue`` (all of them when ``job_ids`` is None); ids that are
        not in the dead-letter queue are left alone."""
        qk = self.keys.queue(queue)
        ids = strs(await self.redis.zrange(qk.dead, 0, -1))
        if job_ids is not None:
            wanted = set(job_ids)
            ids = [i for i in ids if i in wanted]
        deleted = 0
        for start in range(0, len(ids), 500):
            codes = await self.broker.delete(queue, ids[start:start + 500])
            deleted += codes.count(1)
        return deleted

    async def _progress(self, ctx: Context, fraction: float, message: str | None) -> None:
        value = submit.check_number(fraction, "fraction", minimum=0.0, maximum=1.0)
        await self.broker.progress(ctx.queue, ctx.job_id, ctx.attempt, value, message or "")

    def code_schedules(self) -> list[Schedule]:
        """Schedules declared with ``@app.job(cron=...)``."""
        return list(self._code_schedules.values())

    @property
    def schedules(self) -> ScheduleBook:
        """Run-time schedule management: put, get, all, set_paused, delete, run_now."""
        return ScheduleBook(self)

    def lock(self, name: str, ttl: float = 30.0, timeout: float | None = None) -> Lock:
        """A distributed lock with a fencing token: ``async with app.lock("name") as lock``."""
        return Lock(self, name, ttl, timeout)

    # -- catalog -----------------------------------------------------------------------------

    async def catalog(self) -> dict[str, dict[str, Any]]:
        """Job types workers have published (name -> queue, schema, defaults)."""
        raw = text_map(await self.redis.hgetall(self.keys.glob.catalog))
        out = {name: serde.loads(value) for name, value in raw.items()}
        for name, jt in self.registry.items():
            out.setdefault(name, jt.catalog_entry())
        return out

    async def catalog_entry(self, name: str) -> dict[str, Any] | None:
        loop = asyncio.get_running_loop()
        cached = self._catalog_cache.get(name)
        if cached and cached[0] > loop.time():
            return cached[1]
        raw = await self.redis.hget(self.keys.glob.catalog, name)
        entry: dict[str, Any] | None = serde.loads(raw) if raw else None
        self._catalog_cache[name] = (loop.time() + 5.0, entry)
        return entry

    async def publish_catalog(self) -> None:
        if self.registry:
            await self.redis.hset(self.keys.glob.catalog, mapping={
                name: serde.dumps(jt.catalog_entry()) for name, jt in self.registry.items()})


def _missing_parent(exc: MissingParent, field: str) -> ValidationError:
    return ValidationError(
        f"{field}depends_on",
        f"job {exc.parent!r} it depends on is not in queue {exc.queue!r} (dependencies "
        "must be jobs of the same queue that Redis still holds)")


class _SyncRunner:
    """An event loop on a daemon thread, so sync code can call the async API."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
