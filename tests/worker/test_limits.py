"""Execution limits hold across several workers, and waiting is not a failed attempt."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

from conveyor import Conveyor, Worker


async def run_workers(
    app: Conveyor, n: int, concurrency: int
) -> tuple[list[Worker], list[asyncio.Task[None]]]:
    workers = [Worker(app, ["lim"], concurrency, worker_id=f"w{i}") for i in range(n)]
    return workers, [asyncio.create_task(w.run()) for w in workers]


async def stop(workers: list[Worker], tasks: list[asyncio.Task[None]]) -> None:
    for w in workers:
        w.stop()
    await asyncio.gather(*tasks)


async def test_concurrency_cap_holds_across_workers(app: Conveyor) -> None:
    running = 0
    most = 0

    @app.job(queue="lim", concurrency=2)
    async def capped(n: int) -> int:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.03)
        running -= 1
        return n

    handles = await app.enqueue_many([{"type": "capped", "args": {"n": i}} for i in range(20)])
    workers, tasks = await run_workers(app, 3, 10)
    assert [await h.result(timeout=20) for h in handles] == list(range(20))
    await stop(workers, tasks)
    assert most == 2
    infos = [await h.info() for h in handles]
    assert all(i.failures == 0 for i in infos)  # waiting for a slot is not a failure
    slots = app.keys.queue("lim").limit_slots("capped")
    assert await app.redis.zcard(slots) == 0
    assert await app.redis.llen(f"{slots}:waiting") == 0


async def test_rate_limit_spaces_runs(app: Conveyor) -> None:
    loop = asyncio.get_running_loop()
    starts: list[float] = []

    @app.job(queue="lim", rate="20/s", burst=1)
    async def paced() -> None:
        starts.append(loop.time())

    handles = await app.enqueue_many([{"type": "paced", "args": {}} for _ in range(30)])
    workers, tasks = await run_workers(app, 3, 10)
    for h in handles:
        await h.result(timeout=20)
    await stop(workers, tasks)
    starts.sort()
    took = starts[-1] - starts[0]
    assert took >= 29 * 0.05 * 0.9, f"30 runs at 20/s took only {took:.2f}s"
    per_second = Counter(int(s - starts[0]) for s in starts)
    assert max(per_second.values()) <= 21
    assert [(await h.info()).failures for h in handles] == [0] * 30


async def test_rate_allows_a_burst_of_its_count_then_spaces(app: Conveyor) -> None:
    """BullMQ's {max: 5, duration: 1000}: 5 start at once, the rest one per 200 ms."""
    loop = asyncio.get_running_loop()
    starts: list[float] = []

    @app.job(queue="lim", rate="5/s")
    async def bursty() -> None:
        starts.append(loop.time())

    handles = await app.enqueue_many([{"type": "bursty", "args": {}} for _ in range(9)])
    workers, tasks = await run_workers(app, 2, 10)
    for h in handles:
        await h.result(timeout=20)
    await stop(workers, tasks)
    starts.sort()
    assert starts[4] - starts[0] < 0.15, "the first 5 did not start at once"
    # then one per 200 ms: the k-th after the burst no earlier than k x 200 ms
    late = [round(s - starts[0], 3) for s in starts[5:]]
    assert all(t >= 0.2 * (k + 1) - 0.02 for k, t in enumerate(late)), late
    assert starts[-1] - starts[0] < 0.2 * 4 + 0.5
    infos = [await h.info() for h in handles]
    assert [(i.attempt, i.failures) for i in infos] == [(1, 0)] * 9  # waiting spends nothing


def test_burst_is_checked() -> None:
    app = Conveyor(redis_url="redis://127.0.0.1:1")
    for bad in ({"rate": "5/s", "burst": 0}, {"burst": 2}, {"rate": "5/s", "burst": True}):
        with pytest.raises(ValueError, match="burst"):
            @app.job(**bad)
            async def spaced() -> None: ...


@pytest.mark.parametrize("limit", [{"rate": "20/s", "burst": 1}, {"concurrency": 1}])
async def test_limited_jobs_start_in_submission_order(
    app: Conveyor, limit: dict[str, Any]
) -> None:
    order: list[int] = []

    @app.job(queue="lim", **limit)
    async def in_turn(n: int) -> None:
        order.append(n)
        await asyncio.sleep(0.01)

    handles = [await app.enqueue("in_turn", {"n": n}) for n in range(12)]
    workers, tasks = await run_workers(app, 1, 4)
    for h in handles:
        await h.result(timeout=20)
    await stop(workers, tasks)
    assert order == list(range(12))


async def test_limit_per_key_value(app: Conveyor) -> None:
    running: Counter[str] = Counter()
    most: Counter[str] = Counter()
    overlap = False

    @app.job(queue="lim", concurrency=1, limit_key="tenant")
    async def per_tenant(tenant: str) -> None:
        nonlocal overlap
        running[tenant] += 1
        most[tenant] = max(most[tenant], running[tenant])
        overlap = overlap or sum(running.values()) > 1
        await asyncio.sleep(0.03)
        running[tenant] -= 1

    specs = [{"type": "per_tenant", "args": {"tenant": t}} for t in ("a", "b") * 6]
    handles = await app.enqueue_many(specs)
    workers, tasks = await run_workers(app, 2, 8)
    for h in handles:
        await h.result(timeout=20)
    await stop(workers, tasks)
    assert most == {"a": 1, "b": 1}
    assert overlap  # the two tenants did run side by side
