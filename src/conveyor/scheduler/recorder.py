"""The recorder: copies every queue's events stream into the history store.

Delivery is at-least-once and the store's fold is idempotent, so nothing is lost and nothing
counts twice: entries are acknowledged (XACK) only after the store committed them; entries a
recorder read but never acknowledged (it crashed, or its store was down) stay pending in the
consumer group, and any recorder takes them over once idle for ``min_idle_ms`` (XAUTOCLAIM).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from conveyor.errors import InvalidName
from conveyor.store.events import Event, MalformedEvent, parse_entry

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from conveyor.broker.keys import Keys
    from conveyor.settings import Settings
    from conveyor.store.base import Store

log = logging.getLogger("conveyor.recorder")

GROUP = "recorder"
Entry = tuple[str, str, dict[str, str] | None]  # (stream, entry id, fields; None if trimmed)
REDIS_DOWN = (RedisConnectionError, RedisTimeoutError, OSError)


@dataclass
class RecorderStats:
    """Counters for logs, metrics and the benchmark. Lag is Redis event time to store commit,
    for newly read entries (taken-over entries are old by nature)."""

    events: int = 0
    batches: int = 0
    skipped: int = 0
    claimed: int = 0
    store_errors: int = 0
    last_lag_ms: int | None = None
    max_lag_ms: int = 0


class Recorder:
    """Consumer of every queue's events stream that writes the history store.

    Responsibilities:
    - discover queues from ``{prefix}:queues`` (every ``discover_seconds``) and create the
      consumer group on each events stream (``MKSTREAM``, from id 0, so no event written
      before the recorder first ran is missed); recreate groups Redis lost (``NOGROUP``);
    - read new entries in batches with a blocking XREADGROUP, over all streams in one call,
      or one stream per call and reader (``one_stream_per_call``, for Redis Cluster where a
      call may only name keys of one slot);
    - apply each batch to the store in one commit, then XACK it; while the store fails,
      retry the same batch with backoff and read nothing further (back-pressure);
    - take over entries left pending by dead consumers (XAUTOCLAIM, ``min_idle_ms``) and
      re-apply its own pending entries at start (a restart under the same consumer name);
    - purge the store past its retention every ``retention_seconds``.
    """

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        store: Store,
        settings: Settings,
        consumer_name: str,
        *,
        group: str = GROUP,
        batch_size: int = 1000,
        block_ms: int = 1000,
        min_idle_ms: int = 30_000,
        discover_seconds: float = 2.0,
        retention_seconds: float = 3600.0,
        one_stream_per_call: bool = False,
        max_backoff_seconds: float = 5.0,
    ) -> None:
        """``redis`` must use ``decode_responses=True`` and a socket timeout above
        ``block_ms`` (or none). ``min_idle_ms`` must exceed the longest a healthy recorder
        takes to commit a batch, or recorders steal batches from each other (harmless: the
        store is idempotent, but wasted work)."""
        self.redis = redis
        self.keys = keys
        self.store = store
        self.settings = settings
        self.consumer = consumer_name
        self.group = group
        self.batch_size = batch_size
        self.block_ms = block_ms
        self.min_idle_ms = min_idle_ms
        self.discover_seconds = discover_seconds
        self.retention_seconds = retention_seconds
        self.one_stream_per_call = one_stream_per_call
        self.max_backoff_seconds = max_backoff_seconds
        self.stats = RecorderStats()
        self._queues: dict[str, str] = {}  # events stream key -> queue name
        self._readers: dict[str, asyncio.Task[None]] = {}
        self._tasks: asyncio.TaskGroup | None = None
        self._stopping = asyncio.Event()
        self._new_streams = asyncio.Event()

    @property
    def streams(self) -> list[str]:
        return list(self._queues)

    def stop(self) -> None:
        """Ask ``run`` to return once the batch in hand is committed and acknowledged (or at
        once if the store is down: the batch stays pending for the next recorder). A
        recorder runs once; make a new one to start again."""
        self._stopping.set()

    async def run(self) -> None:
        """Record until ``stop()`` or cancellation. Redis or the store being down does not
        end it: it logs, waits and tries again."""
        # If one of these fails (Redis down), housekeeping discovers and claims later; the
        # periodic XAUTOCLAIM also takes back this consumer's own pending entries.
        for step in (self._discover, self._drain_own_pending, self._claim_stale):
            await _logged(step)
        try:
            async with asyncio.TaskGroup() as tasks:
                self._tasks = tasks
                tasks.create_task(self._housekeeping(), name="recorder-housekeeping")
                self._spawn_readers()
        finally:
            self._tasks = None
            self._readers.clear()

    # -- queues and groups -----------------------------------------------------------------

    async def _discover(self) -> None:
        found = False
        members: set[str] = await self.redis.smembers(self.keys.glob.queues)  # type: ignore[assignment]
        for name in sorted(members):
            try:
                stream = self.keys.queue(name).events
            except InvalidName:
                log.warning("ignoring queue %r in %s: not a valid queue name",
                            name, self.keys.glob.queues)
                continue
            if stream not in self._queues:
                await self._ensure_group(stream)
                self._queues[stream] = name
                found = True
        if found:
            self._new_streams.set()
            self._spawn_readers()

    async def _ensure_group(self, stream: str) -> None:
        try:
            await self.redis.xgroup_create(stream, self.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def _spawn_readers(self) -> None:
        if self._tasks is None:
            return
        wanted = self.streams if self.one_stream_per_call else ["*"]
        for key in wanted:
            if key not in self._readers:
                self._readers[key] = self._tasks.create_task(
                    self._read_loop(None if key == "*" else key), name=f"recorder-read-{key}")

    # -- the read, apply, acknowledge cycle ------------------------------------------------

    async def _read_loop(self, stream: str | None) -> None:
        """Read a batch, commit it, acknowledge it; again. (Reading the next batch while one
        commits measured no faster here: the store's work holds the GIL either way.)"""
        while not self._stopping.is_set():
            entries = await self._next_batch(stream)
            if entries:
                await _settled(self._commit(entries, claimed=False))

    async def _next_batch(self, stream: str | None) -> list[Entry]:
        """New entries of ``stream`` (None: of every stream), or [] after a wait or failure."""
        streams = [stream] if stream else self.streams
        if not streams:
            await self._wait_for_streams()
            return []
        try:
            return await self._read(streams)
        except REDIS_DOWN as exc:
            log.warning("recorder lost Redis (%s); retrying", exc)
        except Exception:  # keep recording; the traceback goes to the log
            log.exception("recorder read failed; retrying")
        await self._stopped_within(1.0)
        return []

    async def _wait_for_streams(self) -> None:
        self._new_streams.clear()
        stop = asyncio.ensure_future(self._stopping.wait())
        new = asyncio.ensure_future(self._new_streams.wait())
        try:
            await asyncio.wait([stop, new], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            new.cancel()

    async def _read(self, streams: list[str], start: str = ">") -> list[Entry]:
        try:
            reply = await self.redis.xreadgroup(
                self.group, self.consumer, dict.fromkeys(streams, start),
                count=self.batch_size, block=self.block_ms if start == ">" else None)
        except ResponseError as exc:
            # NOGROUP: the group is gone; UNBLOCKED: the stream was deleted while we waited.
            if not str(exc).startswith(("NOGROUP", "UNBLOCKED")):
                raise
            log.warning("events stream or consumer group gone (did Redis lose its data?): %s; "
                        "creating the group again", exc)
            for s in streams:
                await self._ensure_group(s)
            return []
        return list(_entries(reply))

    async def _commit(self, entries: list[Entry], claimed: bool) -> bool:
        """Apply then acknowledge ``entries``; False if stopped while the store was down."""
        events = self._parse(entries)
        if events and not await self._apply(events):
            return False
        await self._ack(entries)
        self.stats.batches += 1
        self.stats.events += len(events)
        if events and not claimed:
            lag = int(time.time() * 1000) - min(e.ts for e in events)
            self.stats.last_lag_ms = lag
            self.stats.max_lag_ms = max(self.stats.max_lag_ms, lag)
        return True

    def _parse(self, entries: list[Entry]) -> list[Event]:
        events = []
        for stream, entry_id, fields in entries:
            try:
                event = parse_entry(self._queues.get(stream, ""), entry_id, fields)
            except MalformedEvent as exc:
                log.error("skipping malformed event: %s", exc)
                event = None
            if event is None:
                self.stats.skipped += 1
            else:
                events.append(event)
        return events

    async def _apply(self, events: list[Event]) -> bool:
        delay = 0.1
        while True:
            try:
                await self.store.apply(events)
                return True
            except Exception:
                self.stats.store_errors += 1
                log.warning("history store failed to apply %d events; retrying in %.1f s",
                            len(events), delay, exc_info=True)
            if await self._stopped_within(delay):
                return False
            delay = min(delay * 2, self.max_backoff_seconds)

    async def _ack(self, entries: list[Entry]) -> None:
        by_stream: dict[str, list[str]] = {}
        for stream, entry_id, _ in entries:
            by_stream.setdefault(stream, []).append(entry_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            for stream, ids in by_stream.items():
                pipe.xack(stream, self.group, *ids)
            await pipe.execute()

    # -- pending entries -------------------------------------------------------------------

    async def _drain_own_pending(self) -> None:
        """Re-apply what this consumer name read before a restart but never acknowledged."""
        for stream in self.streams:
            while not self._stopping.is_set():
                entries = await self._read([stream], start="0")
                if not entries or not await self._commit(entries, claimed=True):
                    break

    async def _claim_stale(self) -> None:
        """Take over entries other consumers left pending longer than ``min_idle_ms``."""
        for stream in self.streams:
            start = "0-0"
            while not self._stopping.is_set():
                reply = await self.redis.xautoclaim(
                    stream, self.group, self.consumer, self.min_idle_ms, start,
                    count=self.batch_size)
                start, claimed = reply[0], reply[1]
                entries = [(stream, i, f) for i, f in claimed if i is not None]
                if entries:
                    self.stats.claimed += len(entries)
                    if not await self._commit(entries, claimed=True):
                        return
                if start == "0-0":
                    break

    # -- periodic work ---------------------------------------------------------------------

    async def _housekeeping(self) -> None:
        claim_every = max(self.min_idle_ms / 2000, self.discover_seconds)
        next_claim = time.monotonic() + claim_every
        next_retention = time.monotonic() + min(60.0, self.retention_seconds)
        while not await self._stopped_within(self.discover_seconds):
            await _logged(self._discover)
            now = time.monotonic()
            if now >= next_claim:
                await _logged(self._claim_stale)
                next_claim = now + claim_every
            if now >= next_retention:
                await _logged(self._retention)
                next_retention = now + self.retention_seconds

    async def _retention(self) -> None:
        purged = await self.store.apply_retention()
        if purged:
            log.info("history retention purged %d jobs", purged)

    async def _stopped_within(self, seconds: float) -> bool:
        """Wait up to ``seconds``; True as soon as ``stop()`` is called."""
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
        except TimeoutError:
            return False
        return True


async def _logged(step: Callable[[], Awaitable[Any]]) -> None:
    """Run one periodic step; a failure is logged and the next period tries again."""
    name = getattr(step, "__name__", step)
    try:
        await step()
    except REDIS_DOWN as exc:
        log.warning("recorder step %s: Redis unavailable (%s); trying again later", name, exc)
    except Exception:
        log.exception("recorder step %s failed", name)


async def _settled(commit: Awaitable[bool]) -> None:
    """Run a commit; a failure is logged, its entries stay pending (to be redelivered or
    taken over later), and reading goes on."""
    try:
        await commit
    except REDIS_DOWN as exc:
        log.warning("recorder could not acknowledge a batch (%s); it will be redelivered", exc)
    except Exception:
        log.exception("recorder commit failed; its entries stay pending")


def _entries(reply: Any) -> Iterable[Entry]:
    """Flatten an XREADGROUP reply (RESP2 list or RESP3 dict form)."""
    if not reply:
        return
    if isinstance(reply, dict):  # RESP3: {stream: [[(id, fields), ...]]}
        for stream, groups in reply.items():
            for messages in groups:
                for entry_id, fields in messages:
                    yield stream, entry_id, fields
        return
    for stream, messages in reply:
        for entry_id, fields in messages:
            yield stream, entry_id, fields
