"""History store benchmark: recorder throughput and lag, and search latency.

    .venv/bin/python bench/store_bench.py            # full run (about 3-5 minutes)
    .venv/bin/python bench/store_bench.py --quick    # smaller volumes, for a smoke test
    .venv/bin/python bench/store_bench.py --mongo-url 'mongodb://h/bench?replicaSet=rs0'

1. Recorder into SQLite and into SecantusDB (a MongoDB-wire server, the stand-in for
   MongoDB here): *drain* — events already in the streams (4 queues), the recorder started,
   time until all are in the store (its ceiling); *steady* — a producer process emits
   5,000 events/s (1,000 into SecantusDB, a Python server) through the real Lua scripts
   (enqueue, claim, complete) while the recorder runs; lag is store commit time minus the
   event's Redis time, for every event.
2. Search latency over 100,000 jobs in SQLite: p50/p95 of the queries the API and dashboard
   make (bar: p95 <= 50 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import orjson
from redis.asyncio import Redis

from conveyor.broker.broker import Broker, Completion
from conveyor.broker.keys import Keys
from conveyor.embedded import RedisServer, find_server, free_port
from conveyor.job import NewJob, Status
from conveyor.scheduler.recorder import Recorder
from conveyor.settings import Settings
from conveyor.store import Event, JobQuery, Store, open_store

QUEUES = ("emails", "reports", "images", "billing")
CYCLE = 100  # jobs per producer cycle: enqueue, claim and complete calls of 100 jobs each
BAR_MS = 50.0


# -- producing real events ---------------------------------------------------------------

async def produce(redis_url: str, rate: float, seconds: float, total_events: int) -> int:
    """Emit events through the Lua scripts, ``rate`` events/s (0 = as fast as possible)
    until ``seconds`` pass or ``total_events`` are out. Returns the number emitted."""
    redis = Redis.from_url(redis_url, decode_responses=True)
    broker = Broker(redis, Keys("cv"), Settings())
    await redis.sadd(broker.keys.glob.queues, *QUEUES)
    start, emitted, cycle = time.monotonic(), 0, 0
    while emitted < total_events and time.monotonic() - start < seconds:
        queue = QUEUES[cycle % len(QUEUES)]
        emitted += await _cycle(broker, queue)
        cycle += 1
        if rate:
            ahead = emitted / rate - (time.monotonic() - start)
            if ahead > 0:
                await asyncio.sleep(ahead)  # pacing the producer to its target rate
    await redis.aclose()
    return emitted


async def _cycle(broker: Broker, queue: str) -> int:
    jobs = [NewJob(uuid.uuid4().hex, "bench", queue, '{"n": 1}', "normal", -1, -1, 3, 30.0)
            for _ in range(CYCLE)]
    await broker.enqueue(queue, jobs)
    claimed = (await broker.claim(queue, "bench-worker", CYCLE)).jobs
    await broker.complete(queue, "bench-worker",
                          [Completion(j.id, j.attempt, '{"ok": true}') for j in claimed])
    return 2 * CYCLE + len(claimed)


def start_producer(redis_url: str, rate: float, seconds: float) -> subprocess.Popen[bytes]:
    """The steady producer runs in its own process, as the app's workers would."""
    return subprocess.Popen([sys.executable, __file__, "--produce", redis_url, str(rate),
                             str(seconds)], stdout=subprocess.PIPE)


# -- recorder ----------------------------------------------------------------------------

