"""Producers of the chaos run: submit batches of prepared jobs, retrying the SAME batch until
Redis accepts it, and record the accepted ids in the ledger only after the submission
returned.

Two producers share this code:

- the driver's own (``produce``), in the driver's event loop, which Redis restarts hit;
- a producer process (``python -m chaos.producer ...``) that the driver kills with ``kill -9``
  mid-submission. Before submitting a batch it stores the prepared jobs in the ledger (its
  intent); a replacement process resubmits an unfinished intent unchanged (same job ids,
  and every job also carries an idempotency key), so the batch that was in flight at the
  kill is neither lost nor doubled.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from chaos.app import JOB_TYPE
from chaos.app import app as chaos_app
from conveyor import Conveyor
from conveyor.job import NewJob

ACCEPTED = "chaos:accepted"
INTENT = "chaos:intent:"  # + batch number: the prepared jobs of the producer process
DONE = "chaos:done:"  # + batch number: set once its ids are in ACCEPTED
IN_FLIGHT = "chaos:inflight"  # the batch the producer process is submitting right now
RESUMED = "chaos:resumed"  # HASH: what a replacement producer process found and resubmitted
CHILD_STATS = "chaos:producer:stats"  # HASH: the producer process's ProducerStats
# What a submission may meet while Redis is dead, restarting or loading its AOF (redis-py's
# BusyLoadingError is a ConnectionError); builtin TimeoutError is our own attempt timeout.
TRANSIENT = (RedisConnectionError, RedisTimeoutError, OSError, TimeoutError)
ATTEMPT_TIMEOUT = 15.0


@dataclass
class ProducerStats:
    batches: int = 0
    accepted: int = 0
    retried_batches: int = 0
    failed_attempts: int = 0
    longest_wait: float = 0.0  # from a batch's first try to its acceptance, seconds
    errors: list[str] = field(default_factory=list)


def job_spec(n: int, seed: int, job_ms: tuple[int, int], fail_every: int) -> dict[str, Any]:
    """The submission of logical job ``n``: the same for a given seed, whoever submits it."""
    rng = random.Random(seed * 1_000_003 + n)
    fail = fail_every > 0 and n % fail_every == fail_every - 1
    spec: dict[str, Any] = {
        "type": JOB_TYPE, "args": {"n": n, "ms": rng.randint(*job_ms), "fail": fail}}
    if fail:
        spec["max_attempts"] = 2  # one retry, then the dead-letter queue
    return spec


async def submit_until_accepted(
    app: Conveyor, jobs: list[NewJob], stats: ProducerStats, give_up_after: float = 180.0
) -> list[str]:
    """Submit ``jobs`` until Redis answers; a retry sends the same prepared jobs (same ids),
    which the enqueue script answers with the existing jobs, so nothing is doubled."""
    first = time.monotonic()
    delay = 0.05
    tries = 0
    while True:
        tries += 1
        try:
            handles = await asyncio.wait_for(app.submit_prepared(jobs), ATTEMPT_TIMEOUT)
        except TRANSIENT as exc:
            stats.failed_attempts += 1
            if time.monotonic() - first > give_up_after:
                raise RuntimeError(f"Redis refused a batch for {give_up_after}s: {exc}") from exc
            await asyncio.sleep(delay)  # Redis is away: back off, then the same batch again
            delay = min(delay * 2, 1.0)
            continue
        # The client also retries a lost connection by itself (conveyor.connect): a batch
        # can wait out a short outage in one call, so measure the wait, not only our tries.
        stats.longest_wait = max(stats.longest_wait, time.monotonic() - first)
        if tries > 1:
            stats.retried_batches += 1
        return [h.id for h in handles]


async def pace(t0: float, offset_jobs: int, rate: float) -> None:
    """Sleep until the wall-clock moment job number ``offset_jobs`` is due at ``rate``/s."""
    wait = t0 + offset_jobs / rate - time.time()
    if wait > 0:
        await asyncio.sleep(wait)  # pacing the load is the point here


async def produce(
    app: Conveyor, ledger: Redis, numbers: Sequence[int], *, rate: float, t0: float,
    batch: int, spec: Callable[[int], dict[str, Any]], stats: ProducerStats,
) -> None:
    """The driver's producer: batches of ``batch`` jobs at ``rate`` jobs/s from ``t0``."""
    for start in range(0, len(numbers), batch):
        await pace(t0, start, rate)
        jobs = [await app.prepare(spec(n)) for n in numbers[start:start + batch]]
        ids = await submit_until_accepted(app, jobs, stats)
        await ledger.rpush(ACCEPTED, *ids)  # only now: the submission has returned
        stats.batches += 1
        stats.accepted += len(ids)


