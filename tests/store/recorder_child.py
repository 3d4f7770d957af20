"""A recorder in its own process, for the kill -9 test.

    python -m tests.store.recorder_child REDIS_URL STORE_URL CONSUMER MODE

MODE ``before``: read one batch, say ``hanging`` and hang before the store commits it;
``after``: commit the first batch, say ``hanging`` and hang before acknowledging it;
``free``: just record. Prints ``started`` once the recorder runs.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

from redis.asyncio import Redis

from conveyor.broker.keys import Keys
from conveyor.scheduler.recorder import Recorder
from conveyor.settings import Settings
from conveyor.store import Event, Store, open_store


class Hanging:
    """Stands in for the store; freezes the recorder around its first commit."""

    def __init__(self, store: Store, mode: str) -> None:
        self.store = store
        self.mode = mode

    async def apply(self, events: Sequence[Event]) -> None:
        if self.mode == "after":
            await self.store.apply(events)
        print("hanging", flush=True)
        await asyncio.Event().wait()

    async def apply_retention(self) -> int:
        return 0


async def main(redis_url: str, store_url: str, consumer: str, mode: str) -> None:
    store = await open_store(store_url)
    redis = Redis.from_url(redis_url, decode_responses=True)
    target = store if mode == "free" else Hanging(store, mode)
    recorder = Recorder(redis, Keys("cv"), target, Settings(), consumer,  # type: ignore[arg-type]
                        batch_size=50, block_ms=200, discover_seconds=0.1)
    print("started", flush=True)
    await recorder.run()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