class LagMeter:
    """Wraps a store to time every commit against the events' Redis time."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.lags: list[int] = []
        self.applied = 0

    async def apply(self, events: Sequence[Event]) -> None:
        await self.store.apply(events)
        now = int(time.time() * 1000)
        self.lags += [now - e.ts for e in events]
        self.applied += len(events)

    async def apply_retention(self) -> int:
        return 0


async def recorder_run(redis: Redis, meter: LagMeter, until: Callable[[], bool],
                       timeout: float) -> float:
    """Run a recorder until ``until()``; returns the seconds it took."""
    recorder = Recorder(redis, Keys("cv"), meter, Settings(), f"bench-{uuid.uuid4().hex[:6]}",  # type: ignore[arg-type]
                        discover_seconds=0.5)  # otherwise the defaults
    task = asyncio.create_task(recorder.run())
    start = time.monotonic()
    while not until():
        if time.monotonic() - start > timeout:
            break
        await asyncio.sleep(0.01)  # the benchmark's own observation loop
    took = time.monotonic() - start
    recorder.stop()
    await task
    return took


async def bench_recorder(name: str, url: str, redis_url: str, drain_events: int,
                         steady_rate: float, steady_seconds: float) -> list[list[str]]:
    redis = Redis.from_url(redis_url, decode_responses=True)
    await redis.flushall()
    store = await open_store(url)
    try:
        emitted = await produce(redis_url, 0, 3600, drain_events)
        meter = LagMeter(store)
        cpu = time.process_time()  # this process: the recorder, its store threads, the client
        took = await recorder_run(redis, meter, lambda: meter.applied >= emitted, 600)
        cpu_us = (time.process_time() - cpu) / emitted * 1e6
        drain = [name, "drain", f"{emitted:,}", f"{emitted / took:,.0f}", "", "", "", "",
                 f"{cpu_us:.0f}"]

        await redis.flushall()
        meter = LagMeter(store)
        producer = start_producer(redis_url, steady_rate, steady_seconds)
        produced: list[float] = []  # events emitted, the moment the producer exited

        def finished() -> bool:
            if not produced and producer.poll() is not None:
                assert producer.stdout is not None
                produced.extend([int(producer.stdout.read()), time.monotonic()])
            return bool(produced) and meter.applied >= produced[0]

        await recorder_run(redis, meter, finished, steady_seconds + 600)
        lags = sorted(meter.lags)
        steady = [name, f"steady {steady_rate:,.0f}/s", f"{meter.applied:,}",
                  f"{produced[0] / steady_seconds:,.0f}", f"{_pct(lags, 0.50):,.0f}",
                  f"{_pct(lags, 0.99):,.0f}", f"{lags[-1]:,.0f}" if lags else "-",
                  f"{time.monotonic() - produced[1]:.1f}", ""]
        return [drain, steady]
    finally:
        await _drop(store)
        await store.close()
        await redis.aclose()


async def _drop(store: Store) -> None:
    jobs = getattr(store, "jobs", None)
    if jobs is not None:
        await jobs.database.client.drop_database(jobs.database.name)


# -- search ------------------------------------------------------------------------------

WORDS = ("timeout", "refused", "quota", "invalid", "missing", "denied", "overflow", "parse")
TYPES = [f"type{i}" for i in range(10)]
TENANTS = ("acme", "globex", "initech")
DAY = 86_400_000


def synthetic(i: int, rng: random.Random, t_end: int) -> list[Event]:
    """The events of one job: 70% completed, 10% dead, 5% canceled, 10% queued, 5% active."""
    job, queue = f"job{i:07d}", QUEUES[i % len(QUEUES)]
    t0 = t_end - rng.randrange(7 * DAY)
    meta = orjson.dumps({"tenant": TENANTS[i % 3]}).decode()
    base = {"type": TYPES[i % len(TYPES)]}

    def ev(name: str, status: str, seq: int, ts: int, **f: Any) -> Event:
        return Event(queue, f"{seq}-0", job, name, status, seq, ts,
                     {**base, **{k: str(v) for k, v in f.items()}})

    roll = rng.random()
    out = [ev("submitted", "queued", 1, t0, attempt=0, priority="normal", args='{"n": 1}',
              max_attempts=3, due=t0, meta=meta)]
    if roll < 0.10:
        return out
    out.append(ev("active", "active", 2, t0 + 50, attempt=1, worker="w1"))
    if roll < 0.15:
        return out
    end = t0 + 50 + rng.randrange(10, 2000)
    if roll < 0.25:
        error = orjson.dumps({"type": "RuntimeError", "message":
                              f"{rng.choice(WORDS)} {rng.choice(WORDS)} #{i}"}).decode()
        out.append(ev("dead", "dead", 3, end, attempt=1, worker="w1", error=error))
    elif roll < 0.30:
        out.append(ev("canceled", "canceled", 3, end, attempt=1, worker="w1",
                      error='{"type": "Canceled", "message": "by user"}'))
    else:
        out.append(ev("completed", "completed", 3, end, attempt=1, worker="w1", result="1"))
    return out


async def fill(store: Store, n: int, t_end: int) -> float:
    rng = random.Random(1)
    start = time.monotonic()
    batch: list[Event] = []
    for i in range(n):
        batch += synthetic(i, rng, t_end)
        if len(batch) >= 5000:
            await store.apply(batch)
            batch = []
    await store.apply(batch)
    return time.monotonic() - start


async def bench_search(n: int, repeat: int) -> tuple[float, list[list[str]]]:
    folder = Path(tempfile.mkdtemp(prefix="conveyor-bench-"))
    store = await open_store(f"sqlite:///{folder}/history.db")
    t_end = int(time.time() * 1000)
    try:
        took = await fill(store, n, t_end)
        rng = random.Random(2)
        rows = []
        for name, query in _queries(store, rng, t_end, await _deep_cursors(store)):
            times = [await _timed(query) for _ in range(repeat)]
            p50, p95 = statistics.median(times), _pct(sorted(times), 0.95)
            rows.append([name, f"{p50:.2f}", f"{p95:.2f}", "ok" if p95 <= BAR_MS else "OVER"])
        return took, rows
    finally:
        await store.close()
        shutil.rmtree(folder, ignore_errors=True)


async def _deep_cursors(store: Store) -> list[str]:
    """Cursors of pages 11 to 20 of the completed jobs, newest first."""
    query, cursors = JobQuery(status=[Status.COMPLETED], limit=50), []
    for _ in range(20):
        page = await store.search(query)
        assert page.next_cursor is not None
        cursors.append(page.next_cursor)
        query = query.model_copy(update={"cursor": page.next_cursor})
    return cursors[10:]


def _queries(store: Store, rng: random.Random, t_end: int,
             cursors: list[str]) -> list[tuple[str, Callable[[], Awaitable[Any]]]]:
    statuses = list(Status)

    def search(**kw: Any) -> Callable[[], Awaitable[Any]]:
        return lambda: store.search(JobQuery(**{k: v() if callable(v) else v
                                                for k, v in kw.items()}))

    def hour_since() -> int:
        return t_end - rng.randrange(7 * DAY)

    async def hour() -> Any:
        since = hour_since()
        return await store.search(JobQuery(since_ms=since, until_ms=since + 3_600_000))

    return [
        ("newest 50, no filter", search()),
        ("by status", search(status=lambda: [rng.choice(statuses)])),
        ("by queue + status", search(queue=lambda: rng.choice(QUEUES),
                                     status=lambda: [rng.choice(statuses)])),
        ("by type", search(type=lambda: rng.choice(TYPES))),
        ("by tenant", search(tenant=lambda: rng.choice(TENANTS))),
        ("dead or canceled", search(status=[Status.DEAD, Status.CANCELED])),
        ("one hour window", hour),
        ("sorted by finished", search(sort="finished_ms")),
        ("dead, by finished", search(status=[Status.DEAD], sort="finished_ms")),
        ("error text", search(text=lambda: rng.choice(WORDS))),
        ("error text, rare", search(text=lambda: f"#{rng.randrange(100_000)}")),
        ("error text, no match", search(text="no such error")),
        ("page 11-20 by cursor", search(status=[Status.COMPLETED],
                                        cursor=lambda: rng.choice(cursors))),
        ("counts by status", store.count_by_status),
        ("get job", lambda: store.get_job(f"job{rng.randrange(100_000):07d}")),
        ("series 24 h, hourly", lambda: store.time_series(t_end - DAY, t_end, 3_600_000)),
    ]


async def _timed(query: Callable[[], Awaitable[Any]]) -> float:
    start = time.perf_counter()
    await query()
    return (time.perf_counter() - start) * 1000


def _pct(values: list[int] | list[float], p: float) -> float:
    return float(values[min(len(values) - 1, int(p * len(values)))]) if values else 0.0


# -- running -----------------------------------------------------------------------------

def table(title: str, head: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    print(f"\n{title}")
    for row in [head, ["-" * w for w in widths], *rows]:
        print("  ".join(str(c).rjust(w) if i else str(c).ljust(w)
                        for i, (c, w) in enumerate(zip(row, widths, strict=True))))


def start_secantus(folder: Path) -> tuple[subprocess.Popen[bytes], int] | None:
    binary = shutil.which("secantusd-py") or str(Path(sys.executable).parent / "secantusd-py")
    if not Path(binary).is_file():
        return None
    port = free_port()
    proc = subprocess.Popen([binary, "--host", "127.0.0.1", "--port", str(port), "--storage-path",
                             ":memory:", "--cache-size", "256M", "--log-level", "ERROR"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=folder)
    return proc, port


async def main(quick: bool, mongo_url: str | None) -> None:
    scale = 0.2 if quick else 1.0
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    folder = Path(tempfile.mkdtemp(prefix="conveyor-bench-"))
    server = RedisServer(find_server(), folder / "redis", aof=False).start()
    secantus = None if mongo_url else start_secantus(folder)
    rows: list[list[str]] = []
    try:
        rows += await bench_recorder("sqlite", f"sqlite:///{folder}/history.db", server.url,
                                     int(120_000 * scale), 5000, 20 * scale)
        if mongo_url:
            rows += await bench_recorder("mongodb", mongo_url, server.url,
                                         int(120_000 * scale), 5000, 20 * scale)
        elif secantus is not None:
            url = f"mongodb://127.0.0.1:{secantus[1]}/bench?replicaSet=secantus"
            # SecantusDB is a Python server: far below 5,000/s, so it gets a rate it can hold.
            rows += await bench_recorder("secantusdb", url, server.url, int(15_000 * scale),
                                         1000, 10 * scale)
    finally:
        server.kill()
        if secantus is not None:
            secantus[0].terminate()
    table("Recorder (lag = store commit - event time, ms; catch-up = seconds from the "
          "producer's end to the last commit)",
          ["store", "run", "events", "events/s", "lag p50", "lag p99", "lag max", "catch-up",
           "cpu us/event"], rows)
    print(f"(load average before the search part: {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} CPUs: the machine's other work slows every figure)")
    n = int(100_000 * scale)
    took, search_rows = await bench_search(n, repeat=int(200 * scale) or 20)
    table(f"SQLite search over {n:,} jobs (filled in {took:.1f} s; bar p95 <= {BAR_MS:.0f} ms)",
          ["query", "p50 ms", "p95 ms", "bar"], search_rows)
    if secantus is not None:
        secantus[0].wait(20)
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--produce":
        print(asyncio.run(produce(sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), 10**9)))
    else:
        parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
        parser.add_argument("--quick", action="store_true", help="smaller volumes")
        parser.add_argument("--mongo-url", help="a real MongoDB to measure instead of "
                            "SecantusDB (its database is dropped afterwards)")
        args = parser.parse_args()
        asyncio.run(main(args.quick, args.mongo_url))