# -- the producer process ------------------------------------------------------------------

def encode_jobs(jobs: list[NewJob]) -> bytes:
    return orjson.dumps([j._asdict() for j in jobs])


def decode_jobs(raw: str | bytes) -> list[NewJob]:
    return [NewJob(**{**d, "depends_on": tuple(d["depends_on"])}) for d in orjson.loads(raw)]


async def produce_durably(
    app: Conveyor, ledger: Redis, numbers: Sequence[int], *, rate: float, t0: float,
    batch: int, spec: Callable[[int], dict[str, Any]], stats: ProducerStats,
) -> None:
    """Batch ``k``: store its prepared jobs (intent), submit, then mark it done with its ids
    in one ledger transaction. A restarted process skips done batches and resubmits an
    unfinished intent as it was prepared."""
    for k, start in enumerate(range(0, len(numbers), batch)):
        if await ledger.exists(f"{DONE}{k}"):
            continue
        raw = await ledger.get(f"{INTENT}{k}")
        if raw is not None:
            jobs = decode_jobs(raw)
            held = await in_redis(app, jobs)
            await ledger.hset(RESUMED, mapping={
                "batch": k, "jobs": len(jobs), "already_in_redis": held, "pid": os.getpid()})
        else:
            await pace(t0, start, rate)
            jobs = [await app.prepare(spec(n)) for n in numbers[start:start + batch]]
            async with ledger.pipeline(transaction=True) as tx:
                tx.set(f"{INTENT}{k}", encode_jobs(jobs))
                tx.set(IN_FLIGHT, k)
                await tx.execute()
        ids = await submit_until_accepted(app, jobs, stats)
        async with ledger.pipeline(transaction=True) as tx:
            tx.rpush(ACCEPTED, *ids)
            tx.set(f"{DONE}{k}", 1)
            tx.delete(IN_FLIGHT)
            await tx.execute()
        stats.batches += 1
        stats.accepted += len(ids)


async def in_redis(app: Conveyor, jobs: list[NewJob], patience: float = 60.0) -> int:
    """How many of ``jobs`` Redis holds already (-1 if Redis stayed away)."""
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline:
        try:
            async with app.redis.pipeline(transaction=False) as pipe:
                for j in jobs:
                    pipe.exists(app.keys.queue(j.queue).job(j.id))
                return int(sum(await pipe.execute()))
        except TRANSIENT:
            await asyncio.sleep(0.2)  # Redis is restarting: ask again
    return -1


def make_producer_app(redis_url: str, settings: dict[str, Any]) -> Conveyor:
    app = Conveyor(redis_url=redis_url, **settings)
    app.registry.update(chaos_app.registry)  # validate locally, like the workers will run it
    return app


async def child_main(args: argparse.Namespace) -> None:
    app = make_producer_app(args.redis, {"events_maxlen": args.events_maxlen})
    ledger = Redis.from_url(args.ledger, decode_responses=True, socket_timeout=10)
    numbers = range(args.first, args.first + args.count)
    lo, hi = (int(x) for x in args.job_ms.split(","))

    def spec(n: int) -> dict[str, Any]:
        s = job_spec(n, args.seed, (lo, hi), args.fail_every)
        s["idempotency_key"] = f"chaos-{args.seed}-{n}"
        return s

    stats = ProducerStats()
    try:
        await produce_durably(app, ledger, numbers, rate=args.rate, t0=args.t0,
                              batch=args.batch, spec=spec, stats=stats)
        await ledger.hset(CHILD_STATS, mapping={
            "retried_batches": stats.retried_batches, "longest_wait": stats.longest_wait,
            "accepted": stats.accepted})
    finally:
        await app.close()
        await ledger.aclose()


def main() -> None:
    p = argparse.ArgumentParser(description="chaos producer process (started by chaos.run)")
    p.add_argument("--redis", required=True)
    p.add_argument("--ledger", required=True)
    p.add_argument("--first", type=int, required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--rate", type=float, required=True)
    p.add_argument("--t0", type=float, required=True)
    p.add_argument("--batch", type=int, default=50)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--job-ms", default="20,400")
    p.add_argument("--fail-every", type=int, default=100)
    p.add_argument("--events-maxlen", type=int, default=200_000)
    asyncio.run(child_main(p.parse_args()))


if __name__ == "__main__":
    main()
