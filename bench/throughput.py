"""Core benchmark: enqueue (one at a time, concurrent, bulk), drain with one worker process,
and pickup latency with an idle worker. Prints a table; writes nothing into the repository.

    make bench            # or: .venv/bin/python bench/throughput.py --jobs 50000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.apps import app  # noqa: E402
from conveyor.embedded import RedisServer, find_server  # noqa: E402

console = Console()


def start_worker(url: str, queue: str, concurrency: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "CONVEYOR_REDIS_URL": url, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "conveyor", "worker", "bench.apps:app", "--queues", queue,
         "--concurrency", str(concurrency)], env=env, cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def wait_idle(queue: str) -> None:
    """Until the queue has nothing ready and nothing active (a benchmark may poll)."""
    qk = app.keys.queue(queue)
    while True:
        async with app.redis.pipeline(transaction=False) as pipe:
            for key in qk.ready_all:
                pipe.llen(key)
            pipe.zcard(qk.active)
            if sum(await pipe.execute()) == 0:
                return
        await asyncio.sleep(0.002)


async def enqueue_sequential(n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        await app.enqueue("noop", {})
    return n / (time.perf_counter() - start)


async def enqueue_concurrent(n: int, producers: int = 32) -> float:
    async def produce(count: int) -> None:
        for _ in range(count):
            await app.enqueue("noop", {})

    start = time.perf_counter()
    await asyncio.gather(*(produce(n // producers) for _ in range(producers)))
    return (n // producers * producers) / (time.perf_counter() - start)


async def enqueue_bulk(n: int, batch: int = 1000) -> float:
    spec = {"type": "noop", "args": {}}
    start = time.perf_counter()
    for _ in range(n // batch):
        await app.enqueue_many([spec] * batch)
    return (n // batch * batch) / (time.perf_counter() - start)


async def drain(url: str, n: int, concurrency: int) -> float:
    await app.pause("bench")
    spec = {"type": "noop", "args": {}}
    for _ in range(n // 1000):
        await app.enqueue_many([spec] * 1000)
    worker = start_worker(url, "bench", concurrency)
    try:
        await asyncio.sleep(1.5)  # let the worker process start before the clock runs
        start = time.perf_counter()
        await app.resume("bench")
        await wait_idle("bench")
        return (n // 1000 * 1000) / (time.perf_counter() - start)
    finally:
        worker.terminate()
        worker.wait()


async def pickup(url: str, n: int, gap: float) -> tuple[float, float]:
    worker = start_worker(url, "pickup", 10)
    try:
        await asyncio.sleep(1.5)  # the worker process starts and goes idle
        latencies = []
        for _ in range(n):
            sent = time.time()
            handle = await app.enqueue("stamp", {})
            started = await handle.result(timeout=10)
            latencies.append((started - sent) * 1000)
            await asyncio.sleep(gap)  # a sparse stream: the worker is idle at each submit
        q = statistics.quantiles(latencies, n=100)
        return q[49], q[98]
    finally:
        worker.terminate()
        worker.wait()


async def main(args: argparse.Namespace) -> None:
    binary = find_server(args.server)
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(binary, Path(tmp), aof=True).start()
        app.configure(redis_url=server.url)
        try:
            sequential = await enqueue_sequential(args.single)
            concurrent = await enqueue_concurrent(args.single)
            bulk = await enqueue_bulk(args.jobs)
            rows = [
                ("enqueue, one at a time (1 producer)", f"{sequential:,.0f} jobs/s"),
                ("enqueue, one at a time (32 producers)", f"{concurrent:,.0f} jobs/s"),
                ("enqueue, bulk (1,000 per call)", f"{bulk:,.0f} jobs/s"),
            ]
            await app.redis.flushall()
            app._known_queues.clear()
            rows.append((f"drain {args.jobs:,} no-op jobs, 1 worker process",
                         f"{await drain(server.url, args.jobs, args.concurrency):,.0f} jobs/s"))
            p50, p99 = await pickup(server.url, args.pickups, 0.02)
            rows.append(("pickup latency, idle worker, sparse stream",
                         f"p50 {p50:.2f} ms, p99 {p99:.2f} ms"))
        finally:
            await app.close()
            server.stop()
    table = Table(title=f"Conveyor core benchmark ({Path(binary).name}, AOF everysec, events on)")
    table.add_column("measure")
    table.add_column("result", justify="right")
    for row in rows:
        table.add_row(*row)
    console.print(table)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=50_000)
    parser.add_argument("--single", type=int, default=5_000)
    parser.add_argument("--pickups", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--server", choices=["redis", "valkey"], default=None)
    main_args = parser.parse_args()
    import uvloop

    uvloop.run(main(main_args))
