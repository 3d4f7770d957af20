"""process=True: sync handlers in child processes that timeouts and cancellation kill."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import psutil
import pytest

from conveyor import Conveyor, JobFailed, Worker
from tests.apps import procjobs


@pytest.fixture
async def proc_app(app: Conveyor) -> Conveyor:
    # A timeout long enough for a child interpreter to start on a loaded machine.
    app.job(queue="p", process=True, timeout=4.0, max_attempts=1)(procjobs.spin)
    app.job(queue="p", process=True)(procjobs.square)
    app.job(queue="p", process=True, max_attempts=1)(procjobs.explode)
    return app


async def child_pid(pid_file: Path) -> int:
    async with asyncio.timeout(15):
        while not pid_file.exists() or not pid_file.read_text():
            await asyncio.sleep(0.02)  # the child is another process: poll its file
    return int(pid_file.read_text())


async def test_results_and_errors_cross_the_process_boundary(proc_app: Conveyor) -> None:
    worker = Worker(proc_app, ["p"], concurrency=2)
    task = asyncio.create_task(worker.run())
    assert await (await proc_app.enqueue("square", {"n": 7})).result(timeout=20) == 49
    with pytest.raises(JobFailed) as failed:
        await (await proc_app.enqueue("explode", {})).result(timeout=20)
    worker.stop()
    await task
    assert "bad value in the child" in (failed.value.error or "")
    assert "ValueError" in failed.value.job.errors[0].traceback


async def test_a_timeout_kills_the_child(proc_app: Conveyor, tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    worker = Worker(proc_app, ["p"], concurrency=2)
    task = asyncio.create_task(worker.run())
    handle = await proc_app.enqueue("spin", {"pid_file": str(pid_file)})
    pid = await child_pid(pid_file)
    with pytest.raises(JobFailed) as failed:
        await handle.result(timeout=20)
    worker.stop()
    await task
    assert "timed out" in (failed.value.error or "")
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


async def test_cancel_kills_the_child(proc_app: Conveyor, tmp_path: Path) -> None:
    proc_app.registry["spin"].timeout = 60
    pid_file = tmp_path / "pid"
    worker = Worker(proc_app, ["p"], concurrency=2)
    task = asyncio.create_task(worker.run())
    handle = await proc_app.enqueue("spin", {"pid_file": str(pid_file)}, timeout=60)
    pid = await child_pid(pid_file)
    assert await proc_app.cancel(handle.id) == "cancel_requested"
    with pytest.raises(JobFailed) as failed:
        await handle.result(timeout=10)
    worker.stop()
    await task
    assert failed.value.status == "canceled"
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert os.getpid() != pid
