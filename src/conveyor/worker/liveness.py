"""Liveness that tells a stalled event loop from a dead process.

The heartbeat runs in a thread of its own, with its own event loop and Redis connection. A
handler that blocks the worker's event loop (a sync call inside ``async def``, the most
common user bug) cannot silence it, so a live process is never judged dead and its jobs are
not run twice; only a process that really stopped (killed, frozen, its host gone) goes
silent. A loop stuck for real is still bounded: its leases are not renewed and run out.

The same thread watches the event loop: the loop stamps a tick every ``TICK`` seconds; a
tick older than ``stall_warn_seconds`` is a stall, and the thread notes which handler the
loop's thread is running. When the loop is back, one warning names the handler, the job and
how long it blocked.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, Any

from conveyor.broker.broker import Broker
from conveyor.connect import make_redis
from conveyor.supervise import LoopHealth, Supervisor

if TYPE_CHECKING:
    from conveyor.app import Conveyor
    from conveyor.worker.stats import Stats

log = logging.getLogger("conveyor.worker")
TICK = 0.1


@dataclass
class Stall:
    started: float  # monotonic time of the last tick before the stall
    culprit: str


class Liveness:
    """Responsibilities: the heartbeat thread (start, stop, health), whether this process
    may judge other workers by their heartbeats, and the event-loop stall watch."""

    def __init__(self, app: Conveyor, worker_id: str, info: Callable[[], dict[str, Any]],
                 stats: Stats) -> None:
        self.app = app
        self.settings = app.settings
        self.worker_id = worker_id
        self.info = info
        self.stats = stats
        self.health = LoopHealth("worker.heartbeat",
                                 stale_after=self.settings.heartbeat_ttl_seconds)
        self._thread: threading.Thread | None = None
        self._thread_loop: asyncio.AbstractEventLoop | None = None
        self._halt: asyncio.Event | None = None
        self._started = threading.Event()
        # Monotonic times: since when our beats have landed with no gap over the TTL, and the
        # last one that landed (see may_judge).
        self._beats_since: float | None = None
        self._last_beat = 0.0
        # The stall watch: the event loop's last tick, and the loop thread's id.
        self._tick = time.monotonic()
        self._tick_handle: asyncio.TimerHandle | None = None
        self._loop_thread = threading.get_ident()
        self._stall: Stall | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start ticking on the running event loop and beating from the thread."""
        self._loop_thread = threading.get_ident()
        self._stamp()
        self._thread = threading.Thread(target=self._thread_main, name="conveyor-liveness",
                                        daemon=True)
        self._thread.start()
        self._started.wait(5)

    async def stop(self) -> None:
        if self._tick_handle:
            self._tick_handle.cancel()
        loop, halt = self._thread_loop, self._halt
        if loop and halt and not loop.is_closed():
            loop.call_soon_threadsafe(halt.set)
        if self._thread:
            await asyncio.to_thread(self._thread.join, 10)

    def _stamp(self) -> None:
        self._tick = time.monotonic()
        self._tick_handle = asyncio.get_running_loop().call_later(TICK, self._stamp)

    def _thread_main(self) -> None:
        asyncio.run(self._thread_run())

    async def _thread_run(self) -> None:
        self._thread_loop = asyncio.get_running_loop()
        self._halt = asyncio.Event()
        self._started.set()
        redis = make_redis(self.settings.redis_url, socket_timeout=max(
            1.0, self.settings.heartbeat_ttl_seconds), retry_on_error=[])
        broker = Broker(redis, self.app.keys, self.settings)
        sup = Supervisor("worker.liveness", backoff_cap=self.settings.heartbeat_seconds)
        sup.loops["heartbeat"] = self.health
        sup.tasks.append(asyncio.create_task(sup.supervise(self.health, lambda h: self._beat(
            broker, h))))
        sup.spawn("stall-watch", self._watch, stale_after=10.0)
        try:
            await self._halt.wait()
        finally:
            await sup.stop()
            await redis.aclose()

    # -- heartbeat ---------------------------------------------------------------------------

    async def _beat(self, broker: Broker, health: LoopHealth) -> None:
        ttl_ms = int(max(self.settings.heartbeat_ttl_seconds * 20, 3600) * 1000)
        while True:
            await broker.heartbeat(self.worker_id, self.info(), ttl_ms)
            self.landed()
            health.ok()
            await asyncio.sleep(self.settings.heartbeat_seconds)  # a period

    def landed(self) -> None:
        """A heartbeat landed (also called by the worker for its first, synchronous one)."""
        now = time.monotonic()
        if self._beats_since is None or now - self._last_beat > self.settings.heartbeat_ttl_seconds:
            self._beats_since = now  # our own heartbeat was silent past the TTL meanwhile
        self._last_beat = now

    def may_judge(self, settle: float = 0.0) -> bool:
        """Heartbeats say who is dead only once ours have landed regularly for a whole TTL
        (and ``settle`` seconds, if longer).

        While Redis is unreachable, and after it comes back, every worker looks silent: the
        others need a TTL to beat again, or the first reaper back takes their running jobs
        (and leases that ran out during the outage need their owners' renewal first)."""
        now = time.monotonic()
        ttl = self.settings.heartbeat_ttl_seconds
        return (self._beats_since is not None and now - self._last_beat <= ttl
                and now - self._beats_since >= max(ttl, settle))

    # -- stall watch -------------------------------------------------------------------------

    async def _watch(self, health: LoopHealth) -> None:
        warn = self.settings.stall_warn_seconds
        while True:
            lag = time.monotonic() - self._tick
            if lag > warn and self._stall is None:
                self._stall = Stall(self._tick, self._culprit())
            elif lag <= warn and self._stall is not None:
                self._report(self._stall, self._tick - self._stall.started)
                self._stall = None
            health.ok()
            await asyncio.sleep(TICK)  # a period

    def _culprit(self) -> str:
        """The handler (or else the innermost function) the event loop's thread runs now."""
        frame = sys._current_frames().get(self._loop_thread)
        handlers = {jt.func.__code__: name for name, jt in self.app.registry.items()
                    if hasattr(jt.func, "__code__")}
        innermost = None
        walk: FrameType | None = frame
        while walk is not None:
            innermost = innermost or walk
            if walk.f_code in handlers:
                return (f"handler {handlers[walk.f_code]!r} ({walk.f_code.co_filename}:"
                        f"{walk.f_lineno})")
            walk = walk.f_back
        if innermost is None:
            return "unknown code"
        code = innermost.f_code
        return f"{code.co_name} ({code.co_filename}:{innermost.f_lineno})"

    def _report(self, stall: Stall, seconds: float) -> None:
        self.stats.stalls += 1
        self.stats.longest_stall_ms = max(self.stats.longest_stall_ms, int(seconds * 1000))
        log.warning(
            "worker %s: the event loop was blocked for %.1fs by %s; jobs and leases waited "
            "meanwhile. Use a sync `def` handler (it runs in a thread) or await the blocking "
            "call with asyncio.to_thread", self.worker_id, seconds, stall.culprit)
