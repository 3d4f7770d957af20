"""Built-in demo jobs for ``conveyor up`` without an app: fast ones, slow ones, ones that fail
and retry, ones that always fail (to fill the DLQ), and delayed ones."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

from conveyor.app import Conveyor
from conveyor.errors import NonRetryable
from conveyor.worker.context import Context

app = Conveyor()


@app.job(name="demo.fast", queue="demo")
async def fast(n: int) -> int:
    """Returns n squared at once."""
    return n * n


@app.job(name="demo.slow", queue="demo", timeout=30)
async def slow(seconds: float, ctx: Context) -> str:
    """Sleeps for a while, reporting progress."""
    steps = 5
    for step in range(steps):
        await asyncio.sleep(seconds / steps)
        await ctx.progress((step + 1) / steps, f"step {step + 1} of {steps}")
    return f"slept {seconds:.1f}s"


@app.job(name="demo.flaky", queue="demo", max_attempts=4, backoff_base=0.5)
def flaky(failure_rate: float, ctx: Context) -> str:
    """Fails at random (a sync handler, run in a thread); retried with backoff."""
    time.sleep(0.05)
    if random.random() < failure_rate:
        raise ConnectionError(f"flaky upstream on attempt {ctx.attempt}")
    return "ok"


@app.job(name="demo.doomed", queue="demo", max_attempts=2, backoff_base=0.5)
async def doomed(reason: str) -> None:
    """Always fails: ends in the dead-letter queue."""
    raise NonRetryable(reason) if reason == "invalid" else RuntimeError(reason)


async def submit_round(target: Conveyor, i: int) -> None:
    """One mixed round of demo submissions."""
    specs: list[dict[str, Any]] = [{"type": "demo.fast", "args": {"n": i}} for _ in range(3)]
    specs.append({"type": "demo.flaky", "args": {"failure_rate": 0.4}})
    if i % 3 == 0:
        specs.append({"type": "demo.slow", "args": {"seconds": random.uniform(0.5, 3)}})
    if i % 5 == 0:
        specs.append({"type": "demo.fast", "args": {"n": i}, "delay": 5.0, "priority": "high"})
    if i % 10 == 0:
        specs.append({"type": "demo.doomed", "args": {"reason": "the demo wants a dead job"}})
    await target.enqueue_many(specs)


async def produce(
    target: Conveyor, rate: float, rounds: int | None = None, start: int = 0
) -> None:
    """Keep submitting demo rounds, ``rate`` rounds a second (forever when ``rounds`` is None),
    numbered from ``start``."""
    i = start
    while rounds is None or i < start + rounds:
        await submit_round(target, i)
        i += 1
        if rate > 0:
            await asyncio.sleep(1 / rate)  # pacing the demo stream is the point
