"""The worker's concurrency bound, shared by the fetchers of all its queues."""

from __future__ import annotations

import asyncio


class Slots:
    """At most ``total`` jobs run at once, whatever the number of queues.

    A fetcher *takes* its slots before it claims and gives back the ones its claim did not
    fill, so two fetchers can never both claim the last free slot (reading a free count
    before an await and acting on it after is how concurrency gets overrun)."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.free = total
        self._freed = asyncio.Event()

    async def take(self, most: int) -> int:
        """Wait until a slot is free, then take up to ``most`` of the free ones."""
        while self.free <= 0:
            self._freed.clear()
            await self._freed.wait()
        n = min(self.free, most)
        self.free -= n
        return n

    def give(self, n: int = 1) -> None:
        if n > 0:
            self.free += n
            self._freed.set()

    @property
    def in_use(self) -> int:
        return self.total - self.free
