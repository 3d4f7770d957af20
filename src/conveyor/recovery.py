"""Bring back jobs Redis lost (a FLUSHALL, a failover without persistence, a wrong restore)
from the history store.

A job the store holds as unfinished (queued, delayed, retrying or active) whose hash Redis no
longer has is enqueued again with the same id, type, args, priority and attempt budget; a
delayed or retrying job keeps its due time. A job that was active may have run partly: it
runs again (at-least-once, as when its worker dies).

First, recovery waits until the recorder has stored every event already in the queues'
streams: otherwise a job that completed (and left Redis when its retention ran out) could
still look unfinished in the store, and would run twice.

For the same reason, a job whose newest stored event is not newer than the end of a *gap*
(events of its queue trimmed before the recorder read them, ``Store.gaps``) is not
re-enqueued: its completion may be among the lost events. It is listed with ``held_back``
saying so ("unknown: history has a gap"), unless ``include_gaps`` asks to re-enqueue it too.

The job's new life counts its event ``seq`` from 1 again, so the store is told first
(``Store.begin_new_life``): it starts the job's next *incarnation*, keeps the old attempts
apart and marks the one that never ended ``lost``.

Not restored: the idempotency key (its fingerprint is not in the history; the key is kept in
the job's ``meta``), a per-job timeout (events do not carry it; the default applies), and
dependencies (a job that waited for its parents runs when due).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from redis.exceptions import ResponseError

from conveyor import serde
from conveyor.errors import ConveyorError
from conveyor.job import NewJob, Status
from conveyor.scheduler.recorder import GROUP

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from conveyor.broker.broker import Broker
    from conveyor.broker.keys import Keys
    from conveyor.store.base import Store, StoredJob

BATCH = 500
KEEP_DUE = (Status.DELAYED, Status.RETRYING)


class RecorderBehind(ConveyorError):
    """The history store has not caught up with the events streams."""


@dataclass(frozen=True, slots=True)
class Recovery:
    """One job ``recover`` re-enqueued (``done``) or, in a dry run, would re-enqueue."""

    job_id: str
    queue: str
    type: str
    status: str  # what the store held
    run_at_ms: int | None  # the kept due time of a delayed/retrying job; None = ready now
    done: bool
    held_back: str | None = None  # why it was not re-enqueued (its history has a gap)


async def recover(
    redis: Redis, keys: Keys, store: Store, broker: Broker, dry_run: bool = True,
    *, queue: str | None = None, wait_seconds: float = 30.0, include_gaps: bool = False,
) -> list[Recovery]:
    """Re-enqueue the unfinished jobs of the store that Redis lost; see the module doc.

    ``dry_run`` (the default) only reports. Raises ``RecorderBehind`` if the recorder has
    not stored every event already written within ``wait_seconds``. Jobs whose history may
    miss events (a gap) come back with ``held_back`` set and are not re-enqueued, unless
    ``include_gaps``.
    """
    queues = [queue] if queue else sorted(str(q) for q in await redis.smembers(keys.glob.queues))
    await wait_recorded(redis, keys, queues, wait_seconds)
    gap_ends = {} if include_gaps else await _gap_ends(store, queue)
    out: list[Recovery] = []
    async for jobs in _batches(store.unfinished(queue)):
        missing = await _missing(redis, keys, jobs)
        held = [j for j in missing if _in_gap(j, gap_ends)]
        go = [j for j in missing if not _in_gap(j, gap_ends)]
        plans = [_plan(job) for job in go]
        if not dry_run and plans:
            await store.begin_new_life([job.id for job in go])
            await _requeue(redis, keys, broker, go, plans)
            plans = [replace(p, done=True) for p in plans]
        out += plans + [replace(_plan(j), held_back=_held(j, gap_ends)) for j in held]
    return out


async def _gap_ends(store: Store, queue: str | None) -> dict[str, tuple[int, str]]:
    """Per queue, the end (ms, id) of its newest gap."""
    ends: dict[str, tuple[int, str]] = {}
    for gap in await store.gaps(queue):
        ends[gap.queue] = max(ends.get(gap.queue, (0, "")), (gap.end_ms, gap.end_id))
    return ends


def _in_gap(job: StoredJob, gap_ends: dict[str, tuple[int, str]]) -> bool:
    """Its newest stored event is not newer than a gap of its queue: a later event (its
    completion, say) may be among the lost ones."""
    end = gap_ends.get(job.queue)
    return end is not None and (job.updated_ms is None or job.updated_ms <= end[0])


def _held(job: StoredJob, gap_ends: dict[str, tuple[int, str]]) -> str:
    return (f"unknown: history has a gap (events of queue {job.queue!r} before "
            f"{gap_ends[job.queue][1]} were trimmed before they were recorded)")


async def wait_recorded(redis: Redis, keys: Keys, queues: Sequence[str], timeout: float) -> None:
    """Wait until the recorder's group has read and acknowledged, on each queue's stream,
    every entry written before this call."""
    targets = {}
    for q in queues:
        stream = keys.queue(q).events
        try:
            info = await redis.xinfo_stream(stream)
        except ResponseError:  # no stream: nothing to record
            continue
        targets[q] = (stream, _id(info["last-generated-id"]))
    deadline = time.monotonic() + timeout
    while True:
        behind = [q for q, (stream, last) in targets.items()
                  if not await _recorded(redis, stream, last)]
        if not behind:
            return
        if time.monotonic() > deadline:
            raise RecorderBehind(
                f"the history recorder has not stored every event of queue(s) "
                f"{', '.join(behind)} yet: start it (conveyor recorder APP, or conveyor "
                "scheduler) or wait for it to catch up, then run recovery again")
        await asyncio.sleep(0.2)  # another process's progress: there is no event to await


async def _recorded(redis: Redis, stream: str, last: tuple[int, int]) -> bool:
    groups = await redis.xinfo_groups(stream)
    group = next((g for g in groups if g["name"] == GROUP), None)
    if group is None or _id(group["last-delivered-id"]) < last:
        return False
    pending = await redis.xpending(stream, GROUP)
    return bool(pending["pending"] == 0 or _id(pending["min"]) > last)


def _id(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


async def _batches(jobs: AsyncIterator[StoredJob]) -> AsyncIterator[list[StoredJob]]:
    batch: list[StoredJob] = []
    async for job in jobs:
        batch.append(job)
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


async def _missing(redis: Redis, keys: Keys, jobs: list[StoredJob]) -> list[StoredJob]:
    """The jobs whose hash Redis no longer has."""
    async with redis.pipeline(transaction=False) as pipe:
        for job in jobs:
            pipe.exists(keys.queue(job.queue).job(job.id))
        present = await pipe.execute()
    return [job for job, there in zip(jobs, present, strict=True) if not there]


def _plan(job: StoredJob) -> Recovery:
    keep_due = job.status in KEEP_DUE and job.due_ms is not None
    return Recovery(
        job_id=job.id, queue=job.queue, type=job.type, status=job.status.value,
        run_at_ms=job.due_ms if keep_due else None, done=False,
    )


async def _requeue(
    redis: Redis, keys: Keys, broker: Broker, jobs: Sequence[StoredJob],
    plans: Sequence[Recovery],
) -> None:
    by_queue: dict[str, list[tuple[StoredJob, Recovery]]] = {}
    for job, plan in zip(jobs, plans, strict=True):
        by_queue.setdefault(job.queue, []).append((job, plan))
    for queue, pairs in by_queue.items():
        await redis.sadd(keys.glob.queues, queue)  # the queue set went with the rest
        await broker.enqueue(queue, [_new_job(job, plan, broker) for job, plan in pairs])


def _new_job(job: StoredJob, plan: Recovery, broker: Broker) -> NewJob:
    return NewJob(
        id=job.id, type=job.type, queue=job.queue, args_json=serde.dumps(job.args),
        priority=job.priority, delay_ms=-1,
        run_at_ms=plan.run_at_ms if plan.run_at_ms is not None else -1,
        max_attempts=job.max_attempts or broker.settings.max_attempts,
        timeout=broker.settings.timeout_seconds, meta_json=serde.dumps(job.meta),
    )
