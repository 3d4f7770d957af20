"""One supervision policy for every long-lived loop (worker, scheduler, recorder, API hub).

- ``is_transient`` is the one place that decides what a passing fault is: connection and
  timeout errors, and the error replies a healthy deployment gives for a while (OOM,
  READONLY after a fail-over, BUSY, LOADING, MISCONF while snapshots fail (a full disk),
  MASTERDOWN, TRYAGAIN, CLUSTERDOWN, ...).
- A transient error backs the loop off with full jitter and retries it forever; the outage
  is logged once when it starts and once when the loop succeeds again.
- Anything else is a bug or a broken deployment: logged with its traceback, and the loop is
  restarted. A loop that fails ``max_restarts`` times within ``window`` seconds ends the
  process with exit status 70 (EX_SOFTWARE): a supervisor (systemd, Kubernetes, compose)
  restarts it, instead of it running on half dead.
- Each loop reports its health (``LoopHealth``): last success, state, errors, restarts. It
  is shown by ``conveyor status`` (workers and schedulers publish it), ``/readyz`` and
  ``/metrics``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import (
    ClusterDownError,
    OutOfMemoryError,
    ReadOnlyError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = logging.getLogger("conveyor.supervise")

# Error replies that a healthy deployment gives for a while: they pass without a restart.
TRANSIENT_CLASSES = (RedisConnectionError, RedisTimeoutError, OSError, TimeoutError,
                     OutOfMemoryError, ReadOnlyError, ClusterDownError, TryAgainError)
TRANSIENT_REPLIES = ("OOM", "READONLY", "BUSY", "LOADING", "MISCONF", "MASTERDOWN", "TRYAGAIN",
                     "CLUSTERDOWN", "NOREPLICAS", "NOTBUSY", "MOVED", "ASK", "UNBLOCKED")
EXIT_LOOP_FAILED = 70  # EX_SOFTWARE: a loop kept failing on something that is not an outage


def is_transient(exc: BaseException) -> bool:
    """True for faults that pass by themselves: back off and retry, never restart or exit.

    redis-py's ``ConnectionError`` and ``TimeoutError`` are not ``OSError``s, so all are
    named. redis-py maps some error replies to classes and strips their code from the
    message (OOM, READONLY, LOADING, TRYAGAIN, CLUSTERDOWN, MASTERDOWN); the others (BUSY,
    NOREPLICAS, ...) are plain ``ResponseError``s recognised by the reply's first word."""
    if isinstance(exc, TRANSIENT_CLASSES):
        return True
    if isinstance(exc, ResponseError):
        return reply_code(str(exc)) in TRANSIENT_REPLIES
    return False


def reply_code(message: str) -> str:
    """The error reply's code; a pipeline wraps it: "Command # 1 (...) of pipeline caused
    error: ('BUSY ...')" (redis-py), so look inside that too."""
    marker = "of pipeline caused error: "
    if marker in message:
        message = message.split(marker, 1)[1].lstrip("('\"")
    return message.split(" ", 1)[0].upper()


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


@dataclass
class LoopHealth:
    """What one loop last did. Times are ``time.time()`` (they are shown to people)."""

    name: str
    stale_after: float  # a running loop with no success for this long is stuck
    needed: bool = True  # a stuck needed loop makes the process not ready
    state: str = "starting"  # starting | ok | idle | backing off | restarting
    last_ok: float = field(default_factory=time.time)
    failing_since: float | None = None
    last_error: str = ""
    transient_errors: int = 0
    restarts: int = 0

    def ok(self) -> None:
        """The loop did its work (or found none to do)."""
        now = time.time()
        if self.failing_since is not None:
            log.warning("%s: recovered after %.1fs", self.name, now - self.failing_since)
            self.failing_since = None
        self.state = "ok"
        self.last_ok = now

    @contextlib.asynccontextmanager
    async def idle(self) -> AsyncIterator[None]:
        """Waiting for work is healthy, however long it takes."""
        self.ok()
        self.state = "idle"
        try:
            yield
        finally:
            self.ok()

    def age(self, now: float | None = None) -> float:
        return (now or time.time()) - self.last_ok

    def stuck(self, now: float | None = None) -> bool:
        return self.state != "idle" and self.age(now) > self.stale_after

    def as_dict(self, now: float | None = None) -> dict[str, Any]:
        now = now or time.time()
        return {"state": self.state, "age": round(self.age(now), 3), "stuck": self.stuck(now),
                "needed": self.needed, "errors": self.transient_errors,
                "restarts": self.restarts, "last_error": self.last_error}


