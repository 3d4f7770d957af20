"""Read-only views of queues, workers and the dead-letter queue, for the CLI, API and metrics."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import TYPE_CHECKING, Any, cast

from pydantic import BaseModel

from conveyor import serde
from conveyor.broker.keys import PRIORITIES
from conveyor.connect import server_ms, strs
from conveyor.job import JobInfo

if TYPE_CHECKING:
    from conveyor.app import Conveyor


class QueueStats(BaseModel):
    name: str
    high: int
    normal: int
    low: int
    delayed: int
    active: int
    dead: int
    paused: bool
    oldest_waiting_seconds: float | None

    @property
    def waiting(self) -> int:
        return self.high + self.normal + self.low


class WorkerInfo(BaseModel):
    id: str
    host: str = ""
    pid: int = 0
    queues: list[str] = []
    concurrency: int = 0
    started_ms: int = 0
    beat_ms: int = 0
    processed: int = 0
    failed: int = 0
    stale: int = 0
    current: list[dict[str, Any]] = []
    alive: bool = True
    stalls: int = 0  # times a handler blocked the worker's event loop (see Liveness)
    loops: dict[str, dict[str, Any]] = {}  # loop name -> health (conveyor.supervise)
    types: list[str] | None = None  # job types it has handlers for (None: not published)

    @property
    def stuck_loops(self) -> list[str]:
        return sorted(name for name, h in self.loops.items() if h.get("stuck"))

    def runs(self, queue: str, job_type: str) -> bool:
        """Whether it takes jobs of ``job_type`` from ``queue`` (a worker that does not
        publish its types is given the benefit of the doubt)."""
        return queue in self.queues and (self.types is None or job_type in self.types)


class Unrunnable(BaseModel):
    """Jobs of one type waiting in one queue that no live worker can run."""

    queue: str
    type: str
    waiting: int  # jobs of the type among the sampled waiting ones (ready and delayed)
    workers: int  # live workers that serve the queue (none of them has the type)
    in_catalog: bool  # some worker registered the type once (else: a typo, or a removed type)


class SchedulerInfo(BaseModel):
    owner: str
    leading: bool = False
    token: int = 0
    published_ms: int = 0
    loops: dict[str, dict[str, Any]] = {}

    @property
    def stuck_loops(self) -> list[str]:
        return sorted(name for name, h in self.loops.items() if h.get("stuck"))


async def queue_stats(app: Conveyor, queues: list[str] | None = None) -> list[QueueStats]:
    """Depths of every queue in one pipelined round trip, with Redis TIME alongside it (a
    Cluster pipeline refuses keyless commands), and one more for the ages of the oldest
    waiting jobs of all queues when any waits."""
    names = queues if queues is not None else await app.queues()
    redis = app.redis

    async def depths() -> list[Any]:
        async with redis.pipeline(transaction=False) as pipe:
            for name in names:
                qk = app.keys.queue(name)
                for p in PRIORITIES:
                    pipe.llen(qk.ready(p))
                pipe.zcard(qk.delayed)
                pipe.zcard(qk.active)
                pipe.zcard(qk.dead)
                pipe.hget(qk.meta, "paused")
                for p in PRIORITIES:
                    pipe.lindex(qk.ready(p), -1)  # the oldest id waiting at each priority
            return await pipe.execute()

    raw, now = await asyncio.gather(depths(), redis.time())
    now_ms = server_ms(now)
    rows = [raw[i * 10:(i + 1) * 10] for i in range(len(names))]
    oldest = [(name, [o for o in row[7:] if o]) for name, row in zip(names, rows, strict=True)]
    created = await _created(app, oldest)
    out = []
    for name, row in zip(names, rows, strict=True):
        high, normal, low, delayed, active, dead, paused = row[:7]
        dues = created.get(name)
        out.append(QueueStats(
            name=name, high=high, normal=normal, low=low, delayed=delayed, active=active,
            dead=dead, paused=paused == "1",
            oldest_waiting_seconds=(now_ms - min(dues)) / 1000 if dues else None,
        ))
    return out


async def _created(app: Conveyor, oldest: list[tuple[str, list[str]]]) -> dict[str, list[int]]:
    """The due times of the given job ids of each queue, in one pipelined round trip."""
    wanted = [(queue, job_id) for queue, ids in oldest for job_id in ids]
    if not wanted:
        return {}
    async with app.redis.pipeline(transaction=False) as pipe:
        for queue, job_id in wanted:
            pipe.hget(app.keys.queue(queue).job(job_id), "due")
        dues = await pipe.execute()
    out: dict[str, list[int]] = {}
    for (queue, _), due in zip(wanted, dues, strict=True):
        if due:
            out.setdefault(queue, []).append(int(due))
    return out


async def workers(app: Conveyor, heartbeat_ttl_ms: int | None = None) -> list[WorkerInfo]:
    """Workers with a recent heartbeat (or all known ones, with ``alive`` set)."""
    ttl = heartbeat_ttl_ms or int(app.settings.heartbeat_ttl_seconds * 1000)
    glob = app.keys.glob
    entries = cast(list[tuple[str, float]],
                   await app.redis.zrange(glob.workers, 0, -1, withscores=True))
    now_ms = server_ms(await app.redis.time())
    async with app.redis.pipeline(transaction=False) as pipe:
        for worker_id, _ in entries:
            pipe.hgetall(glob.worker(worker_id))
        infos = await pipe.execute()
    out = []
    for (worker_id, beat), h in zip(entries, infos, strict=True):
        out.append(WorkerInfo(
            id=worker_id, host=h.get("host", ""), pid=int(h.get("pid", 0)),
            queues=serde.loads(h.get("queues")) or [], concurrency=int(h.get("concurrency", 0)),
            started_ms=int(h.get("started", 0)), beat_ms=int(beat),
            processed=int(h.get("processed", 0)), failed=int(h.get("failed", 0)),
            stale=int(h.get("stale", 0)), current=serde.loads(h.get("current")) or [],
            alive=now_ms - beat <= ttl, stalls=int(h.get("stalls", 0)),
            loops=_loops(h.get("loops")), types=serde.loads(h.get("types")),
        ))
    return out


async def unrunnable(app: Conveyor, sample: int = 200) -> list[Unrunnable]:
    """Job types with jobs waiting in a queue that no live worker will run: no live worker
    serves the queue, or none of those that do registered the type (workers hand such jobs
    back). Looks at the ``sample`` oldest jobs of each priority and the ``sample`` next
    delayed ones of every queue that has any waiting."""
    live = [w for w in await workers(app) if w.alive]
    known = set(strs(await app.redis.hkeys(app.keys.glob.catalog)))
    out = []
    for q in await queue_stats(app):
        if q.waiting + q.delayed == 0:
            continue
        for job_type, count in sorted((await _waiting_types(app, q.name, sample)).items()):
            if not any(w.runs(q.name, job_type) for w in live):
                out.append(Unrunnable(
                    queue=q.name, type=job_type, waiting=count, in_catalog=job_type in known,
                    workers=sum(q.name in w.queues for w in live)))
    return out


async def _waiting_types(app: Conveyor, queue: str, sample: int) -> Counter[str]:
    qk = app.keys.queue(queue)
    async with app.redis.pipeline(transaction=False) as pipe:
        for p in PRIORITIES:
            pipe.lrange(qk.ready(p), -sample, -1)
        pipe.zrange(qk.delayed, 0, sample - 1)
        ids = [i for found in await pipe.execute() for i in found]
    async with app.redis.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.hget(qk.job(job_id), "type")
        return Counter(t for t in await pipe.execute() if t)


async def schedulers(app: Conveyor) -> list[SchedulerInfo]:
    """Schedulers that published their status recently (each key lives a few seconds)."""
    glob = app.keys.glob
    owners = strs(await app.redis.zrange(glob.schedulers, 0, -1))
    async with app.redis.pipeline(transaction=False) as pipe:
        for owner in owners:
            pipe.hgetall(glob.scheduler(owner))
        infos = await pipe.execute()
    return [SchedulerInfo(owner=owner, leading=h.get("leading") == "1",
                          token=int(h.get("token", 0)), published_ms=int(h.get("published", 0)),
                          loops=_loops(h.get("loops")))
            for owner, h in zip(owners, infos, strict=True) if h]


async def dead_letters(
    app: Conveyor, queue: str, offset: int = 0, limit: int = 100
) -> list[JobInfo]:
    """Jobs of the queue's DLQ, newest death first."""
    qk = app.keys.queue(queue)
    ids = strs(await app.redis.zrevrange(qk.dead, offset, offset + limit - 1))
    async with app.redis.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.hgetall(qk.job(job_id))
        hashes = await pipe.execute()
    return [JobInfo.from_hash(h) for h in hashes if h]


def _loops(raw: str | None) -> dict[str, dict[str, Any]]:
    """Loop health as a process published it; anything malformed reads as unknown."""
    try:
        value = serde.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
