"""History table: recorder lag while one worker process drains at full speed, into SQLite
and into the MongoDB-wire store (SecantusDB, ``secantusd-py`` from the dev extras).

    .venv/bin/python bench/history_bench.py [--history-jobs 20000] [--mongo-jobs 3000]

The recorder runs in this process (as in the scheduler process in production), wrapped so
each commit is timed against the events' Redis time. First the jobs are enqueued and their
``submitted`` events recorded; then the lag list is reset, a `conveyor worker` process drains
the queue and every later event (active, completed) is timed: lag = store commit time minus
the event's time. Goal (issue 14): lag p99 under 1 s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, Table, fresh_redis, mark, percentile, show
from bench.peers.driver import stop
from conveyor.store import Event, Store, open_store


class LagMeter:
    """Wraps a store to time every commit against the events' Redis time."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.lags: list[float] = []
        self.applied = 0

    async def apply(self, events: Sequence[Event]) -> None:
        await self.store.apply(events)
        now = time.time() * 1000
        self.lags += [now - e.ts for e in events]
        self.applied += len(events)

    async def apply_retention(self) -> int:
        return 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


@contextlib.contextmanager
def secantus() -> Iterator[str | None]:
    """A SecantusDB server in memory on a free port (the dev extras bring it), or None."""
    try:
        from tests.store.conftest import SecantusProcess
    except ImportError:
        yield None
        return
    server = SecantusProcess().start()
    try:
        yield server.url("bench")
    finally:
        server.stop()


def start_worker(url: str) -> subprocess.Popen[bytes]:
    import os

    env = {**os.environ, "CONVEYOR_REDIS_URL": url, "BENCH_REDIS_URL": url,
           "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "src")])}
    return subprocess.Popen([sys.executable, "-m", "conveyor", "worker", "bench.apps:app",
                             "--queues", "bench", "--concurrency", "200"], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


async def wait_for(cond: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not await cond():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)  # the benchmark's observation loop
    return True


async def record_drain(redis_url: str, store_url: str, n: int, budget: float) -> dict[str, Any]:
    from bench.apps import app
    from conveyor.scheduler.recorder import Recorder
    from conveyor.settings import Settings

    app.configure(redis_url=redis_url)
    await app.redis.flushall()
    app._known_queues.clear()
    store = await open_store(store_url)
    meter = LagMeter(store)
    recorder = Recorder(app.redis, app.keys, meter, Settings(),  # type: ignore[arg-type]
                        f"bench-{uuid.uuid4().hex[:6]}", discover_seconds=0.2)
    task = asyncio.create_task(recorder.run())
    qk = app.keys.queue("bench")
    out: dict[str, Any] = {"jobs": n}
    try:
        for size in [1000] * (n // 1000) + [n % 1000]:
            if size:
                await app.enqueue_many([{"type": "small", "args": {"n": 1}}] * size)

        async def submitted() -> bool:
            return meter.applied >= n

        await wait_for(submitted, budget)
        meter.lags.clear()
        start, applied0 = time.monotonic(), meter.applied
        worker = start_worker(redis_url)

        async def drained() -> bool:
            done = await app.redis.llen(qk.ready("normal")) + await app.redis.zcard(qk.active)
            return done == 0

        try:
            out["drain_ok"] = await wait_for(drained, budget)
            out["drain_s"] = time.monotonic() - start
        finally:
            stop(worker)
        expected = await app.redis.xlen(qk.events)

        async def caught_up() -> bool:
            return meter.applied >= expected

        out["caught_up"] = await wait_for(caught_up, budget)
        out["record_s"] = time.monotonic() - start
        out["events"] = meter.applied - applied0
        out["p50"], out["p99"] = percentile(meter.lags, 50), percentile(meter.lags, 99)
        out["max"] = max(meter.lags, default=float("nan"))
    finally:
        recorder.stop()
        await task
        await store.close()
        await app.close()
    return out


def history_table(rows: dict[str, dict[str, Any] | str]) -> Table:
    table = Table("History: recorder lag while one worker process drains at full speed",
                  ["store", "jobs", "drain s (incl. start)", "events", "recorded in s",
                   "events/s", "lag p50 ms", "lag p99 ms", "goal", "mark"])
    for name, r in rows.items():
        if isinstance(r, str):
            table.add(name, r, *[""] * 8)
            continue
        table.add(name, f"{r['jobs']:,}", f"{r['drain_s']:.1f}", f"{r['events']:,}",
                  f"{r['record_s']:.1f}" + ("" if r["caught_up"] else " (cut)"),
                  f"{r['events'] / r['record_s']:,.0f}", f"{r['p50']:,.0f}",
                  f"{r['p99']:,.0f}", "p99 < 1,000 ms", mark(r["p99"] < 1000))
    table.notes.append("drain s counts the worker process's start (about 1-2 s); lag covers "
                       "the drain's events (active, completed), the submitted ones excluded.")
    return table


async def measure(opts: argparse.Namespace) -> dict[str, dict[str, Any] | str]:
    rows: dict[str, dict[str, Any] | str] = {}
    with fresh_redis() as redis, tempfile.TemporaryDirectory() as tmp:
        rows["sqlite"] = await record_drain(redis.url, f"sqlite:///{tmp}/history.db",
                                            opts.history_jobs, opts.history_budget)
        with secantus() as mongo_url:
            if mongo_url is None:
                rows["secantusdb"] = "not run: secantusd-py not installed (dev extras)"
            else:
                rows["secantusdb"] = await record_drain(redis.url, mongo_url, opts.mongo_jobs,
                                                        opts.history_budget)
    return rows


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--history-jobs", type=int, default=20_000)
    p.add_argument("--mongo-jobs", type=int, default=3_000,
                   help="jobs for SecantusDB (a Python server: hundreds of writes/s)")
    p.add_argument("--history-budget", type=float, default=180.0)


def main(opts: argparse.Namespace, markdown: Path | None = None) -> None:
    show(history_table(asyncio.run(measure(opts))), markdown)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_args(parser)
    main(parser.parse_args())
