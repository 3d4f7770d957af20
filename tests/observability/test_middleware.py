"""Middleware hooks on a real Redis and a real in-process worker: every hook fires with what it
promises, in order; sync and async hooks alike; a hook that raises is logged and changes
nothing for the job; ``before_enqueue`` can tag a job that the worker then sees."""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from conveyor import Context, Conveyor, JobFailed, NonRetryable, Worker
from conveyor.api import ApiSettings, create_app
from conveyor.embedded import RedisServer
from conveyor.handle import JobHandle
from conveyor.job import ClaimedJob, NewJob
from conveyor.middleware import Middleware, job_meta
from conveyor.worker.runner import HandlerTimeout
from tests.conftest import FAST

TENANT: contextvars.ContextVar[str | None] = contextvars.ContextVar("tenant", default=None)


class Recorder(Middleware):
    """Notes every hook call; ``wait_for`` awaits a note (no polling)."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self._changed = asyncio.Event()

    def _note(self, *call: Any) -> None:
        self.calls.append(call)
        self._changed.set()

    def before_enqueue(self, job: NewJob, meta: dict[str, Any]) -> None:
        self._note("before_enqueue", job.type)

    async def after_enqueue(
        self, job: NewJob, handle: JobHandle | None, error: BaseException | None
    ) -> None:
        self._note("after_enqueue", job.id, handle and handle.id, type(error).__name__)

    async def before_process(self, job: ClaimedJob, ctx: Context) -> None:
        self._note("before_process", job.id, ctx.attempt)

    def after_process(
        self, job: ClaimedJob, ctx: Context, result: Any, error: BaseException | None
    ) -> None:
        self._note("after_process", job.id, ctx.attempt, result, type(error).__name__)

    async def on_retry(self, job: ClaimedJob, error: BaseException, delay: float) -> None:
        self._note("on_retry", job.id, job.attempt, str(error), delay >= 0)

    def on_dead(self, job: ClaimedJob, error: BaseException) -> None:
        self._note("on_dead", job.id, job.attempt, str(error))

    def on_worker_start(self, worker: Worker) -> None:
        self._note("on_worker_start", worker.id)

    async def on_worker_stop(self, worker: Worker) -> None:
        self._note("on_worker_stop", worker.id)

    async def wait_for(self, *prefix: Any) -> tuple[Any, ...]:
        async with asyncio.timeout(10):
            while True:
                for call in self.calls:
                    if call[:len(prefix)] == prefix:
                        return call
                self._changed.clear()
                await self._changed.wait()

    def of(self, job_id: str) -> list[tuple[Any, ...]]:
        return [c for c in self.calls if len(c) > 1 and c[1] == job_id]


class Broken(Middleware):
    """Raises from every hook it has, sync and async."""

    def before_enqueue(self, job: NewJob, meta: dict[str, Any]) -> None:
        meta["unserializable"] = object()  # then raises: the job keeps its own metadata
        raise RuntimeError("broken before_enqueue")

    async def before_process(self, job: ClaimedJob, ctx: Context) -> None:
        raise RuntimeError("broken before_process")

    def after_process(
        self, job: ClaimedJob, ctx: Context, result: Any, error: BaseException | None
    ) -> None:
        raise RuntimeError("broken after_process")

    async def on_worker_start(self, worker: Worker) -> None:
        raise RuntimeError("broken on_worker_start")


class TenantTagging(Middleware):
    """The docs' example: the producer's tenant rides in the job's metadata to the worker."""

    def before_enqueue(self, job: NewJob, meta: dict[str, Any]) -> None:
        tenant = TENANT.get()
        if tenant is not None:
            meta.setdefault("tenant", tenant)

    def before_process(self, job: ClaimedJob, ctx: Context) -> None:
        TENANT.set(job_meta(job).get("tenant"))


def make_app(url: str, *middleware: Middleware) -> Conveyor:
    app = Conveyor(redis_url=url, middleware=middleware, **FAST)

    @app.job(queue="mw", max_attempts=1)
    async def add(a: int, b: int) -> int:
        return a + b

    @app.job(queue="mw", max_attempts=2)
    async def flaky(message: str) -> None:
        raise RuntimeError(message)

    @app.job(queue="mw", max_attempts=1)
    async def refuse(message: str) -> None:
        raise NonRetryable(message)

    @app.job(queue="mw", max_attempts=1, timeout=0.2)
    async def hang() -> None:
        await asyncio.sleep(30)

    @app.job(queue="mw", max_attempts=1)
    async def whose() -> str | None:
        return TENANT.get()

    return app


async def running_worker(app: Conveyor) -> tuple[Worker, asyncio.Task[None]]:
    worker = Worker(app, ["mw"], concurrency=4)
    return worker, asyncio.create_task(worker.run())


