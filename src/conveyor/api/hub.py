"""The event hub: one reader of every queue's events stream, fanning events out in-process.

One task blocks in ``XREAD`` over all the streams (no consumer group, no polling: Redis
answers the moment an entry is added) and hands each entry to the observers (metrics) and to
every subscriber whose filter matches. Subscribers never slow the reader: each has a bounded
queue, and one that is full is dropped (its WebSocket is then closed with 4008).

Positions are stream entry ids, per queue. A client that reconnects passes the positions it
had reached; ``backfill`` reads what it missed with ``XRANGE`` while live events queue up,
and the subscriber's ``floors`` drop live events the backfill already sent: nothing is
missed, nothing is sent twice.

New queues are found when the hub refreshes the set of queues: after an idle ``block_ms``,
every ``block_ms`` while busy, and at once when a subscriber names a queue it does not know
(the blocked ``XREAD`` is interrupted with ``CLIENT UNBLOCK``). A new queue is read from its
first entry, so no event of it is missed either.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from redis.exceptions import RedisError, ResponseError

from conveyor.connect import is_cluster, make_redis
from conveyor.supervise import LoopHealth, Supervisor

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from conveyor.app import Conveyor

log = logging.getLogger("conveyor.api.hub")

StreamKey = tuple[int, int]
ID_RE = re.compile(r"^\d{1,20}-\d{1,20}$")
START = "0-0"
INT_FIELDS = frozenset({"seq", "ts", "attempt", "due", "max_attempts"})
JSON_FIELDS = frozenset({"args", "result", "error", "meta"})
FLOAT_FIELDS = frozenset({"progress"})  # a number, as in JobInfo and the REST API
RENAMED = {"type": "job_type"}  # "type" names the message kind on the WebSocket
COMPONENT = "api.hub"  # the supervisor's component in /readyz and /metrics


def stream_key(entry_id: str) -> StreamKey:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


@dataclass(slots=True)
class HubEvent:
    """One stream entry of one queue; its WebSocket form is built once, on first use."""

    queue: str
    id: str
    fields: dict[str, str]
    control: bool = False
    _payload: str | None = None

    @property
    def key(self) -> StreamKey:
        return stream_key(self.id)

    @property
    def job(self) -> str:
        return self.fields.get("job", "")

    @property
    def job_type(self) -> str:
        return self.fields.get("type", "")

    def payload(self) -> str:
        if self._payload is None:
            self._payload = orjson.dumps(self.message()).decode()
        return self._payload

    def message(self) -> dict[str, Any]:
        if self.control:
            return {"type": "queue", "queue": self.queue, "id": self.id}
        out: dict[str, Any] = {"type": "event", "queue": self.queue, "id": self.id}
        for name, value in self.fields.items():
            out[RENAMED.get(name, name)] = _typed(name, value)
        return out


def _typed(name: str, value: str) -> Any:
    if name in INT_FIELDS:
        with contextlib.suppress(ValueError):
            return int(value)
    elif name in JSON_FIELDS and value:
        with contextlib.suppress(orjson.JSONDecodeError):
            return orjson.loads(value)
    elif name in FLOAT_FIELDS:
        with contextlib.suppress(ValueError):
            return float(value)
    return value


@dataclass(frozen=True, slots=True)
class Filter:
    """Which events a subscriber wants; None means any. Queue-level events (pause, resume)
    have no job and pass a job filter only when it is None."""

    queues: frozenset[str] | None = None
    jobs: frozenset[str] | None = None
    types: frozenset[str] | None = None

    def wants_queue(self, queue: str) -> bool:
        return self.queues is None or queue in self.queues

    def matches(self, ev: HubEvent) -> bool:
        if self.queues is not None and ev.queue not in self.queues:
            return False
        if ev.control:
            return True
        if self.jobs is not None and ev.job not in self.jobs:
            return False
        return self.types is None or ev.job_type in self.types


@dataclass(eq=False)
class Subscriber:
    """One client's side of the hub: its filter, a bounded queue of matching events, the
    floors below which live events were already sent by a backfill, and what to call when
    the queue overflows (after which it receives nothing more)."""

    filter: Filter
    maxsize: int
    on_drop: Callable[[], None]
    floors: dict[str, StreamKey] = field(default_factory=dict)
    dropped: bool = False
    queue: asyncio.Queue[HubEvent] = field(init=False)

    def __post_init__(self) -> None:
        self.queue = asyncio.Queue(self.maxsize)

    def offer(self, ev: HubEvent) -> None:
        if self.dropped or not self.filter.matches(ev):
            return
        try:
            self.queue.put_nowait(ev)
        except asyncio.QueueFull:
            self.dropped = True
            self.on_drop()

    def is_new(self, ev: HubEvent) -> bool:
        floor = self.floors.get(ev.queue)
        return floor is None or ev.key > floor


Observer = Callable[[HubEvent], None]


class Hub:
    """Reads the events streams (see the module docstring). Responsibilities: the queue set
    and a position per stream; one blocking reader loop (one per queue on Cluster) run by a
    ``Supervisor`` (component ``api.hub``: Redis errors and error replies back off and retry
    forever, a bug restarts the loop, ``on_fatal`` after repeated crashes); dispatch to
    observers and subscribers; backfill and trim detection for resuming clients."""

    def __init__(
        self, conveyor: Conveyor, *, block_ms: int = 1000, count: int = 1000,
        observers: Iterable[Observer] = (), stale_after: float = 30.0,
        on_fatal: Callable[[str], None] | None = None,
    ) -> None:
        self.conveyor = conveyor
        self.block_ms = block_ms
        self.count = count
        self.observers = list(observers)
        self.positions: dict[str, str] = {}
        self.subscribers: set[Subscriber] = set()
        self._reader: Redis | None = None
        self._reader_id: int | None = None
        self._blocked = False
        self._refresh_at = 0.0
        self._wake = asyncio.Event()
        self._stopping = False
        self._snapshotted = False
        # On Redis Cluster one XREAD may only name streams of one slot: a reader per queue.
        self._cluster = is_cluster(conveyor.settings.redis_url)
        self._queue_readers: dict[str, asyncio.Task[None]] = {}
        self.stale_after = stale_after
        self.on_fatal = on_fatal  # what a loop that keeps crashing does (default: exit 70)
        self.supervisor: Supervisor | None = None

    def stream(self, queue: str) -> str:
        return self.conveyor.keys.queue(queue).events

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        # A connection of its own, with a socket timeout just past the block: a reader that
        # stops answering (a failover wedge) raises instead of hanging the hub.
        self._reader = make_redis(self.conveyor.settings.redis_url,
                                  blocking_timeout=self.block_ms / 1000)
        with contextlib.suppress(RedisError, OSError):  # Redis down: the loop snapshots
            await self._snapshot()
        self.supervisor = Supervisor(COMPONENT, on_fatal=self.on_fatal)
        self.supervisor.spawn("reader", self._run, stale_after=self.stale_after)

    async def stop(self) -> None:
        # A flag as well as cancel(): redis-py can swallow a cancellation that arrives
        # during a command, and the loop would go on.
        self._stopping = True
        self._wake.set()
        if self.supervisor is not None:
            await self.supervisor.stop()
        if self._reader is not None:
            await self._reader.aclose()

    async def _snapshot(self) -> None:
        """Start every known stream at its current end (only live events from now)."""
        queues = await self.conveyor.queues()
        redis = self.conveyor.redis
        async with redis.pipeline(transaction=False) as pipe:
            for q in queues:
                pipe.xrevrange(self.stream(q), count=1)
            lasts = await pipe.execute()
        for q, last in zip(queues, lasts, strict=True):
            self.positions.setdefault(q, last[0][0] if last else START)
        self._refresh_at = asyncio.get_running_loop().time() + self.block_ms / 1000
        self._snapshotted = True

    async def _run(self, health: LoopHealth) -> None:
        """The reader loop, run by the supervisor: it retries Redis errors with backoff and
        restarts the loop after anything else (a bug), keeping each position."""
        try:
            while not self._stopping:
                await self._step()
                health.ok()
        finally:
            self._reader_id = None  # after an error the reader may be a new connection

    async def _step(self) -> None:
        loop = asyncio.get_running_loop()
        if loop.time() >= self._refresh_at or not self._snapshotted:
            await self._refresh()
        assert self._reader is not None
        if self._cluster:
            self._start_queue_readers()
        elif self._reader_id is None:
            self._reader_id = int(await self._reader.client_id())
        if self._cluster or not self.positions:
            # No stream to block on yet (or, on Cluster, the per-queue readers do it): wait
            # for discover() or a while, then look for new queues.
            self._refresh_at = 0.0
            # call_later rather than asyncio.timeout: on 3.11 a timeout expiring as stop()
            # cancels the task can swallow that cancellation.
            timer = loop.call_later(self.block_ms / 1000, self._wake.set)
            try:
                await self._wake.wait()
            finally:
                timer.cancel()
            self._wake.clear()
            return
        streams: dict[Any, Any] = {self.stream(q): pos for q, pos in self.positions.items()}
        self._blocked = True
        try:
            reply = await self._reader.xread(streams, count=self.count, block=self.block_ms)
        finally:
            self._blocked = False
        if not reply:
            self._refresh_at = 0.0
            return
        self._dispatch_reply(reply)

    def _start_queue_readers(self) -> None:
        assert self.supervisor is not None
        for queue in self.positions:
            if queue not in self._queue_readers:
                self._queue_readers[queue] = self.supervisor.spawn(
                    f"reader.{queue}", functools.partial(self._read_queue, queue),
                    stale_after=self.stale_after)

    async def _read_queue(self, queue: str, health: LoopHealth) -> None:
        """Cluster mode: block on one queue's stream (its own slot) and dispatch."""
        assert self._reader is not None
        while not self._stopping:
            reply = await self._reader.xread({self.stream(queue): self.positions[queue]},
                                             count=self.count, block=self.block_ms)
            health.ok()
            if reply:
                self._dispatch_reply(reply)

    def _dispatch_reply(self, reply: Any) -> None:
        by_stream = {self.stream(q): q for q in self.positions}
        for stream, entries in reply:
            queue = by_stream[stream]
            for entry_id, fields in entries:
                self.positions[queue] = entry_id
                self.dispatch(HubEvent(queue, entry_id, fields))

    async def _refresh(self) -> None:
        if not self._snapshotted:  # Redis was down at start: begin at the ends, not the starts
            await self._snapshot()
            return
        self._refresh_at = asyncio.get_running_loop().time() + self.block_ms / 1000
        for queue in await self.conveyor.queues():
            if queue not in self.positions:
                self.positions[queue] = START
                self.dispatch(HubEvent(queue, START, {}, control=True))

    def dispatch(self, ev: HubEvent) -> None:
        if not ev.control:
            for observe in self.observers:
                observe(ev)
        for sub in list(self.subscribers):
            sub.offer(ev)

    # -- subscribers ----------------------------------------------------------------------

    def register(self, sub: Subscriber) -> dict[str, str]:
        """Deliver live events to ``sub`` from now; returns the positions it starts after."""
        self.subscribers.add(sub)
        return {q: pos for q, pos in self.positions.items() if sub.filter.wants_queue(q)}

    def unregister(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)

    async def discover(self, queues: Iterable[str] | None = None) -> None:
        """Make sure the named queues (None: all queues) are read: refresh the queue set now
        and wake the blocked reader if it changed."""
        if queues is not None and all(q in self.positions for q in queues):
            return
        known = len(self.positions)
        await self._refresh()
        if len(self.positions) == known:
            return
        self._wake.set()
        if self._blocked and self._reader_id is not None:
            await self.conveyor.redis.client_unblock(self._reader_id)

    async def backfill(
        self, queue: str, after: str, batch: int = 500
    ) -> AsyncIterator[list[HubEvent]]:
        """Entries of ``queue`` after position ``after``, in batches, to the current end."""
        redis = self.conveyor.redis
        cursor = after
        while True:
            entries: list[tuple[str, dict[str, str]]] = await redis.xrange(  # type: ignore[assignment]
                self.stream(queue), min=f"({cursor}", count=batch)
            if not entries:
                return
            yield [HubEvent(queue, i, f) for i, f in entries]
            cursor = entries[-1][0]
            if len(entries) < batch:
                return

    async def trimmed_after(self, queue: str, position: str) -> bool:
        """Whether entries after ``position`` were trimmed away (MAXLEN) before being read."""
        try:
            info = await self.conveyor.redis.xinfo_stream(self.stream(queue))
        except ResponseError:  # no such stream: nothing was ever written, nothing trimmed
            return False
        deleted = info.get("max-deleted-entry-id")
        return bool(deleted) and stream_key(str(deleted)) > stream_key(position)
