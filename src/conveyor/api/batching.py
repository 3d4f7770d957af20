"""Natural batching: requests that arrive while a Redis round trip is in flight share the
next one.

Under load a round trip (a write and a read syscall, and the server's wake-up) costs far
more than the work it carries, so the gateway sends the rate-limit checks and the single
submissions of concurrent requests together: the first caller starts a flush at once (no
added latency when idle); callers that arrive meanwhile queue up and go in the next flush.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

# One result per item, in order; an exception in the list fails only that item's caller.
RunBatch = Callable[[list[T]], Awaitable[Sequence[R | BaseException]]]


class Batcher(Generic[T, R]):
    """Runs ``run_batch`` over the items submitted while the previous batch ran, at most
    ``max_batch`` at a time. Responsibilities: one flushing task at a time, each caller
    woken with its own result or exception, nothing left waiting if a batch fails."""

    def __init__(self, run_batch: RunBatch[T, R], max_batch: int = 500) -> None:
        self.run_batch = run_batch
        self.max_batch = max_batch
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._flushing: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._flushing is None:
            self._flushing = asyncio.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        try:
            while self._pending:
                batch = self._pending[:self.max_batch]
                del self._pending[:self.max_batch]
                await self._run([item for item, _ in batch], [f for _, f in batch])
        finally:
            self._flushing = None

    async def _run(self, items: list[T], futures: list[asyncio.Future[R]]) -> None:
        try:
            results = await self.run_batch(items)
        except asyncio.CancelledError:
            for future in futures:
                future.cancel()
            raise
        except Exception as exc:  # every caller of the batch must hear of it
            for future in futures:
                if not future.done():
                    future.set_exception(exc)
            return
        for future, result in zip(futures, results, strict=True):
            if future.done():
                continue  # the caller gave up (its request was cancelled)
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)

    async def close(self) -> None:
        if self._flushing is not None:
            self._flushing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flushing
