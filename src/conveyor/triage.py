"""Dead-letter triage: find the dead jobs of a queue that match a filter, and retry or purge
them in chunks.

Matching reads Redis (the dead ZSET and each job's ``type`` and last ``error``), not the
history store: it is what retry and purge act on, and it is bounded by the size of the
dead-letter queue (trimmed to ``CONVEYOR_DLQ_RETENTION_DAYS``). The time range bounds the
time of death, the ZSET's score, so Redis narrows it before any job is read. Each step reads
or changes at most ``CHUNK`` jobs in one round trip, so a large DLQ never holds Redis, nor the
caller's event loop, for long.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from conveyor import serde
from conveyor.connect import strs
from conveyor.job import JobInfo

if TYPE_CHECKING:
    from conveyor.app import Conveyor

CHUNK = 500


class DeadFilter(BaseModel):
    """Which dead jobs: of ``type``, whose last error contains ``text`` (case-insensitive),
    that died in ``[since_ms, until_ms)``. An empty filter matches every dead job."""

    model_config = ConfigDict(strict=True, extra="forbid")

    type: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    text: str | None = Field(None, min_length=1, max_length=200)
    since_ms: int | None = Field(None, ge=0, le=2**53)
    until_ms: int | None = Field(None, ge=0, le=2**53)

    def matches(self, job_type: str | None, error: str | None) -> bool:
        if self.type is not None and job_type != self.type:
            return False
        return self.text is None or self.text.lower() in error_text(error).lower()


def error_text(raw: str | None) -> str:
    """The job hash's last ``error`` field as 'Type: message' ('' for none)."""
    if not raw:
        return ""
    err = serde.loads(raw)
    if not isinstance(err, dict):
        return str(err)
    return f"{err.get('type') or 'Error'}: {err.get('message') or ''}"


async def scan(app: Conveyor, queue: str, flt: DeadFilter,
               chunk: int = CHUNK) -> AsyncIterator[list[str]]:
    """The ids of matching dead jobs, newest death first, a chunk of the DLQ at a time
    (a chunk may hold fewer matches, or none)."""
    qk = app.keys.queue(queue)
    top = "+inf" if flt.until_ms is None else f"({flt.until_ms}"
    bottom = "-inf" if flt.since_ms is None else str(flt.since_ms)
    offset = 0
    while True:
        ids = strs(await app.redis.zrevrangebyscore(qk.dead, top, bottom, offset, chunk))
        if not ids:
            return
        offset += len(ids)
        if flt.type is None and flt.text is None:
            yield ids
        else:
            yield await _keep_matching(app, queue, ids, flt)
        if len(ids) < chunk:
            return


async def _keep_matching(app: Conveyor, queue: str, ids: list[str],
                         flt: DeadFilter) -> list[str]:
    qk = app.keys.queue(queue)
    async with app.redis.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.hmget(qk.job(job_id), "type", "error")
        fields = await pipe.execute()
    return [i for i, (t, e) in zip(ids, fields, strict=True) if flt.matches(t, e)]


async def matching(app: Conveyor, queue: str, flt: DeadFilter) -> list[str]:
    """Every matching dead job id, newest death first."""
    out: list[str] = []
    async for ids in scan(app, queue, flt):
        out += ids
    return out


async def in_dlq(app: Conveyor, queue: str, ids: Sequence[str]) -> list[str]:
    """Those of ``ids`` that are in the queue's dead-letter queue (in the given order)."""
    qk = app.keys.queue(queue)
    out: list[str] = []
    for start in range(0, len(ids), CHUNK):
        part = list(ids[start:start + CHUNK])
        scores = await app.redis.zmscore(qk.dead, part)
        out += [i for i, s in zip(part, scores, strict=True) if s is not None]
    return out


async def page(app: Conveyor, queue: str, flt: DeadFilter, offset: int,
               limit: int) -> tuple[int, list[JobInfo]]:
    """How many dead jobs match, and the ``limit`` of them from ``offset`` (newest death
    first). Reads the whole match set: bounded by the DLQ, in chunks."""
    ids = await matching(app, queue, flt)
    wanted = ids[offset:offset + limit]
    qk = app.keys.queue(queue)
    async with app.redis.pipeline(transaction=False) as pipe:
        for job_id in wanted:
            pipe.hgetall(qk.job(job_id))
        hashes = await pipe.execute()
    return len(ids), [JobInfo.from_hash(h) for h in hashes if h]


async def retry_chunk(app: Conveyor, queue: str, ids: Sequence[str]) -> int:
    """Queue again the dead jobs among ``ids`` (at most ``CHUNK``); returns how many."""
    codes = await app.broker.retry_many(queue, ids)
    return sum(1 for c in codes if c == 1)


async def purge_chunk(app: Conveyor, queue: str, ids: Sequence[str]) -> int:
    """Delete the dead jobs among ``ids`` (jobs that left the DLQ meanwhile are kept)."""
    dead = await in_dlq(app, queue, ids)
    if not dead:
        return 0
    return (await app.broker.delete(queue, dead)).count(1)
