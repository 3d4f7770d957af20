"""Job types the process-level tests run in real worker subprocesses.

Handlers record each execution in a Redis list (``ledger``) with a synchronous client, so the
tests can count executions per job across worker kills.
"""

from __future__ import annotations

import asyncio
import os
import time

import redis

from conveyor import Context, Conveyor

app = Conveyor()
_ledger: redis.Redis | None = None


def ledger() -> redis.Redis:
    global _ledger  # noqa: PLW0603 - one client per worker process
    if _ledger is None:
        _ledger = redis.Redis.from_url(os.environ["CONVEYOR_REDIS_URL"], decode_responses=True)
    return _ledger


@app.job(queue="default", max_attempts=5, timeout=60)
async def record(n: int, sleep: float = 0.0, ctx: Context | None = None) -> int:
    """Sleeps, then notes that attempt ``ctx.attempt`` of this job ran to its end."""
    if sleep:
        await asyncio.sleep(sleep)
    assert ctx is not None
    ledger().rpush("ledger", f"{ctx.job_id}:{ctx.attempt}:{os.getpid()}")
    return n


@app.job(queue="default", max_attempts=5, timeout=60)
def record_sync(n: int, sleep: float = 0.0, ctx: Context | None = None) -> int:
    if sleep:
        time.sleep(sleep)
    assert ctx is not None
    ledger().rpush("ledger", f"{ctx.job_id}:{ctx.attempt}:{os.getpid()}")
    return n


@app.job(queue="default", max_attempts=10, timeout=60)
async def started_then_sleep(seconds: float, ctx: Context) -> str:
    """Announces its start (so a test can act mid-job), then sleeps."""
    ledger().rpush("started", f"{ctx.job_id}:{ctx.attempt}:{os.getpid()}")
    await asyncio.sleep(seconds)
    ledger().rpush("ledger", f"{ctx.job_id}:{ctx.attempt}:{os.getpid()}")
    return f"done by {os.getpid()}"


@app.job(queue="default", max_attempts=10, timeout=60)
async def slow_first(seconds: float, ctx: Context) -> dict[str, int]:
    """Announces its start; only the first attempt sleeps, so a rerun finishes at once."""
    ledger().rpush("started", f"{ctx.job_id}:{ctx.attempt}:{os.getpid()}")
    if ctx.attempt == 1:
        await asyncio.sleep(seconds)
    ledger().rpush("ledger", f"{ctx.job_id}:{ctx.attempt}:{os.getpid()}")
    return {"attempt": ctx.attempt, "pid": os.getpid()}


@app.job(queue="default", max_attempts=5, timeout=60)
async def blocks_loop(seconds: float, ctx: Context) -> int:
    """The most common user bug: a sync call inside ``async def`` blocks the event loop."""
    ledger().rpush("started", f"{ctx.job_id}:{ctx.attempt}:{os.getpid()}")
    time.sleep(seconds)
    ledger().rpush("ledger", f"{ctx.job_id}:{ctx.attempt}:{os.getpid()}")
    return ctx.attempt
