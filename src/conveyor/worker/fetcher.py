"""The fetcher: one per queue, claims jobs when slots are free and waits on the marker."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError, RedisError, ResponseError

from conveyor.broker.broker import QUIET, ClaimResult, pack
from conveyor.connect import make_redis

if TYPE_CHECKING:
    from redis.asyncio.connection import AbstractConnection

    from conveyor.app import Conveyor
    from conveyor.supervise import LoopHealth
    from conveyor.worker.runner import JobRunner
    from conveyor.worker.slots import Slots

log = logging.getLogger("conveyor.worker")


class Fetcher:
    """Responsibilities: take free slots, claim up to that many jobs in one script call,
    give back what the claim did not fill, start the jobs, and otherwise block on the
    queue's marker (BZPOPMIN) until a job is submitted or the next delayed one is due.
    While the worker's quiet flag is set (``keys.worker_quiet``) it claims nothing and looks
    again every ``block_seconds``: the running jobs finish, no new one starts. The flag is
    read at most once per ``heartbeat_seconds`` while the worker claims: read before every
    claim, it cost a round trip per claim, and a draining worker claims a few jobs at a time
    (the drain benchmark lost a quarter of its rate to it). So a worker goes quiet within a
    heartbeat period of the request, as its status shows within one.

    The blocking connection's socket timeout is just past the longest block, so a
    connection that stops answering (the wedge after a fail-over) raises; the supervisor
    backs off and runs ``loop`` again, which opens a fresh connection.

    **Wake-up and claim in one round trip** (``wake_claims``): when the worker serves this
    one queue over a plain or Sentinel-managed Redis, the fetcher keeps its free slots while
    it waits and sends the claim right behind the BZPOPMIN on the blocking connection. Redis
    runs the two in order, so the claim runs the moment the marker wakes the wait, and the
    job's lease comes back in the same reply stream (one network trip after the submit, not
    three). While it waits that way ``waking`` is set: a claim may run at any moment, so a
    stopping worker unblocks the wait (``unblock``: CLIENT UNBLOCK) and starts what the claim
    leased, instead of cancelling the read. With several queues each fetcher would hold
    slots the others need, and a Cluster client has no connection of its own to pipeline on:
    those wait and then claim, as before."""

    def __init__(self, app: Conveyor, queue: str, worker_id: str, slots: Slots,
                 runner: JobRunner, stop: asyncio.Event, *, wake_claims: bool = False) -> None:
        self.app = app
        self.settings = app.settings
        self.queue = queue
        self.worker_id = worker_id
        self.slots = slots
        self.runner = runner
        self.stop = stop
        self.claiming = False
        self.marker = app.keys.queue(queue).marker
        self.quiet = app.keys.glob.worker_quiet(worker_id)
        self._quiet = False  # the flag as last read
        self._quiet_read_at = -float("inf")  # monotonic time of that read
        self.wake_claims = wake_claims
        self.waking = False  # blocked with a claim queued behind the wait (see above)
        self._conn: AbstractConnection | None = None  # the blocking connection, held
        self._client_id: int | None = None  # its CLIENT ID on the server, for unblock

    def _blocking_client(self) -> Redis:
        return make_redis(self.settings.redis_url, blocking_timeout=self.settings.block_seconds,
                          retry_on_error=[])

    async def loop(self, health: LoopHealth) -> None:
        blocker = self._blocking_client()
        # Under OpenTelemetry's script tracing every claim goes through Broker.claim, so
        # that each has its own timed span.
        pipelined = (self.wake_claims and isinstance(blocker, Redis)
                     and not self.app.broker.traced)
        try:
            if pipelined:
                self._conn = await blocker.connection_pool.get_connection()  # type: ignore[no-untyped-call]
            while not self.stop.is_set():
                await self._step(blocker, health)
        finally:
            if self._conn is not None:
                conn, self._conn, self._client_id = self._conn, None, None
                await blocker.connection_pool.release(conn)
            await blocker.aclose()

    async def _quiet_now(self) -> bool:
        now = time.monotonic()
        if self._quiet or now - self._quiet_read_at >= self.settings.heartbeat_seconds:
            self._quiet = bool(await self.app.redis.exists(self.quiet))
            self._quiet_read_at = now
        return self._quiet

    async def _step(self, blocker: Redis, health: LoopHealth) -> None:
        # Before any slot is taken: a Redis error here must not leak slots (it did, and
        # after an outage a worker with every slot leaked claimed nothing ever again).
        if await self._quiet_now():  # an operator asked: claim nothing new
            health.ok()
            async with health.idle():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), self.settings.block_seconds)
            return
        async with health.idle():
            want = await self.slots.take(self.settings.claim_batch)
        # Marked: shutdown never cancels a claim between Redis leasing the jobs and this
        # worker starting them (they would sit leased until the lease ran out).
        self.claiming = True
        try:
            result = await self.app.broker.claim(self.queue, self.worker_id, want)
        except BaseException:
            self.slots.give(want)
            raise
        finally:
            self.claiming = False
        if not result.jobs and not self.stop.is_set() and self._conn is not None:
            wait = self._wait_for(result)
            if wait > 0:
                self.waking = True
                try:
                    async with health.idle():
                        result = await self._wait_then_claim(self._conn, wait, want)
                except BaseException:
                    self.slots.give(want)
                    raise
                finally:
                    self.waking = False
                self._start(want, result)
                health.ok()
                await self._let_them_start(result)
                return
        self._start(want, result)
        health.ok()
        if result.jobs or self.stop.is_set():
            await self._let_them_start(result)
            return
        wait = self._wait_for(result)
        if wait > 0:
            async with health.idle():
                await blocker.bzpopmin(self.marker, timeout=max(wait, 0.001))

    def _wait_for(self, result: ClaimResult) -> float:
        """Seconds to wait on the marker: the block, or less when a delayed job is due."""
        wait = self.settings.block_seconds
        if result.wait_ms >= 0:
            wait = min(wait, result.wait_ms / 1000)
        return wait

    def _start(self, want: int, result: ClaimResult) -> None:
        self.slots.give(want - len(result.jobs))
        for job in result.jobs:
            self.runner.start(job)

    @staticmethod
    async def _let_them_start(result: ClaimResult) -> None:
        """Give the event loop to the jobs just started before packing and sending the next
        claim: a picked-up job's handler starts ~0.1-0.2 ms sooner."""
        if result.jobs:
            await asyncio.sleep(0)

    async def _wait_then_claim(
        self, conn: AbstractConnection, wait: float, want: int
    ) -> ClaimResult:
        """BZPOPMIN on the marker and the claim behind it, sent together; both replies are
        read before anything is raised, so the connection stays in step. A connection error
        disconnects it (a claim that ran unread leaves its jobs leased to this worker: they
        run again once the lease runs out, as after any lost reply)."""
        broker = self.app.broker
        claim = broker.claim_command(self.queue, self.worker_id, want)
        try:
            await self._connect(conn)
            if self.stop.is_set():  # stopped while connecting: wait for nothing
                return ClaimResult(-1, [])
            await conn.send_packed_command(
                pack(conn, ("BZPOPMIN", self.marker, max(wait, 0.001)), claim))
            replies: list[Any] = []
            for _ in range(2):
                try:
                    replies.append(await conn.read_response())
                except ResponseError as error:  # a whole reply: the stream is still in step
                    replies.append(error)
        except BaseException:
            self._client_id = None
            await conn.disconnect(nowait=True)
            raise
        woken, claimed = replies
        if isinstance(claimed, NoScriptError):  # a restarted server: load it, claim next step
            await broker.reload_claim()
            return ClaimResult(-1, [])
        if isinstance(claimed, ResponseError):
            raise claimed
        result = broker.claimed(self.queue, claimed)
        if isinstance(woken, ResponseError):
            if not result.jobs:
                raise woken  # the supervisor backs off, as after a failed BZPOPMIN
            # What the claim leased is started all the same (raising would leave its jobs
            # leased and unstarted until their lease ran out).
            log.warning("fetcher %s: the wait on the marker answered %s", self.queue, woken)
        if result.wait_ms == QUIET:  # quieted while it waited: the next step waits quietly
            self._quiet, self._quiet_read_at = True, time.monotonic()
        return result

    async def _connect(self, conn: AbstractConnection) -> None:
        """(Re)connect the held connection as the pool would (through Sentinel, to the
        current primary) and learn its CLIENT ID, once per connection."""
        if not conn.is_connected:
            self._client_id = None
            await conn.connect()  # type: ignore[no-untyped-call]
        if self._client_id is None:
            # Named, so CLIENT LIST tells an operator (and the tests) which connection it is;
            # a user not granted CLIENT SETNAME is refused the name, and that is all.
            await conn.send_packed_command(pack(
                conn, ("CLIENT", "SETNAME", f"conveyor-fetch:{self.queue}"), ("CLIENT", "ID")))
            with contextlib.suppress(ResponseError):
                await conn.read_response()
            self._client_id = int(await conn.read_response())

    async def unblock(self) -> None:
        """End a ``waking`` wait now (a stopping worker): the claim behind it runs, and what
        it leases is started. Best effort: a wait not ended here ends within its block."""
        if self.waking and self._client_id is not None:
            with contextlib.suppress(RedisError, OSError):
                await self.app.redis.client_unblock(self._client_id)
