"""Two apps share one Redis and one queue, each with its own job types: a worker hands a job
of a type it lacks back, unrun and uncounted, and the worker that has the type runs it."""

from __future__ import annotations

import asyncio
import logging

import pytest

from conveyor import Conveyor, Worker
from conveyor.catalog import warn_on_conflicts
from conveyor.embedded import RedisServer
from conveyor.inspect import unrunnable
from tests.conftest import FAST


def billing_app(url: str) -> Conveyor:
    app = Conveyor(redis_url=url, **FAST)

    @app.job(queue="shared", max_attempts=2)
    async def invoice(n: int) -> str:
        return f"invoice {n}"

    return app


def media_app(url: str) -> Conveyor:
    app = Conveyor(redis_url=url, **FAST)

    @app.job(queue="shared", max_attempts=2)
    def thumbnail(n: int) -> str:
        return f"thumbnail {n}"

    return app


async def test_each_job_runs_on_attempt_1_on_the_worker_that_has_its_type(
    any_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    billing, media = billing_app(any_redis.url), media_app(any_redis.url)
    workers = [Worker(billing, ["shared"], 4, worker_id="billing"),
               Worker(media, ["shared"], 4, worker_id="media")]
    with caplog.at_level(logging.WARNING, logger="conveyor"):
        tasks = [asyncio.create_task(w.run()) for w in workers]
        await asyncio.sleep(0.3)  # both have published their types
        jobs = []
        for n in range(10):
            jobs.append(await billing.enqueue("invoice", {"n": n}))
            jobs.append(await media.enqueue("thumbnail", {"n": n}))
        results = [await h.result(timeout=30) for h in jobs]
        for w in workers:
            w.stop()
        await asyncio.gather(*tasks)
    assert results == [f"{kind} {n}" for n in range(10) for kind in ("invoice", "thumbnail")]
    for h in jobs:
        info = await h.info()
        assert (info.status, info.attempt, info.failures, info.errors) == (
            "completed", 1, 0, []), info
    handed_back = sum(w.stats.failed for w in workers)
    assert handed_back == 0  # a hand-back is no failure
    warned = [r.getMessage() for r in caplog.records if "no handler" in r.getMessage()]
    assert len(warned) <= 2 and len({m.split("'")[1] for m in warned}) == len(warned), warned
    await billing.close()
    await media.close()


async def test_status_lists_jobs_that_no_live_worker_can_run(any_redis: RedisServer) -> None:
    billing, media = billing_app(any_redis.url), media_app(any_redis.url)
    worker = Worker(billing, ["shared"], 2, worker_id="billing")
    task = asyncio.create_task(worker.run())
    await asyncio.sleep(0.3)
    await media.publish_catalog()  # a media worker ran once, and is gone
    waiting = [await media.enqueue("thumbnail", {"n": n}) for n in range(3)]
    done = await billing.enqueue("invoice", {"n": 1})
    assert await done.result(timeout=10) == "invoice 1"
    await asyncio.sleep(0.3)  # the billing worker has handed the thumbnails back
    found = await unrunnable(billing)
    assert [(u.queue, u.type, u.waiting, u.workers, u.in_catalog) for u in found] == [
        ("shared", "thumbnail", 3, 1, True)]
    for h in waiting:
        info = await h.info()
        assert (info.attempt, info.failures) == (0, 0), info
    media_worker = Worker(media, ["shared"], 2, worker_id="media")
    media_task = asyncio.create_task(media_worker.run())
    assert [await h.result(timeout=30) for h in waiting] == [f"thumbnail {n}" for n in range(3)]
    assert await unrunnable(billing) == []
    for w in (worker, media_worker):
        w.stop()
    await asyncio.gather(task, media_task)
    await billing.close()
    await media.close()


async def test_a_name_registered_with_other_arguments_warns_at_worker_start(
    any_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    billing = billing_app(any_redis.url)
    await billing.publish_catalog()
    other = Conveyor(redis_url=any_redis.url, **FAST)

    @other.job(queue="shared")
    async def invoice(order: str) -> None: ...

    with caplog.at_level(logging.WARNING, logger="conveyor"):
        assert await warn_on_conflicts(other) == ["invoice"]
        assert await warn_on_conflicts(billing) == []
    (message,) = [r.getMessage() for r in caplog.records]
    assert "'invoice' is already in the catalog" in message and "name=" in message
    await billing.close()
    await other.close()
