"""Execution limits hold across several workers, and waiting is not a failed attempt."""

from __future__ import annotations

import asyncio
from collections import Counter

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

    @app.job(queue="lim", rate="20/s")
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
