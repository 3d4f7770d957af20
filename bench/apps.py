"""Job types for the benchmarks (run by a real `conveyor worker` process). ``stamp`` records
when its handler started, the same way as the peers' (``bench/peers/stamps.py``)."""

from __future__ import annotations

from bench.peers.stamps import record
from conveyor import Conveyor

app = Conveyor()


@app.job(queue="bench", max_attempts=1)
async def noop() -> None:
    return None


@app.job(queue="bench", max_attempts=1)
async def stamp(tag: str) -> None:
    record(tag)


@app.job(queue="bench", max_attempts=1)
async def small(n: int) -> int:
    """The memory and HTTP tables' job: small arguments, ``{"n": 1}``."""
    return n