def producer_side(rec: Recorder, job_id: str) -> list[tuple[Any, ...]]:
    return [c for c in rec.of(job_id) if c[0] == "after_enqueue"]


def worker_side(rec: Recorder, job_id: str) -> list[tuple[Any, ...]]:
    """The worker's hooks of a job, in order. The producer's after_enqueue is left out: it
    may come after them, when the worker runs the job before the producer has read the
    enqueue's reply (an idle worker wakes as the reply is sent)."""
    return [c for c in rec.of(job_id) if c[0] != "after_enqueue"]


async def stopped(worker: Worker, task: asyncio.Task[None]) -> None:
    worker.stop()
    await task


@pytest.fixture
async def recorder(any_redis: RedisServer) -> AsyncIterator[tuple[Conveyor, Recorder]]:
    rec = Recorder()
    app = make_app(any_redis.url, rec)
    yield app, rec
    await app.close()


async def test_hooks_of_a_job_that_succeeds(recorder: tuple[Conveyor, Recorder]) -> None:
    app, rec = recorder
    worker, task = await running_worker(app)
    await rec.wait_for("on_worker_start")
    handle = await app.enqueue("add", {"a": 2, "b": 3})
    assert await handle.result(timeout=10) == 5
    await rec.wait_for("after_process", handle.id)
    await stopped(worker, task)
    assert rec.calls[0] == ("on_worker_start", worker.id)
    assert rec.calls[-1] == ("on_worker_stop", worker.id)
    assert ("before_enqueue", "add") in rec.calls
    assert producer_side(rec, handle.id) == [("after_enqueue", handle.id, handle.id, "NoneType")]
    assert worker_side(rec, handle.id) == [
        ("before_process", handle.id, 1),
        ("after_process", handle.id, 1, 5, "NoneType"),
    ]


async def test_hooks_of_a_retry_then_death(recorder: tuple[Conveyor, Recorder]) -> None:
    app, rec = recorder
    worker, task = await running_worker(app)
    handle = await app.enqueue("flaky", {"message": "boom"})
    await rec.wait_for("on_dead", handle.id)
    await stopped(worker, task)
    assert worker_side(rec, handle.id) == [
        ("before_process", handle.id, 1),
        ("after_process", handle.id, 1, None, "RuntimeError"),
        ("on_retry", handle.id, 1, "boom", True),
        ("before_process", handle.id, 2),
        ("after_process", handle.id, 2, None, "RuntimeError"),
        ("on_dead", handle.id, 2, "boom"),
    ]


async def test_non_retryable_and_timeout_go_dead_with_their_error(
    recorder: tuple[Conveyor, Recorder],
) -> None:
    app, rec = recorder
    worker, task = await running_worker(app)
    refused = await app.enqueue("refuse", {"message": "no"})
    hung = await app.enqueue("hang", {})
    await rec.wait_for("on_dead", refused.id)
    await rec.wait_for("on_dead", hung.id)
    await stopped(worker, task)
    assert ("after_process", refused.id, 1, None, "NonRetryable") in rec.calls
    assert ("after_process", hung.id, 1, None, HandlerTimeout.__name__) in rec.calls
    assert not [c for c in rec.calls if c[0] == "on_retry"]


async def test_a_refused_enqueue_reaches_after_enqueue(
    recorder: tuple[Conveyor, Recorder],
) -> None:
    app, rec = recorder
    await app.enqueue("add", {"a": 1, "b": 1}, idempotency_key="k1")
    with pytest.raises(Exception, match="idempotency"):
        await app.enqueue("add", {"a": 9, "b": 9}, idempotency_key="k1")
    refused = [c for c in rec.calls if c[0] == "after_enqueue" and c[2] is None]
    assert len(refused) == 1 and refused[0][3] == "IdempotencyConflict"


