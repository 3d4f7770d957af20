"""Memory table: Redis bytes per queued and per delayed job with small arguments
(``{"n": 1}``), from INFO memory over ``--jobs`` jobs, broken down with MEMORY USAGE into the
job hash, the events-stream entry and the ready list (or the delayed ZSET).

    .venv/bin/python bench/memory_bench.py [--jobs 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Table, fresh_redis, mark, show

GOAL = 250  # bytes per queued job, issue 14


async def fill(app: Any, n: int, delay: float | None) -> None:
    spec = {"type": "small", "args": {"n": 1}, "delay": delay}
    for size in [1000] * (n // 1000) + [n % 1000]:
        if size:
            await app.enqueue_many([spec] * size)


async def used(app: Any) -> int:
    return int((await app.redis.info("memory"))["used_memory"])


async def usage(app: Any, key: str) -> int:
    return int(await app.redis.memory_usage(key, samples=0) or 0)


async def one_kind(url: str, n: int, delayed: bool) -> dict[str, Any]:
    from bench.apps import app

    app.configure(redis_url=url)
    await app.redis.flushall()
    app._known_queues.clear()
    qk = app.keys.queue("bench")
    holder = qk.delayed if delayed else qk.ready("normal")
    delay = 3600.0 if delayed else None
    await fill(app, 1000, delay)  # the queue's keys exist before the count starts
    before = (await used(app), await usage(app, qk.events), await usage(app, holder))
    await fill(app, n, delay)
    after = (await used(app), await usage(app, qk.events), await usage(app, holder))
    sample = [k async for k in app.redis.scan_iter(match=qk.job_prefix + "*", count=1000)][:200]
    hashes = [await usage(app, k) for k in sample]
    fields = await app.redis.hlen(sample[0])
    await app.close()
    total = (after[0] - before[0]) / n
    return {"total": total, "hash": sum(hashes) / len(hashes), "fields": fields,
            "stream": (after[1] - before[1]) / n, "holder": (after[2] - before[2]) / n}


def memory_table(results: dict[str, dict[str, Any]], n: int) -> Table:
    table = Table(f"Memory: Redis bytes per job, {n:,} jobs with args {{\"n\": 1}}, "
                  "INFO used_memory delta; parts by MEMORY USAGE",
                  ["job", "total B/job", "job hash", "stream entry", "list/zset", "rest",
                   "goal", "mark"])
    for kind, r in results.items():
        rest = r["total"] - r["hash"] - r["stream"] - r["holder"]
        goal_ok = r["total"] <= GOAL
        table.add(kind, f"{r['total']:.0f}", f"{r['hash']:.0f} ({r['fields']} fields)",
                  f"{r['stream']:.0f}", f"{r['holder']:.0f}", f"{rest:.0f}",
                  f"<= {GOAL} B" if kind == "queued" else f"(<= {GOAL} B, by analogy)",
                  mark(goal_ok))
    table.notes.append("rest: the main dict's entry per key and allocator rounding "
                       "(MEMORY USAGE counts neither).")
    return table


async def measure(url: str, n: int) -> dict[str, dict[str, Any]]:
    return {"queued": await one_kind(url, n, delayed=False),
            "delayed": await one_kind(url, n, delayed=True)}


def main(opts: argparse.Namespace, markdown: Path | None = None) -> None:
    with fresh_redis(aof=False) as server:
        results = asyncio.run(measure(server.url, opts.memory_jobs))
    show(memory_table(results, opts.memory_jobs), markdown)


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--memory-jobs", type=int, default=100_000)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_args(parser)
    main(parser.parse_args())
