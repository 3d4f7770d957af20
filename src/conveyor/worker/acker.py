"""The acker: completes finished jobs in batches, one script call per queue."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from conveyor.broker.broker import Completion
from conveyor.broker.codes import Code

if TYPE_CHECKING:
    from conveyor.broker.broker import Broker
    from conveyor.supervise import LoopHealth
    from conveyor.worker.stats import Stats

log = logging.getLogger("conveyor.worker")

# Most completions per script call: a worker of 1,000 slots can finish 1,000 jobs while one
# flush runs, and one call for all of them would hold Redis for 15-30 ms (about 15-30 us a
# job); calls of this size stay within a few milliseconds.
FLUSH_CHUNK = 200


class Acker:
    """Responsibilities: collect completions as handlers finish, flush them in batches
    (whatever piled up while the last flush ran goes in the next), keep a batch whose flush
    failed for the next try, and count what Redis accepted or refused as stale."""

    def __init__(self, broker: Broker, worker_id: str, stats: Stats) -> None:
        self.broker = broker
        self.worker_id = worker_id
        self.stats = stats
        self._pending: dict[str, list[Completion]] = {}
        self._ready = asyncio.Event()
        self._lock = asyncio.Lock()

    def add(self, queue: str, completion: Completion) -> None:
        self._pending.setdefault(queue, []).append(completion)
        self._ready.set()

    @property
    def pending(self) -> int:
        return sum(len(items) for items in self._pending.values())

    async def loop(self, health: LoopHealth) -> None:
        if self._pending:  # left over from a flush that failed: the supervisor restarted us
            self._ready.set()
        while True:
            async with health.idle():
                await self._ready.wait()
            self._ready.clear()
            await self.flush()
            health.ok()

    async def flush(self) -> None:
        async with self._lock:  # one flush at a time: shutdown waits for the loop's
            while self._pending:
                queue, items = self._pending.popitem()
                if len(items) > FLUSH_CHUNK:  # the rest waits for the next call
                    self._pending.setdefault(queue, []).extend(items[FLUSH_CHUNK:])
                    items = items[:FLUSH_CHUNK]
                try:
                    codes = await self.broker.complete(queue, self.worker_id, items)
                except BaseException:
                    self._pending.setdefault(queue, []).extend(items)  # for the retry
                    raise
                self._count(codes)

    def _count(self, codes: list[int]) -> None:
        for code in codes:
            if code == 1:
                self.stats.processed += 1
            elif code == Code.STALE_LEASE:
                self.stats.stale += 1
        if Code.STALE_LEASE in codes:
            log.warning("worker %s: %d late completions refused (their lease had moved on)",
                        self.worker_id, codes.count(Code.STALE_LEASE))
