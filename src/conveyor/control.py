"""Operators' controls of live workers, carried over Redis: "quiet" asks a worker to claim no
new job and finish the ones it runs (Sidekiq's TSTP); its fetchers read the flag before each
claim. The flag outlives a restart of the worker under the same id for ``QUIET_TTL``, then
lapses, so a forgotten flag cannot idle a worker forever."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conveyor.app import Conveyor

QUIET_TTL_SECONDS = 7 * 86_400


async def set_quiet(app: Conveyor, worker_id: str, quiet: bool) -> None:
    key = app.keys.glob.worker_quiet(worker_id)
    if quiet:
        await app.redis.set(key, "1", ex=QUIET_TTL_SECONDS)
    else:
        await app.redis.delete(key)


async def quiet_workers(app: Conveyor, worker_ids: Sequence[str]) -> set[str]:
    """Those of ``worker_ids`` that are asked to be quiet."""
    if not worker_ids:
        return set()
    async with app.redis.pipeline(transaction=False) as pipe:
        for worker_id in worker_ids:
            pipe.exists(app.keys.glob.worker_quiet(worker_id))
        flags = await pipe.execute()
    return {w for w, on in zip(worker_ids, flags, strict=True) if on}
