"""The recorder: copies every queue's events stream into the history store.

Delivery is at-least-once and the store's fold is idempotent, so nothing is lost and nothing
counts twice: entries are acknowledged (XACK) only after the store committed them; entries a
recorder read but never acknowledged (it crashed, or its store was down) stay pending in the
consumer group, and any recorder takes them over once idle for ``min_idle_ms`` (XAUTOCLAIM).

Faults follow ``conveyor.supervise``: a transient error (``is_transient``: connection,
timeout, OOM, READONLY, BUSY, LOADING, ...) backs off with jitter and retries for ever, logged
once per outage; anything else ends ``run`` with the error, for a ``Supervisor`` to log and
restart. A store that fails is retried with backoff (back-pressure), never skipped.

Gaps: the streams are capped (``XADD MAXLEN ~``), so a recorder that stops or falls behind
by more than the cap loses entries it never read. Before each read the recorder compares the
group's position with the stream (XINFO STREAM / XINFO GROUPS): entries added, minus those
still in the stream, minus those the group read, is the number trimmed unread. A gap is
logged as an error with the stream and id range, counted (``RecorderStats.gaps``) and kept
in the history store (``Store.record_gap``), so ``conveyor recover`` does not re-run a job
whose history may be missing its completion. Pending entries trimmed before they were
committed are gaps too.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from redis.exceptions import ResponseError

from conveyor.errors import InvalidName
from conveyor.store.base import Gap
from conveyor.store.events import Event, MalformedEvent, parse_entry
from conveyor.supervise import LoopHealth, describe, is_transient

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from conveyor.broker.keys import Keys
    from conveyor.settings import Settings
    from conveyor.store.base import Store

log = logging.getLogger("conveyor.recorder")

GROUP = "recorder"
Entry = tuple[str, str, dict[str, str] | None]  # (stream, entry id, fields; None if trimmed)


@dataclass
class RecorderStats:
    """Counters for logs, metrics and the benchmark. Lag is Redis event time to store commit,
    for newly read entries (taken-over entries are old by nature)."""

    events: int = 0
    batches: int = 0
    skipped: int = 0
    claimed: int = 0
    store_errors: int = 0
    transient_errors: int = 0
    gaps: int = 0  # ranges of events trimmed before they were recorded
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
    - detect entries trimmed before they were recorded, and keep them as gaps;
    - purge the store past its retention every ``retention_seconds``;
    - report to ``health`` (a ``supervise.LoopHealth``): ``ok()`` after each committed
      batch and each read that found nothing, ``idle`` while a read blocks for events.
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
        batch_size: int = 5000,
        block_ms: int = 1000,
        min_idle_ms: int = 30_000,
        discover_seconds: float = 2.0,
        retention_seconds: float = 3600.0,
        one_stream_per_call: bool = False,
        max_backoff_seconds: float = 5.0,
        health: LoopHealth | None = None,
    ) -> None:
        """``redis`` must use ``decode_responses=True`` and a socket timeout above
        ``block_ms`` (or none). ``batch_size`` bounds the entries read per stream and call:
        a recorder that keeps up reads what is there; one that fell behind catches up faster
        in large batches (a commit per batch, and a job's events of one batch folded into one
        row write). ``min_idle_ms`` must exceed the longest a healthy recorder
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
        self.health = health or LoopHealth("recorder", stale_after=60.0)
        self._gaps_seen: set[tuple[str, str, str]] = set()
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
        end it: it logs, waits and tries again. A reader's fault that is no outage (a bug,
        a denied command) ends it with that error, for a supervisor to restart it."""
        # If one of these fails (Redis down), housekeeping discovers and claims later; the
        # periodic XAUTOCLAIM also takes back this consumer's own pending entries.
        for step in (self._discover, self._drain_own_pending, self._claim_stale):
            await self._logged(step)
        try:
            async with asyncio.TaskGroup() as tasks:
                self._tasks = tasks
                tasks.create_task(self._housekeeping(), name="recorder-housekeeping")
                self._spawn_readers()
        except ExceptionGroup as group:  # a reader failed on a bug: the supervisor's to log
            raise group.exceptions[0] from None
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
        commits measured no faster here: the store's work holds the GIL either way.)
        Transient errors back off; others end the loop (and ``run``)."""
        streak = 0
        while not self._stopping.is_set():
            try:
                await self._step(stream)
                streak = 0
            except Exception as exc:
                if not is_transient(exc):
                    raise
                streak += 1
                self._outage(f"reading {stream or 'the events streams'}", exc)
                await self._stopped_within(_backoff(streak, self.max_backoff_seconds))

    async def _step(self, stream: str | None) -> None:
        """One batch of ``stream`` (None: of every stream), or a wait for streams."""
        streams = [stream] if stream else self.streams
        if not streams:
            await self._wait_for_streams()
            return
        if not await self._check_gaps(streams):
            return  # stopped while the store was down
        entries = await self._read(streams)
        if entries:
            await self._commit(entries, claimed=False)

    def _outage(self, doing: str, exc: BaseException) -> None:
        """Note a transient error on ``health``; logged once per outage (``health.ok()``
        logs the recovery)."""
        self.stats.transient_errors += 1
        health = self.health
        health.transient_errors += 1
        health.last_error = describe(exc)
        health.state = "backing off"
        if health.failing_since is None:
            health.failing_since = time.time()
            log.warning("recorder: Redis unavailable while %s (%s); retrying with backoff",
                        doing, health.last_error)

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
        blocking = start == ">"
        if blocking:
            self.health.state = "idle"  # waiting for events is healthy, however long
        try:
            reply = await self.redis.xreadgroup(
                self.group, self.consumer, dict.fromkeys(streams, start),
                count=self.batch_size, block=self.block_ms if blocking else None)
        except ResponseError as exc:
            # NOGROUP: the group is gone; UNBLOCKED: the stream was deleted while we waited.
            if not str(exc).startswith(("NOGROUP", "UNBLOCKED")):
                raise
            log.warning("events stream or consumer group gone (did Redis lose its data?): %s; "
                        "creating the group again", exc)
            for s in streams:
                await self._ensure_group(s)
            return []
        if blocking:
            self.health.ok()
        return list(_entries(reply))

    # -- gaps: entries trimmed before they were recorded -----------------------------------

    async def _check_gaps(self, streams: list[str]) -> bool:
        """Record the gaps of ``streams`` before reading on (a read moves the group past
        them); False if stopped while the store was down."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for stream in streams:
                pipe.xinfo_stream(stream)
                pipe.xinfo_groups(stream)
            replies = await pipe.execute(raise_on_error=False)
        for i, stream in enumerate(streams):
            info, groups = replies[2 * i], replies[2 * i + 1]
            if isinstance(info, Exception) or isinstance(groups, Exception):
                if is_transient(info) or is_transient(groups):
                    raise info if isinstance(info, Exception) else groups
                continue  # no stream or group yet: the read creates them
            group = next((g for g in groups if g["name"] == self.group), None)
            found = trimmed_unread(info, group) if group else None
            if found and not await self._record_gap(stream, *found):
                return False
        return True

    async def _record_gap(self, stream: str, after: str, end: str, lost: int | None) -> bool:
        """Log, count and store one gap (once); False if stopped while the store was down."""
        if (stream, after, end) in self._gaps_seen:
            return True
        queue = self._queues.get(stream, "")
        log.error("recorder: %s entries of queue %r (stream %s) after %s and before %s were "
                  "trimmed before they were recorded; the history of jobs with events there "
                  "may be incomplete, and `conveyor recover` will not re-enqueue them (see "
                  "--include-gaps). Raise CONVEYOR_EVENTS_MAXLEN or keep a recorder running.",
                  "some" if lost is None else lost, queue, stream, after, end)
        self.stats.gaps += 1
        gap = Gap(queue=queue, after_id=after, end_id=end, end_ms=_id(end)[0], lost=lost,
                  detected_ms=int(time.time() * 1000))
        if not await self._stored(lambda: self.store.record_gap(gap), "record a gap"):
            return False
        self._gaps_seen.add((stream, after, end))
        return True

    async def _lost_pending(self, stream: str, ids: list[str]) -> bool:
        """Entries read but trimmed before their batch was committed: a gap of their own."""
        if not ids:
            return True
        first, last = min(ids, key=_id), max(ids, key=_id)
        return await self._record_gap(stream, _before(first), last, len(ids))

    async def _commit(self, entries: list[Entry], claimed: bool) -> bool:
        """Apply then acknowledge ``entries``; False if stopped while the store was down."""
        for stream in {s for s, _, fields in entries if fields is None}:
            trimmed = [i for s, i, fields in entries if s == stream and fields is None]
            if not await self._lost_pending(stream, trimmed):
                return False
        events = self._parse(entries)
        if events and not await self._stored(lambda: self.store.apply(events),
                                             f"apply {len(events)} events"):
            return False
        await self._ack(entries)
        self.health.ok()
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

    async def _stored(self, write: Callable[[], Awaitable[None]], what: str) -> bool:
        """Run a store write until it succeeds (back-pressure: nothing more is read
        meanwhile); False if stopped first."""
        delay = 0.1
        while True:
            try:
                await write()
                return True
            except Exception:
                self.stats.store_errors += 1
                log.warning("history store failed to %s; retrying in %.1f s", what, delay,
                            exc_info=True)
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
                # Redis 7 lists the pending entries trimmed meanwhile (and forgets them).
                if len(reply) > 2 and not await self._lost_pending(stream, list(reply[2])):
                    return
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
            await self._logged(self._discover)
            now = time.monotonic()
            if now >= next_claim:
                await self._logged(self._claim_stale)
                next_claim = now + claim_every
            if now >= next_retention:
                await self._logged(self._retention)
                next_retention = now + self.retention_seconds

    async def _logged(self, step: Callable[[], Awaitable[Any]]) -> None:
        """Run one periodic step; a failure is logged (an outage once) and the next period
        tries again: housekeeping faults, of Redis or the store, must not stop the readers."""
        name = getattr(step, "__name__", "step").lstrip("_")
        try:
            await step()
        except Exception as exc:
            if is_transient(exc):
                self._outage(f"running {name}", exc)
            else:
                log.exception("recorder step %s failed", name)

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


def trimmed_unread(
    info: dict[str, Any], group: dict[str, Any]
) -> tuple[str, str, int | None] | None:
    """(the group's last read id, the id the gap ends before, how many entries were lost)
    when ``info`` (XINFO STREAM) and ``group`` (its XINFO GROUPS entry) show entries trimmed
    before the group read them; None otherwise.

    Entries ever added, minus those still in the stream, minus those the group read, were
    trimmed unread. Redis cannot always count what a group read (``entries-read`` is nil,
    e.g. after XDEL); then any trimming past the group's position is taken as a gap."""
    last = group["last-delivered-id"]
    first = info.get("first-entry")
    if first and _id(last) >= _id(first[0]):
        return None  # the group is inside what the stream still holds
    added, length, read = info.get("entries-added"), info["length"], group.get("entries-read")
    if added is None:
        return None  # Redis < 7 does not say
    lost = None if read is None else int(added) - int(length) - int(read)
    if (lost is not None and lost <= 0) or (lost is None and int(added) <= int(length)):
        return None
    end = first[0] if first else info["last-generated-id"]
    return last, end, lost


def _id(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _before(entry_id: str) -> str:
    """An id just before ``entry_id`` (gaps start after an id, exclusive)."""
    ms, seq = _id(entry_id)
    return f"{ms}-{seq - 1}" if seq else f"{max(ms - 1, 0)}-{2**64 - 1 if ms else 0}"


def _backoff(streak: int, cap: float) -> float:
    """Full jitter over an exponential bound, as ``supervise`` backs off."""
    return 0.05 + random.uniform(0, min(cap, 0.1 * 2 ** min(streak, 16)))




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
