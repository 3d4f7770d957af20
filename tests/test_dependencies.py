"""depends_on: chains run in order, failure propagates (or not), bad parents are refused."""

from __future__ import annotations

import asyncio

import pytest

from conveyor import Conveyor, JobFailed, ValidationError, Worker


@pytest.fixture
async def chain_app(app: Conveyor) -> Conveyor:
    order: list[int] = []
    app.order = order  # type: ignore[attr-defined]

    @app.job(queue="q")
    async def step(n: int) -> int:
        order.append(n)
        await asyncio.sleep(0.01)
        return n

    @app.job(queue="q", max_attempts=1)
    async def broken() -> None:
        raise RuntimeError("parent broke")

    return app


async def run_worker(app: Conveyor) -> tuple[Worker, asyncio.Task[None]]:
    worker = Worker(app, ["q"], concurrency=8)
    return worker, asyncio.create_task(worker.run())


async def test_a_chain_runs_in_order(chain_app: Conveyor) -> None:
    previous: list[str] = []
    handles = []
    for n in range(6):
        handle = await chain_app.enqueue("step", {"n": n}, depends_on=previous[-1:])
        handles.append(handle)
        previous.append(handle.id)
    assert [h.status for h in handles] == ["queued"] + ["delayed"] * 5
    worker, task = await run_worker(chain_app)
    assert await handles[-1].result(timeout=10) == 5
    worker.stop()
    await task
    assert chain_app.order == list(range(6))  # type: ignore[attr-defined]


async def test_a_child_waits_for_all_its_parents(chain_app: Conveyor) -> None:
    parents = [await chain_app.enqueue("step", {"n": n}) for n in range(3)]
    child = await chain_app.enqueue("step", {"n": 99}, depends_on=[p.id for p in parents])
    worker, task = await run_worker(chain_app)
    assert await child.result(timeout=10) == 99
    worker.stop()
    await task
    assert chain_app.order[-1] == 99  # type: ignore[attr-defined]


async def test_failure_cancels_the_chain_unless_asked_to_run(chain_app: Conveyor) -> None:
    parent = await chain_app.enqueue("broken", {})
    child = await chain_app.enqueue("step", {"n": 1}, depends_on=[parent.id])
    grandchild = await chain_app.enqueue("step", {"n": 2}, depends_on=[child.id])
    stubborn = await chain_app.enqueue("step", {"n": 3}, depends_on=[parent.id],
                                       on_parent_failure="run")
    worker, task = await run_worker(chain_app)
    with pytest.raises(JobFailed) as canceled:
        await grandchild.result(timeout=10)
    assert await stubborn.result(timeout=10) == 3
    worker.stop()
    await task
    assert canceled.value.status == "canceled"
    assert "did not complete" in (canceled.value.error or "")
    assert (await child.info()).status == "canceled"
    assert chain_app.order == [3]  # type: ignore[attr-defined]


async def test_a_child_of_a_finished_parent_is_settled_at_once(chain_app: Conveyor) -> None:
    parent = await chain_app.enqueue("broken", {})
    worker, task = await run_worker(chain_app)
    with pytest.raises(JobFailed):
        await parent.result(timeout=10)
    late = await chain_app.enqueue("step", {"n": 1}, depends_on=[parent.id])
    assert late.status == "canceled"
    worker.stop()
    await task


async def test_unknown_parent_is_refused_and_nothing_written(chain_app: Conveyor) -> None:
    with pytest.raises(ValidationError) as raised:
        await chain_app.enqueue("step", {"n": 1}, depends_on=["f" * 32])
    assert raised.value.field == "depends_on"
    with pytest.raises(ValidationError) as with_delay:
        await chain_app.enqueue("step", {"n": 1}, depends_on=["f" * 32], delay=3)
    assert with_delay.value.field == "depends_on"
    # Only the set of queue names may exist; no job, list or event was written.
    assert await chain_app.redis.keys("*") in ([], [chain_app.keys.glob.queues])
