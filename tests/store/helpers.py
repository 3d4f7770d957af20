"""Building events by hand, producing real ones through the broker, and checking the store."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from redis.asyncio import Redis

from conveyor.broker.broker import Broker, Completion
from conveyor.broker.keys import Keys
from conveyor.job import NewJob
from conveyor.store import Event, Store

STATUS_OF = {
    "submitted": "queued", "queued": "queued", "active": "active", "completed": "completed",
    "retrying": "retrying", "dead": "dead", "canceled": "canceled", "requeued": "queued",
    "released": "queued", "retried": "queued", "progress": "active", "cancel_requested": "active",
    "deleted": "queued",
}


def ev(job: str, event: str, seq: int, ts: int | None = None, *, status: str | None = None,
       queue: str = "q", **fields: Any) -> Event:
    """A job event as the scripts write it; ``ts`` defaults to 1000 * seq."""
    text = {k: v if isinstance(v, str) else orjson.dumps(v).decode() for k, v in fields.items()}
    text.setdefault("type", "t")
    return Event(queue, f"{seq}-0", job, event, status or STATUS_OF[event], seq,
                 1000 * seq if ts is None else ts, text)


def err(message: str, type: str = "ValueError") -> str:
    return orjson.dumps({"type": type, "message": message, "traceback": f"tb {message}"}).decode()


def lifecycle(job: str, *, queue: str = "q", t0: int = 0, end: str = "completed",
              meta: dict[str, Any] | None = None, type: str = "t") -> list[Event]:
    """submitted -> active(1) -> retrying(1) -> queued -> active(2) -> ``end``(2)."""
    at = lambda i: t0 + 1000 * i  # noqa: E731
    endings = {
        "completed": {"result": '{"ok": 1}'},
        "dead": {"error": err(f"boom {job}")},
        "canceled": {"error": err("stop", "Canceled")},
    }
    return [
        ev(job, "submitted", 1, at(1), queue=queue, type=type, attempt=0, priority="high",
           args='{"n": 1}', max_attempts=3, due=at(1), meta=orjson.dumps(meta or {}).decode()),
        ev(job, "active", 2, at(2), queue=queue, type=type, attempt=1, worker="w1"),
        ev(job, "retrying", 3, at(3), queue=queue, type=type, attempt=1, worker="w1",
           error=err(f"first {job}"), due=at(4)),
        ev(job, "queued", 4, at(4), queue=queue, type=type),
        ev(job, "active", 5, at(5), queue=queue, type=type, attempt=2, worker="w2"),
        ev(job, end, 6, at(7), queue=queue, type=type, attempt=2, worker="w2",
           **endings[end]),
    ]


def new_job(queue: str, *, delay_ms: int = -1, max_attempts: int = 3, type: str = "t",
            priority: str = "normal", args: dict[str, Any] | None = None) -> NewJob:
    return NewJob(uuid.uuid4().hex, type, queue, orjson.dumps(args or {"x": 1}).decode(),
                  priority, delay_ms, -1, max_attempts, 30.0)


async def submit(redis: Redis, broker: Broker, queue: str, n: int, **kw: Any) -> list[str]:
    """Enqueue ``n`` jobs as the app does (registering the queue in the queue set)."""
    await redis.sadd(broker.keys.glob.queues, queue)
    jobs = [new_job(queue, **kw) for _ in range(n)]
    for i in range(0, n, 200):
        await broker.enqueue(queue, jobs[i:i + 200])
    return [j.id for j in jobs]


async def work(broker: Broker, queue: str, worker: str, *, fail: Callable[[int], bool],
               delay_ms: int = 0) -> int:
    """Claim everything ready; fail the jobs ``fail(i)`` picks (retry after ``delay_ms``),
    complete the others. Returns how many jobs it handled."""
    done = 0
    while True:
        claimed = (await broker.claim(queue, worker, 100)).jobs
        if not claimed:
            return done
        ok = []
        for i, job in enumerate(claimed, done):
            if fail(i):
                error = {"type": "ValueError", "message": f"failed {job.id}", "traceback": "tb"}
                await broker.fail(job, worker, error, delay_ms)
            else:
                ok.append(Completion(job.id, job.attempt, '{"done": true}'))
        if ok:
            await broker.complete(queue, worker, ok)
        done += len(claimed)


async def wait_until(condition: Callable[[], Awaitable[Any]], timeout: float, what: str) -> Any:
    """Poll ``condition`` until truthy: a store's content changes with no event to await."""
    deadline = time.monotonic() + timeout
    while True:
        value = await condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}: {value!r}")
        await asyncio.sleep(0.05)


async def caught_up(store: Store, redis: Redis, keys: Keys, jobs: dict[str, str],
                    timeout: float = 20) -> None:
    """Wait until the store agrees with Redis on ``jobs`` (id -> queue)."""
    async def done() -> bool:
        return not await mismatches(store, redis, keys, jobs)

    try:
        await wait_until(done, timeout, "the store to match Redis")
    except AssertionError:
        raise AssertionError(await mismatches(store, redis, keys, jobs)) from None


async def mismatches(store: Store, redis: Redis, keys: Keys, jobs: dict[str, str]) -> list[str]:
    """How the store differs from Redis for ``jobs`` (id -> queue); [] when it caught up.

    Checks status, seq and attempt number, and that the current life's attempts are exactly
    1..attempt, each started, every earlier one ended.
    """
    async with redis.pipeline(transaction=False) as pipe:
        for job_id, queue in jobs.items():
            pipe.hgetall(keys.queue(queue).job(job_id))
        hashes = await pipe.execute()
    out = []
    for (job_id, _), h in zip(jobs.items(), hashes, strict=True):
        stored = await store.get_job(job_id)
        problem = _compare(h, stored)
        if problem:
            out.append(f"{job_id}: {problem}")
    return out


def _compare(h: dict[str, str], stored: Any) -> str:
    if stored is None:
        return "not in the store"
    want = (h["status"], int(h["seq"]), int(h["attempt"]))
    got = (stored.status.value, stored.seq, stored.attempt)
    if want != got:
        return f"redis (status, seq, attempt)={want}, store={got}"
    life = stored.incarnation
    numbers = [a.attempt for a in stored.attempts if a.incarnation == life]
    if numbers != list(range(1, stored.attempt + 1)):
        return f"attempts {numbers} for attempt {stored.attempt}"
    current = [a for a in stored.attempts if a.incarnation == life]
    if any(a.started_ms is None for a in current) or any(a.outcome is None for a in current[:-1]):
        return f"incomplete attempts {current}"
    if stored.status.value in ("completed", "dead") and current[-1].outcome != stored.status:
        return f"last attempt {current[-1]} of a {stored.status.value} job"
    return ""
