"""The acker's flushes against a real server: completions go to Redis in bounded calls."""

from __future__ import annotations

from conveyor import Conveyor
from conveyor.broker.broker import Completion
from conveyor.worker.acker import FLUSH_CHUNK, Acker
from conveyor.worker.stats import Stats


async def test_a_big_pile_of_completions_goes_in_bounded_calls(app: Conveyor) -> None:
    """A worker of many slots finishes more jobs during one flush than one script call
    should carry (each call holds Redis while it runs): the acker sends them in calls of at
    most FLUSH_CHUNK, and every job is completed once."""
    @app.job(queue="q")
    async def noop(n: int) -> int:
        return n

    total = 2 * FLUSH_CHUNK + 50
    await app.enqueue_many([{"type": "noop", "args": {"n": i}} for i in range(total)])
    claimed = []
    while len(claimed) < total:
        claimed += (await app.broker.claim("q", "w-acker", 1000)).jobs
    sizes: list[int] = []
    complete = app.broker.complete

    async def counted(queue: str, worker_id: str, items: list[Completion]) -> list[int]:
        sizes.append(len(items))
        return await complete(queue, worker_id, items)

    app.broker.complete = counted  # type: ignore[method-assign]
    stats = Stats()
    acker = Acker(app.broker, "w-acker", stats)
    for job in claimed:
        acker.add("q", Completion(job.id, job.attempt, "1"))
    await acker.flush()
    assert sorted(sizes, reverse=True) == [FLUSH_CHUNK, FLUSH_CHUNK, 50]
    assert stats.processed == total and acker.pending == 0
    statuses = {(await app.get_job(job.id)).status for job in claimed}  # type: ignore[union-attr]
    assert statuses == {"completed"}
