"""Job types for the benchmarks (run by a real `conveyor worker` process)."""

from __future__ import annotations

import time

from conveyor import Conveyor

app = Conveyor()


@app.job(queue="bench", max_attempts=1)
async def noop() -> None:
    return None


@app.job(queue="pickup", max_attempts=1)
async def stamp() -> float:
    """Returns when it started, to measure pickup latency."""
    return time.time()
