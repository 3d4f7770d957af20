"""A quiet worker (its flag set over Redis, as the API's quiet control does) finishes the job
it runs and claims no new one until the flag is cleared."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from conveyor import Conveyor
from conveyor.control import quiet_workers, set_quiet
from conveyor.worker.worker import Worker


async def test_a_quiet_worker_finishes_its_job_and_claims_nothing_new(app: Conveyor) -> None:
    release = asyncio.Event()

    @app.job(queue="q")
    async def hold() -> str:
        await release.wait()
        return "held"

    @app.job(queue="q")
    async def quick() -> str:
        return "quick"

    worker = Worker(app, ["q"], concurrency=4)
    task = asyncio.create_task(worker.run())
    try:
        running = await app.enqueue("hold")
        await asyncio.wait_for(_until(lambda: running.id in worker.running), 10)
        await set_quiet(app, worker.id, True)
        assert await quiet_workers(app, [worker.id, "other"]) == {worker.id}
        await asyncio.sleep(app.settings.block_seconds + 0.2)  # past a claim that was waiting
        waiting = await app.enqueue("quick")
        await asyncio.sleep(2 * app.settings.block_seconds)
        job = await app.get_job(waiting.id)
        assert job is not None and job.status == "queued"  # free slots, yet nothing claimed
        release.set()
        assert await running.result(timeout=10) == "held"  # the current job finishes
        await set_quiet(app, worker.id, False)
        assert await waiting.result(timeout=10) == "quick"
    finally:
        worker.stop()
        await task


async def _until(check: Callable[[], bool]) -> None:
    while not check():
        await asyncio.sleep(0.02)


async def test_a_busy_worker_reads_its_quiet_flag_once_per_heartbeat_not_per_claim(
        app: Conveyor) -> None:
    """The flag read cost a round trip per claim, and a draining worker claims a few jobs at a
    time: a quarter of the drain rate. Counted at the client: one fetcher, one job per claim."""

    @app.job(queue="q")
    async def noop() -> None:
        return None

    reads = claims = 0
    exists, claim = app.redis.exists, app.broker.claim

    async def counted_exists(*keys: str) -> int:
        nonlocal reads
        reads += keys == (app.keys.glob.worker_quiet(worker.id),)
        return await exists(*keys)

    async def counted_claim(*args: object, **kwargs: object) -> object:
        nonlocal claims
        claims += 1
        return await claim(*args, **kwargs)  # type: ignore[arg-type]

    app.redis.exists = counted_exists  # type: ignore[method-assign]
    app.broker.claim = counted_claim  # type: ignore[method-assign]
    handles = await app.enqueue_many([{"type": "noop", "args": {}}] * 300)
    worker = Worker(app, ["q"], concurrency=1)  # one free slot: one job per claim
    began = time.monotonic()
    task = asyncio.create_task(worker.run())
    try:
        for handle in handles:
            await handle.result(timeout=30)
        elapsed = time.monotonic() - began
    finally:
        worker.stop()
        await task
    assert claims >= 300
    assert 1 <= reads <= elapsed / app.settings.heartbeat_seconds + 2, (reads, claims, elapsed)
