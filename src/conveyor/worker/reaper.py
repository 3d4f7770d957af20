"""Finds orphaned jobs and puts them back: leases that ran out, and the jobs of workers whose
heartbeat stopped. Runs inside every worker and scheduler; every step is an idempotent script,
so several reapers at once are harmless."""

from __future__ import annotations

import logging

from conveyor import serde
from conveyor.broker.broker import Broker

log = logging.getLogger("conveyor.reaper")
# A worker back from a Redis outage renews its leases within its supervisor's backoff cap
# (2 s); reapers leave leases that ran out during the outage alone until then.
SETTLE_SECONDS = 3.0


async def reap_once(
    broker: Broker, queues: list[str], heartbeat_ttl_ms: int, alive: str | None = None,
    judge_workers: bool = True, expired_leases: bool = True,
) -> tuple[int, int]:
    """One pass over every queue; returns (requeued, dead).

    ``alive`` is the id of the worker running this reaper: it is alive whatever its own
    heartbeat says (a late heartbeat of a busy or starved process must not make it requeue
    the jobs it is running; other workers still judge it by its heartbeat).
    ``judge_workers=False`` skips the heartbeat verdicts (expired leases are still reaped):
    a worker passes it while its own heartbeats do not land regularly (see ``Liveness``).
    ``expired_leases=False`` skips the leases that ran out too: right after an outage their
    live owners renew them first."""
    requeued = dead = 0
    for worker_id in await broker.dead_workers(heartbeat_ttl_ms) if judge_workers else []:
        if worker_id == alive:
            continue
        r, d = await reap_worker(broker, worker_id)
        requeued, dead = requeued + r, dead + d
    for queue in queues if expired_leases else []:
        r, d = await broker.reap(queue)
        requeued, dead = requeued + r, dead + d
    return requeued, dead


async def reap_worker(broker: Broker, worker_id: str) -> tuple[int, int]:
    """Requeue every job a dead worker held, then forget the worker."""
    glob = broker.keys.glob
    raw = await broker.redis.hget(glob.worker(worker_id), "queues")
    requeued = dead = 0
    for queue in serde.loads(raw) or []:
        r, d = await broker.reap(queue, dead_worker=worker_id)
        requeued, dead = requeued + r, dead + d
    await broker.redis.zrem(glob.workers, worker_id)
    await broker.redis.delete(glob.worker(worker_id))
    if requeued or dead:
        log.warning("worker %s is gone: requeued %d of its jobs, %d dead",
                    worker_id, requeued, dead)
    return requeued, dead
