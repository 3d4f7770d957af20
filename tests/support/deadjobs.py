"""Dead jobs planted straight into Redis, as the scripts leave them (a job hash with its last
error, and an entry in the queue's dead ZSET): thousands in a fraction of a second, where
running them to death through a worker would take minutes."""

from __future__ import annotations

from collections.abc import Callable

import orjson
from redis.asyncio import Redis

from conveyor.broker.keys import Keys


async def plant_dead(redis: Redis, keys: Keys, queue: str, ids: list[str], job_type: str,
                     error: Callable[[int], str], died_ms: Callable[[int], int]) -> None:
    qk = keys.queue(queue)
    await redis.sadd(keys.glob.queues, queue)
    for start in range(0, len(ids), 1000):
        async with redis.pipeline(transaction=False) as pipe:
            for i in range(start, min(start + 1000, len(ids))):
                job_id = ids[i]
                err = orjson.dumps({"type": "RuntimeError", "message": error(i)}).decode()
                pipe.hset(qk.job(job_id), mapping={
                    "id": job_id, "type": job_type, "queue": queue, "status": "dead",
                    "priority": "normal", "args": "{}", "attempt": 4, "max_attempts": 4,
                    "failures": 4, "error": err, "error:4": err, "created": died_ms(i) - 1000,
                    "finished": died_ms(i)})
                pipe.zadd(qk.dead, {job_id: died_ms(i)})
            await pipe.execute()
