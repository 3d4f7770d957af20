"""Distributed locks for users: ``async with app.lock("name", ttl=30) as lock``.

Each acquisition gets a fencing ``token`` that is larger than every earlier one, so a
resource can refuse writes from a holder whose lease ran out while it was paused. The lock
renews itself from the event loop while held; if a renewal finds it lost, ``lock.lost`` is
set (the holder's token is then stale and a fenced resource will refuse it).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from types import TracebackType
from typing import TYPE_CHECKING

from conveyor.broker.keys import check_name
from conveyor.errors import ConveyorError

if TYPE_CHECKING:
    from conveyor.app import Conveyor


class LockTimeout(ConveyorError, TimeoutError):
    pass


class Lock:
    """One holder's handle on a named lock."""

    def __init__(self, app: Conveyor, name: str, ttl: float, timeout: float | None) -> None:
        self.app = app
        self.name = check_name("lock name", name)
        if not 0.01 <= ttl <= 86400:
            raise ValueError("ttl must be between 0.01 and 86400 seconds")
        self.ttl_ms = int(ttl * 1000)
        self.timeout = timeout
        self.owner = uuid.uuid4().hex
        self.token = 0
        self.lost = False
        self._renewer: asyncio.Task[None] | None = None

    async def acquire(self) -> int:
        """Wait for the lock (woken by the holder's release, or when its lease runs out)."""
        loop = asyncio.get_running_loop()
        deadline = None if self.timeout is None else loop.time() + self.timeout
        pubsub = self.app.redis.pubsub()
        await pubsub.subscribe(self.app.broker.lock_channel(self.name))
        try:
            while True:
                answer = await self.app.broker.lock("acquire", self.name, self.owner, self.ttl_ms)
                if answer > 0:
                    self.token = answer
                    break
                wait = -answer / 1000
                if deadline is not None:
                    wait = min(wait, deadline - loop.time())
                    if wait <= 0:
                        raise LockTimeout(f"lock {self.name!r} not acquired in {self.timeout}s")
                await pubsub.get_message(ignore_subscribe_messages=True, timeout=wait)
        finally:
            await pubsub.aclose()  # type: ignore[no-untyped-call]
        self._renewer = asyncio.create_task(self._renew_loop())
        return self.token

    async def renew(self) -> bool:
        self.lost = await self.app.broker.lock("renew", self.name, self.owner, self.ttl_ms) == 0
        return not self.lost

    async def release(self) -> bool:
        if self._renewer:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
        return await self.app.broker.lock("release", self.name, self.owner, self.ttl_ms) == 1

    async def _renew_loop(self) -> None:
        while not self.lost:
            await asyncio.sleep(self.ttl_ms / 3000)  # renew at a third of the lease
            await self.renew()

    async def __aenter__(self) -> Lock:
        await self.acquire()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.release()
