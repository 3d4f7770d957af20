"""Sentinel fail-over under a steady load: workers and producers carry on by themselves, and
with durable acknowledgement no acknowledged job is lost."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from pathlib import Path

from redis.asyncio import Redis
from redis.exceptions import RedisError

from conveyor import Conveyor, Worker
from conveyor.embedded import RedisServer
from conveyor.errors import ConveyorError
from tests.conftest import BINARIES, FAST
from tests.topology.conftest import SentinelSetup

RESUME_LIMIT = 10.0


async def test_primary_killed_under_load_loses_no_acknowledged_job(
    sentinel_setup: SentinelSetup, tmp_path: Path
) -> None:
    ledger_server = RedisServer(BINARIES[-1][1], tmp_path / "ledger").start()  # never faulted
    ledger = Redis.from_url(ledger_server.url, decode_responses=True)
    app = Conveyor(redis_url=sentinel_setup.url, durable_replicas=1, **FAST)

    ran_at: list[float] = []

    progress = asyncio.Condition()  # notified on every acknowledgement and every run
    ran: set[int] = set()

    @app.job(queue="ha", max_attempts=10)
    async def note(n: int) -> None:
        await ledger.sadd("done", str(n))
        ran_at.append(asyncio.get_running_loop().time())
        async with progress:
            ran.add(n)
            progress.notify_all()

    async def until(condition: Callable[[], bool], timeout: float) -> None:
        async with progress:
            await asyncio.wait_for(progress.wait_for(condition), timeout)

    acked: list[int] = []
    refused = 0
    errors: list[str] = []
    loop = asyncio.get_running_loop()
    stop_at: list[float] = []

    async def produce() -> None:
        nonlocal refused
        n = 0
        while not stop_at or loop.time() < stop_at[0]:
            try:
                await app.enqueue("note", {"n": n})
                async with progress:
                    acked.append(n)
                    progress.notify_all()
            except (ConveyorError, RedisError, OSError) as exc:  # fail-over: not acknowledged
                refused += 1
                errors.append(repr(exc)[:200])
                await asyncio.sleep(0.05)  # back off while there is no primary
            n += 1
            await asyncio.sleep(0.002)  # a steady stream, not a flood

    worker = Worker(app, ["ha"], concurrency=20)
    worker_task = asyncio.create_task(worker.run())
    producer = asyncio.create_task(produce())
    try:
        await until(lambda: len(acked) >= 200, 30)
        old_port = sentinel_setup.primary.port
        sentinel_setup.primary.kill()
        killed_at = loop.time()
        count_at_kill = len(acked)
        while sentinel_setup.current_primary_port() == old_port:
            assert loop.time() - killed_at < RESUME_LIMIT, "no fail-over in time"
            await asyncio.sleep(0.05)
        failed_over = loop.time() - killed_at
        # As a supervisor would, bring the dead node back, as a replica of the new primary
        # (what the sentinels write into a managed node's config), so WAIT 1 can be met again.
        old = sentinel_setup.primary
        old.extra = ["--replicaof", "127.0.0.1", str(sentinel_setup.current_primary_port())]
        await asyncio.to_thread(old.start)
        restarted = loop.time() - killed_at
        try:
            await until(lambda: len(acked) > count_at_kill,
                        RESUME_LIMIT - (loop.time() - killed_at))
        except TimeoutError:
            raise AssertionError(f"producers stuck: {errors[-2:]}") from None
        resumed = loop.time() - killed_at
        stop_at.append(loop.time() + 1.0)
        await producer
        with contextlib.suppress(TimeoutError):  # a lost job shows in the ledger check below
            await until(lambda: set(acked) <= ran, 30)
        done = {int(x) for x in await ledger.smembers("done")}
        lost = set(acked) - done
        after = [t for t in ran_at if t > killed_at + failed_over]
        worker_resumed = min(after) - killed_at
        print(f"acked {len(acked)}, refused during fail-over {refused}, fail-over after "
              f"{failed_over:.2f}s, old node back {restarted:.2f}s, producers resumed after "
              f"{resumed:.2f}s, workers after {worker_resumed:.2f}s, lost {len(lost)}")
        assert not lost, f"{len(lost)} acknowledged jobs lost"
        assert resumed < RESUME_LIMIT
        assert worker_resumed < RESUME_LIMIT
    finally:
        producer.cancel()
        worker.stop()
        await asyncio.gather(producer, worker_task, return_exceptions=True)
        await app.close()
        await ledger.aclose()
        ledger_server.kill()