def _default_fatal(name: str) -> None:
    log.critical("%s keeps failing: exiting so that a supervisor restarts the process", name)
    logging.shutdown()
    os._exit(EXIT_LOOP_FAILED)


class Supervisor:
    """Runs named loops under the policy above and keeps their ``LoopHealth``.

    A loop is a coroutine function taking its ``LoopHealth``; it runs until cancelled,
    calling ``health.ok()`` after each unit of work (and ``async with health.idle():``
    around waits for work). When it raises, the supervisor backs off and calls it again.
    ``on_fatal`` replaces the default exit (tests use it)."""

    registry: dict[str, Supervisor] = {}  # by component (made unique), for /metrics, /readyz

    def __init__(
        self, component: str, *, max_restarts: int = 5, window: float = 60.0,
        backoff_base: float = 0.1, backoff_cap: float = 5.0,
        on_fatal: Callable[[str], None] | None = None,
    ) -> None:
        self.component = component
        self.max_restarts = max_restarts
        self.window = window
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.on_fatal = on_fatal or _default_fatal
        self.loops: dict[str, LoopHealth] = {}
        self.tasks: list[asyncio.Task[None]] = []
        # Unique per process: two workers in one process each keep their own entry.
        self.key, n = component, 1
        while self.key in Supervisor.registry:
            n += 1
            self.key = f"{component}#{n}"
        Supervisor.registry[self.key] = self

    def spawn(
        self, name: str, body: Callable[[LoopHealth], Awaitable[None]], *,
        stale_after: float = 60.0, needed: bool = True,
    ) -> asyncio.Task[None]:
        health = self.loops[name] = LoopHealth(f"{self.component}.{name}", stale_after, needed)
        task = asyncio.create_task(self.supervise(health, body), name=f"{self.component}:{name}")
        self.tasks.append(task)
        return task

    async def supervise(
        self, health: LoopHealth, body: Callable[[LoopHealth], Awaitable[None]]
    ) -> None:
        failures: list[float] = []  # monotonic times of recent non-transient failures
        streak = 0  # consecutive transient errors: drives the backoff
        while True:
            try:
                await body(health)
                return  # the loop ended by itself (its stop condition)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if is_transient(exc):
                    streak += 1
                    self._transient(health, exc)
                else:
                    streak = 0
                    self._crashed(health, exc, failures)
            await asyncio.sleep(self._delay(max(streak, 1)))  # backoff, not synchronisation

    def _delay(self, attempt: int) -> float:
        cap = min(self.backoff_cap, self.backoff_base * 2 ** min(attempt, 16))
        return self.backoff_base / 2 + random.uniform(0, cap)

    @staticmethod
    def _transient(health: LoopHealth, exc: BaseException) -> None:
        health.transient_errors += 1
        health.last_error = describe(exc)
        health.state = "backing off"
        if health.failing_since is None:
            health.failing_since = time.time()
            log.warning("%s: Redis unavailable (%s); retrying with backoff", health.name,
                        health.last_error)

    def _crashed(self, health: LoopHealth, exc: BaseException, failures: list[float]) -> None:
        now = time.monotonic()
        failures[:] = [t for t in failures if now - t < self.window] + [now]
        health.restarts += 1
        health.last_error = describe(exc)
        health.state = "restarting"
        if health.failing_since is None:
            health.failing_since = time.time()
        log.error("%s crashed (restart %d): %s", health.name, len(failures), health.last_error,
                  exc_info=exc)
        if len(failures) >= self.max_restarts:
            self.on_fatal(health.name)

    def health(self) -> dict[str, dict[str, Any]]:
        """Each loop's health. Safe from another thread (the heartbeat's): ``list()`` copies
        the dict in one step under the GIL, so a loop spawned meanwhile cannot break it."""
        now = time.time()
        return {name: h.as_dict(now) for name, h in list(self.loops.items())}

    def stuck(self) -> list[str]:
        """Needed loops that are stuck: their process is not ready."""
        now = time.time()
        return [h.name for h in list(self.loops.values()) if h.needed and h.stuck(now)]

    async def stop(self) -> None:
        """Cancel every loop and wait until each has ended."""
        while pending := [t for t in self.tasks if not t.done()]:
            for task in pending:
                task.cancel()
            await asyncio.wait(pending, timeout=0.5)
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if Supervisor.registry.get(self.key) is self:
            del Supervisor.registry[self.key]


async def every(period: float, step: Callable[[], Awaitable[Any]], health: LoopHealth) -> None:
    """A loop body that runs ``step`` every ``period`` seconds."""
    while True:
        await step()
        health.ok()
        await asyncio.sleep(period)  # a period, not a wait for state
