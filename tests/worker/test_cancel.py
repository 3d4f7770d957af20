"""Cancelling a running job stops it on whichever worker process runs it, within a second."""

from __future__ import annotations

import signal
import time

import pytest
import redis as sync_redis

from conveyor import Conveyor, JobFailed
from conveyor.embedded import RedisServer
from tests.procs import start_worker, wait_for


async def test_cancel_a_running_job_on_another_worker(any_redis: RedisServer) -> None:
    app = Conveyor(redis_url=any_redis.url)
    client = sync_redis.Redis.from_url(any_redis.url, decode_responses=True)
    worker = start_worker(any_redis.url, "--concurrency", "2")
    try:
        wait_for(lambda: client.hexists(app.keys.glob.catalog, "started_then_sleep"), 20,
                 "the worker to publish its job types")
        handle = await app.enqueue("started_then_sleep", {"seconds": 60})
        wait_for(lambda: client.lrange("started", 0, -1), 20, "the job to start")
        asked = time.monotonic()
        assert await app.cancel(handle.id) == "cancel_requested"
        with pytest.raises(JobFailed) as ended:
            await handle.result(timeout=1.0)  # the stream tells us; a timeout fails the test
        took = time.monotonic() - asked
        assert ended.value.status == "canceled"
        assert took < 1.0, f"cancel took {took:.2f}s"
        assert client.lrange("ledger", 0, -1) == []  # it never ran to its end
        events = [f["event"] for _, f in client.xrange(app.keys.queue("default").events)
                  if f["job"] == handle.id]
        assert events[-2:] == ["cancel_requested", "canceled"]
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(15) == 0
        await app.close()


async def test_cancel_waiting_jobs(app: Conveyor) -> None:
    @app.job(queue="q")
    async def later() -> None:
        return None

    queued = await app.enqueue("later", {})
    delayed = await app.enqueue("later", {}, delay=60)
    assert await app.cancel(queued.id) == "canceled"
    assert await app.cancel(delayed.id) == "canceled"
    qk = app.keys.queue("q")
    assert await app.redis.llen(qk.ready("normal")) == 0
    assert await app.redis.zcard(qk.delayed) == 0