async def test_a_raising_middleware_is_logged_and_changes_nothing(
    any_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    rec = Recorder()
    app = make_app(any_redis.url, Broken(), rec)
    try:
        worker, task = await running_worker(app)
        with caplog.at_level(logging.ERROR, logger="conveyor.middleware"):
            handle = await app.enqueue("add", {"a": 1, "b": 2}, meta={"mine": 1})
            assert await handle.result(timeout=10) == 3
            await rec.wait_for("after_process", handle.id)
        await stopped(worker, task)
        info = await app.get_job(handle.id)
        assert info is not None and info.meta == {"mine": 1}
        failed = {r.getMessage() for r in caplog.records}
        assert failed >= {f"middleware hook Broken.{hook} failed (ignored)" for hook in
                          ("before_enqueue", "before_process", "after_process",
                           "on_worker_start")}
        assert all(r.exc_info for r in caplog.records)  # each with its traceback
        assert worker_side(rec, handle.id)[-1] == ("after_process", handle.id, 1, 3, "NoneType")
    finally:
        await app.close()


async def test_tenant_tagging_rides_from_producer_to_handler(any_redis: RedisServer) -> None:
    app = make_app(any_redis.url, TenantTagging())
    try:
        worker, task = await running_worker(app)
        TENANT.set("acme")
        handle = await app.enqueue("whose", {})
        TENANT.set(None)
        untagged = await app.enqueue("whose", {})
        assert await handle.result(timeout=10) == "acme"
        assert await untagged.result(timeout=10) is None
        await stopped(worker, task)
        info = await app.get_job(handle.id)
        assert info is not None and info.meta == {"tenant": "acme"}
    finally:
        await app.close()


async def test_http_submissions_run_the_enqueue_hooks_in_the_request(
    any_redis: RedisServer, tmp_path: Any
) -> None:
    """Single submissions (batched across requests) and bulk ones both pass the hooks, in the
    request's own context: the tenant a request sets is the one its job carries."""
    from conveyor.store import open_store

    app = make_app(any_redis.url, TenantTagging())
    store = await open_store(f"sqlite:///{tmp_path / 'h.db'}")
    api = create_app(app, settings=ApiSettings(rate_limit="unlimited",
                                               anonymous_rate_limit="unlimited",
                                               static_rate_limit="unlimited"),
                     store=store, admin_key="admin-key-0123456789")

    async def as_tenant(tenant: str, call: Callable[[], Any]) -> Any:
        TENANT.set(tenant)
        return await call()

    try:
        async with api.router.lifespan_context(api), httpx.AsyncClient(
                transport=httpx.ASGITransport(app=api), base_url="http://api",
                headers={"Authorization": "Bearer admin-key-0123456789"}) as client:
            singles = await asyncio.gather(*(asyncio.create_task(as_tenant(
                f"t{i}", lambda: client.post("/api/jobs", json={"type": "whose"})))
                for i in range(5)))
            ids = [r.json()["id"] for r in singles]
            bulk = await as_tenant("bulky", lambda: client.post(
                "/api/jobs/bulk", json={"jobs": [{"type": "whose"}, {"type": "whose"}]}))
        tenants = [f"t{i}" for i in range(5)] + ["bulky", "bulky"]
        for job_id, tenant in zip(ids + [j["id"] for j in bulk.json()["jobs"]], tenants,
                                  strict=True):
            info = await app.get_job(job_id)
            assert info is not None and info.meta["tenant"] == tenant
    finally:
        await store.close()
        await app.close()


def test_no_middleware_is_an_empty_list_and_hooks_are_only_those_overridden() -> None:
    app = Conveyor(redis_url="redis://127.0.0.1:1")
    assert app.middleware.items == [] and not app.middleware
    app.add_middleware(TenantTagging())
    assert app.middleware
    hooks = app.middleware._hooks
    assert [len(hooks[name]) for name in ("before_enqueue", "before_process",
                                          "after_process")] == [1, 1, 0]
    with pytest.raises(TypeError, match=r"is not a conveyor\.middleware\.Middleware"):
        app.add_middleware(object())  # type: ignore[arg-type]


async def test_after_hooks_run_in_reverse_order(any_redis: RedisServer) -> None:
    order: list[str] = []

    class Named(Middleware):
        def __init__(self, name: str) -> None:
            self.name = name

        def before_enqueue(self, job: NewJob, meta: dict[str, Any]) -> None:
            order.append(f"before {self.name}")

        def after_enqueue(self, job: NewJob, handle: JobHandle | None,
                          error: BaseException | None) -> None:
            order.append(f"after {self.name}")

    app = make_app(any_redis.url, Named("outer"), Named("inner"))
    try:
        await app.enqueue("add", {"a": 1, "b": 1})
    finally:
        await app.close()
    assert order == ["before outer", "before inner", "after inner", "after outer"]


async def test_failed_jobs_still_raise_for_the_producer(
    recorder: tuple[Conveyor, Recorder],
) -> None:
    app, rec = recorder
    worker, task = await running_worker(app)
    handle = await app.enqueue("refuse", {"message": "x"})
    with pytest.raises(JobFailed):
        await handle.result(timeout=10)
    await rec.wait_for("on_dead", handle.id)
    await stopped(worker, task)


async def test_cron_ticks_pass_the_enqueue_hooks(recorder: tuple[Conveyor, Recorder]) -> None:
    """The scheduler submits through ``app.enqueue``: its ticks run the same hooks."""
    from conveyor.scheduler.cron import parse_schedule

    app, rec = recorder
    schedule = parse_schedule({"name": "every-minute", "type": "whose", "cron": "* * * * *"})
    await app.schedules.put(schedule)
    (job_id,) = await app.schedules.fire(schedule, [1_700_000_000_000])
    assert ("before_enqueue", "whose") in rec.calls
    assert rec.of(job_id) == [("after_enqueue", job_id, job_id, "NoneType")]
