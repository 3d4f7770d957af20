"""Typed wrappers over the Lua scripts: one method per script, keys built in one place.

``SCRIPT_KEYS`` is the only place that knows the order of each script's fixed KEYS; a test
checks it against the names each script binds (``local high, normal = KEYS[1], KEYS[2]``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from redis.asyncio import Redis
from redis.exceptions import NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError

from conveyor import serde
from conveyor.broker import scripts
from conveyor.broker.codes import REFUSED_KEY, REFUSED_PARENT, CancelOutcome, Code, FailOutcome
from conveyor.broker.keys import Keys, QueueKeys
from conveyor.connect import server_ms, strs
from conveyor.errors import IdempotencyConflict, NotDurable
from conveyor.job import ClaimedJob, NewJob

_PACK: Callable[[tuple[Any, ...]], bytes] | None
try:  # redis[hiredis] brings it; redis-py's own packer is the fallback
    from hiredis import pack_command as _PACK
except ImportError:  # pragma: no cover
    _PACK = None

if TYPE_CHECKING:
    from redis.asyncio.connection import AbstractConnection

    from conveyor.settings import Settings

log = logging.getLogger("conveyor.broker")

SCRIPT_KEYS: dict[str, tuple[str, ...]] = {
    "enqueue": ("high", "normal", "low", "delayed", "marker", "events"),
    "claim": ("high", "normal", "low", "delayed", "active", "marker", "events", "meta", "held",
              "quiet"),
    "complete": ("active", "events", "held", "high", "normal", "low", "marker", "dead"),
    "fail": ("jobkey", "active", "delayed", "dead", "events", "marker", "held",
             "high", "normal", "low"),
    "release": ("jobkey", "active", "high", "normal", "low", "marker", "events", "held"),
    "handback": ("jobkey", "active", "delayed", "marker", "events", "held"),
    "renew": ("active", "held"),
    "reap": ("active", "high", "normal", "low", "dead", "marker", "events", "held"),
    "cancel": ("jobkey", "high", "normal", "low", "delayed", "events", "marker", "dead"),
    "retry": ("jobkey", "dead", "high", "normal", "low", "marker", "events"),
    "delete": ("dead", "delayed", "high", "normal", "low", "events", "marker"),
    "check": ("events",),
    "undo": ("high", "normal", "low", "delayed", "events"),
    "pause": ("meta", "marker", "events"),
    "progress": ("jobkey", "events"),
    "limit": ("slots", "rate", "jobkey", "active", "delayed", "marker", "events", "held"),
    "heartbeat": ("workers", "info"),
    "lock": ("lock", "fence"),
    "ratelimit": ("bucket",),
}
CANCEL_CHANNEL = "cancel"
HELD_LEASES = 4  # a worker's held-jobs SET lives this many leases past its last claim/renew


def fixed_keys(
    script: str, qk: QueueKeys, *, worker_id: str = "", job_id: str = "", limit: str = ""
) -> list[str]:
    """The fixed KEYS of ``script`` for queue ``qk``, in the script's order."""
    by_name = {
        "high": qk.ready("high"), "normal": qk.ready("normal"), "low": qk.ready("low"),
        "delayed": qk.delayed, "active": qk.active, "dead": qk.dead, "marker": qk.marker,
        "events": qk.events, "meta": qk.meta, "held": qk.worker_jobs(worker_id),
        "jobkey": qk.job(job_id), "slots": qk.limit_slots(limit), "rate": qk.limit_rate(limit),
        "quiet": "",  # claim's optional last key, a global one (Broker.claim_command)
    }
    return [by_name[name] for name in SCRIPT_KEYS[script]]


def global_keys(script: str, keys: Keys, *, worker_id: str = "", name: str = "") -> list[str]:
    """The fixed KEYS of a script over global keys, in the script's order."""
    by_name = {"workers": keys.glob.workers, "info": keys.glob.worker(worker_id),
               "lock": keys.glob.lock(name), "fence": keys.glob.fence(name)}
    return [by_name[name] for name in SCRIPT_KEYS[script]]


def pack(conn: AbstractConnection, *commands: tuple[Any, ...]) -> bytes | list[bytes]:
    """Commands packed for one ``send_packed_command`` (hiredis's packer when present)."""
    if _PACK is not None:
        return b"".join(_PACK(c) for c in commands)
    return [part for c in commands for part in conn.pack_command(*c)]


class MissingParent(Exception):
    """A job's ``depends_on`` names a job the queue does not hold; nothing was written.
    ``index`` counts within the jobs of ``queue``."""

    def __init__(self, index: int, parent: str, queue: str = "") -> None:
        super().__init__(f"job {index}: parent {parent} not found")
        self.index = index
        self.parent = parent
        self.queue = queue


@dataclass(frozen=True, slots=True)
class Enqueued:
    id: str
    status: str
    created: bool


QUIET = -2  # a claim's wait_ms when the worker's quiet flag is set (claim_command's claim)


@dataclass(frozen=True, slots=True)
class ClaimResult:
    wait_ms: int  # until the next delayed job is due; -1 = none; QUIET
    jobs: list[ClaimedJob]


@dataclass(frozen=True, slots=True)
class Completion:
    job_id: str
    token: int
    result_json: str


class Broker:
    """Runs each state transition as one script call. Owns no state but the script objects."""

    def __init__(self, redis: Redis, keys: Keys, settings: Settings) -> None:
        self.redis = redis
        self.keys = keys
        self.settings = settings
        self.scripts = scripts.register_all(redis)
        self.traced = False  # set when OpenTelemetry wraps claim, complete and fail
        self.maxlen = settings.events_maxlen
        # Promotion of due delayed jobs in a claim: at most this many, and no chunk of 100
        # begun after this many microseconds (claim.lua), so a million jobs due at once
        # never hold Redis for more than a few milliseconds per call.
        self.promote_limit = 1000
        self.promote_budget_us = 2000
        # The single-submit path: per queue, the enqueue script's KEYS and constant ARGV.
        self._one_prefix: dict[str, tuple[Any, ...]] = {}
        self._lane: AbstractConnection | None = None
        self._lane_busy = False
        self._lane_timeout: float | None = None
        self._lane_ok = (isinstance(redis, Redis) and not redis.single_connection_client
                         and not settings.durable_replicas and not settings.durable_aof)

    def qk(self, queue: str) -> QueueKeys:
        return self.keys.queue(queue)

    async def _run(
        self, name: str, keys: list[str], args: Sequence[Any], client: Any = None
    ) -> Any:
        return await self.scripts[name](keys=keys, args=list(args), client=client)

    async def enqueue(self, queue: str, jobs: Sequence[NewJob]) -> list[Enqueued]:
        """Submit jobs of one queue atomically (all or none)."""
        qk = self.qk(queue)
        batch = _batch(jobs)
        args = [self.maxlen, int(self.settings.unique_ttl_seconds * 1000), queue,
                qk.job_prefix, qk.no_unique, batch, self.policy]
        if self.settings.durable_replicas or self.settings.durable_aof:
            raw = await self._enqueue_durably(fixed_keys("enqueue", qk), args)
        else:
            raw = await self._run("enqueue", fixed_keys("enqueue", qk), args)
        _raise_refusal(queue, jobs, raw)
        out = []
        for i in range(0, len(raw), 3):
            if int(raw[i + 2]) == 1:
                out.append(Enqueued(raw[i], raw[i + 1], True))
            else:
                # A live key's job: the reply is its stored "<id> <fingerprint>".
                out.append(Enqueued(str(raw[i + 1]).partition(" ")[0], "", False))
        return out

    async def enqueue_one(self, job: NewJob) -> Enqueued:
        """Submit one job: the enqueue script in its flat one-job form (no JSON batch), the
        same writes as ``enqueue(queue, [job])``. The call goes over a connection this broker
        holds when it is free (see ``_evalsha_lane``), else through the client."""
        prefix = self._one_prefix.get(job.queue) or self._prefix_one(job.queue)
        argv = (*prefix, job.id, job.type, job.args_json, job.priority, job.delay_ms,
                job.run_at_ms, job.max_attempts, job.timeout, job.fingerprint,
                job.idempotency_key or "", job.meta_json, job.on_parent_failure,
                *job.depends_on)
        if self._lane_ok and not self._lane_busy:
            raw = await self._evalsha_lane(argv)
        elif self.settings.durable_replicas or self.settings.durable_aof:
            raw = await self._enqueue_durably(list(argv[:6]), list(argv[6:]))
        else:
            raw = await self._run("enqueue", list(argv[:6]), argv[6:])
        _raise_refusal(job.queue, (job,), raw)
        if int(raw[2]) == 1:
            return Enqueued(raw[0], raw[1], True)
        return Enqueued(str(raw[1]).partition(" ")[0], "", False)

    def _prefix_one(self, queue: str) -> tuple[Any, ...]:
        """KEYS and the constant ARGV of a one-job enqueue in ``queue`` (ARGV[6] = '' says
        the job follows flat; see enqueue.lua)."""
        qk = self.qk(queue)
        prefix = (*fixed_keys("enqueue", qk), self.maxlen,
                  int(self.settings.unique_ttl_seconds * 1000), queue, qk.job_prefix,
                  qk.no_unique, "", self.policy)
        self._one_prefix[queue] = prefix
        return prefix

    async def _evalsha_lane(self, argv: tuple[Any, ...]) -> Any:
        """EVALSHA of the enqueue script (6 KEYS, then ``argv``) on a connection this broker
        keeps for single submits: what ``Redis.execute_command`` does for a script call -
        the client's retry policy (a connection error disconnects and retries with backoff),
        NOSCRIPT reloads, the pool's health checks and Sentinel's failover handling (they
        live on the connection) - without its per-command cost: the command is packed in
        one call, and the socket timeout is one ``asyncio.timeout`` around the whole call
        instead of a task per write (``asyncio.wait_for``) plus a timer per read. Only one
        call uses the connection at a time; concurrent ones take the pooled path."""
        self._lane_busy = True
        try:
            conn = self._lane
            if conn is None:
                conn = await self.redis.connection_pool.get_connection()  # type: ignore[no-untyped-call]
                # Kept out of the pool for good (the client's close disconnects it with the
                # pool's other connections); the call below bounds the wait instead.
                self._lane_timeout = conn.socket_timeout
                conn.socket_timeout = None
                self._lane = conn
            script = self.scripts["enqueue"]
            try:
                return await self._lane_call(conn, ("EVALSHA", script.sha, 6, *argv))
            except NoScriptError:  # a restarted or failed-over server without the script
                script.sha = await self.redis.script_load(script.script)
                return await self._lane_call(conn, ("EVALSHA", script.sha, 6, *argv))
        finally:
            self._lane_busy = False

    async def _lane_call(self, conn: AbstractConnection, command: tuple[Any, ...]) -> Any:
        packed = pack(conn, command)
        limit = self._lane_timeout

        async def once() -> Any:
            if not conn.is_connected:
                # As the pool connects a connection it hands out: connect() is what asks
                # Sentinel for the current primary (send_packed_command would reconnect to
                # the address it had, the old primary after a fail-over).
                await conn.connect()  # type: ignore[no-untyped-call]
            try:
                async with asyncio.timeout(limit):
                    await conn.send_packed_command(packed)
                    return await conn.read_response()
            except TimeoutError:
                # The cancelled read disconnected the connection (a late reply can never be
                # taken for the next command's); raised as redis-py raises its timeout.
                await conn.disconnect(nowait=True)
                raise RedisTimeoutError("Timeout on the single-submit connection") from None

        async def failed(error: Exception) -> None:
            await conn.disconnect()

        return await conn.retry.call_with_retry(once, failed)

    async def check(self, queue: str, jobs: Sequence[NewJob]) -> None:
        """Raise what ``enqueue`` would refuse for these jobs, as things stand; writes nothing."""
        qk = self.qk(queue)
        raw = await self._run("check", fixed_keys("check", qk),
                              [qk.job_prefix, qk.no_unique, _batch(jobs)])
        _raise_refusal(queue, jobs, raw)

    async def undo(
        self, queue: str, job_ids: Sequence[str],
        parents: Mapping[str, Sequence[str]] | None = None,
    ) -> list[int]:
        """Take back jobs just submitted, each only while untouched (see undo.lua); returns a
        code per job, in the order given."""
        qk = self.qk(queue)
        order = list(reversed(job_ids))  # children (submitted later) before their parents
        jobs = orjson.dumps([[j, list((parents or {}).get(j, ()))] for j in order])
        codes = await self._run("undo", fixed_keys("undo", qk), [self.maxlen, qk.job_prefix, jobs])
        return [int(c) for c in reversed(codes)]

    async def enqueue_many(
        self, batches: Mapping[str, Sequence[NewJob]], *, precheck: bool = True
    ) -> dict[str, list[Enqueued]]:
        """Submit jobs of several queues, all or nothing. One queue is one atomic script.
        Over several queues (several Cluster slots, no common transaction), every queue is
        first checked read-only, then written queue by queue; if a queue still refuses (a
        concurrent producer took a key, or a parent went, in between), the jobs this call
        created in the earlier queues are taken back, each only while no worker touched it.
        """
        if precheck and len(batches) > 1:
            for queue, jobs in batches.items():
                await self.check(queue, jobs)
        done: dict[str, list[Enqueued]] = {}
        for queue, jobs in batches.items():
            try:
                done[queue] = await self.enqueue(queue, jobs)
            except (MissingParent, IdempotencyConflict):
                await self._take_back(batches, done)
                raise
        return done

    async def _take_back(
        self, batches: Mapping[str, Sequence[NewJob]], done: Mapping[str, list[Enqueued]]
    ) -> None:
        for queue, answers in done.items():
            parents = {job.id: job.depends_on for job in batches[queue]}
            created = [a.id for a in answers if a.created and a.id in parents]
            codes = await self.undo(queue, created, parents)
            kept = [j for j, code in zip(created, codes, strict=True) if code != 1]
            if kept:
                log.warning("a multi-queue batch was refused, but %d of its jobs in queue %s "
                            "had already moved on and stay: %s", len(kept), queue, kept)

    @property
    def policy(self) -> str:
        """The retention policy every terminal transition applies (includes/retire.lua):
        "<result_ttl ms> <dead_ttl ms> <release unique key 0|1>"."""
        s = self.settings
        return (f"{max(1, int(s.result_ttl_seconds * 1000))} "
                f"{max(1, int(s.dlq_retention_days * 86_400_000))} "
                f"{int(s.release_unique_on_finish)}")

    @property
    def held_ttl_ms(self) -> int:
        return int(HELD_LEASES * self.settings.lease_seconds * 1000)

    async def _enqueue_durably(self, keys: list[str], args: list[Any]) -> Any:
        """The enqueue script, then WAIT / WAITAOF on the same connection (a pipeline), so
        the answer comes only once replicas / the AOF hold the jobs."""
        replicas, timeout = self.settings.durable_replicas, self.settings.durable_timeout_ms
        async with self.redis.pipeline(transaction=False) as pipe:
            await self.scripts["enqueue"](keys=keys, args=args, client=pipe)
            if replicas:
                pipe.execute_command("WAIT", replicas, timeout)
            if self.settings.durable_aof:
                pipe.execute_command("WAITAOF", 1, replicas, timeout)
            replies = await pipe.execute(raise_on_error=False)
        for reply in replies:
            if isinstance(reply, Exception):
                raise NotDurable(f"the server refused: {reply} (WAITAOF needs Valkey 8 or "
                                 "Redis 7.2+ with appendonly yes)") from reply
        acked = replies[1:]
        if replicas and int(acked[0]) < replicas:
            raise NotDurable(f"{acked[0]} of {replicas} replicas confirmed within {timeout} ms")
        if self.settings.durable_aof:
            local, remote = acked[-1]
            if int(local) < 1 or int(remote) < replicas:
                raise NotDurable(f"the AOF fsync was confirmed locally {local}, "
                                 f"by {remote} of {replicas} replicas, within {timeout} ms")
        return replies[0]

    async def claim(
        self, queue: str, worker_id: str, count: int, client: Any = None
    ) -> ClaimResult:
        qk = self.qk(queue)
        raw = await self._run(
            "claim", fixed_keys("claim", qk, worker_id=worker_id)[:-1],
            self._claim_args(qk, worker_id, count), client)
        return self.claimed(queue, raw)

    def _claim_args(self, qk: QueueKeys, worker_id: str, count: int) -> list[Any]:
        return [count, int(self.settings.lease_seconds * 1000), worker_id, self.maxlen,
                qk.job_prefix, self.promote_limit, self.held_ttl_ms, self.promote_budget_us]

    def claim_command(self, queue: str, worker_id: str, count: int) -> tuple[Any, ...]:
        """The claim as one EVALSHA command, to send after a blocking wait on the same
        connection (``Fetcher``: the wake-up and the claim in one round trip). It names the
        worker's quiet flag too (a global key: never on Cluster): a quiet worker's claim
        leases nothing and answers wait_ms -2 (``QUIET``)."""
        qk = self.qk(queue)
        keys = [*fixed_keys("claim", qk, worker_id=worker_id)[:-1],
                self.keys.glob.worker_quiet(worker_id)]
        return ("EVALSHA", self.scripts["claim"].sha, len(keys), *keys,
                *self._claim_args(qk, worker_id, count))

    async def reload_claim(self) -> None:
        """Load the claim script again (a restarted server answered NOSCRIPT)."""
        script = self.scripts["claim"]
        script.sha = await self.redis.script_load(script.script)

    @staticmethod
    def claimed(queue: str, raw: Any) -> ClaimResult:
        """The claim script's reply as jobs."""
        jobs = [
            ClaimedJob(
                id=f[0], queue=queue, attempt=int(f[1]), type=f[2], args_json=f[3],
                max_attempts=int(f[4]), timeout=float(f[5]), priority=f[6],
                created_ms=int(f[7]), failures=int(f[8]), due_ms=int(f[9]),
                meta_json=f[10], unique_key=f[11] or None,
            )
            for f in orjson.loads(raw[1])
        ]
        return ClaimResult(int(raw[0]), jobs)

    async def complete(
        self, queue: str, worker_id: str, items: Sequence[Completion], client: Any = None
    ) -> list[int]:
        """Complete jobs of one queue in one call; returns 1 or a ``Code`` per job."""
        qk = self.qk(queue)
        done = "[" + ",".join(
            f"[{orjson.dumps(c.job_id).decode()},{c.token},{orjson.dumps(c.result_json).decode()}]"
            for c in items) + "]"
        args = [self.maxlen, self.policy, qk.job_prefix, done]
        keys = fixed_keys("complete", qk, worker_id=worker_id)
        return [int(x) for x in await self._run("complete", keys, args, client)]

    async def fail(
        self, job: ClaimedJob, worker_id: str, error: dict[str, Any], delay_ms: int
    ) -> tuple[FailOutcome | Code, int]:
        """Record a failed attempt; ``delay_ms`` < 0 means no retry (see ``codes``)."""
        qk = self.qk(job.queue)
        code, due = await self._run(
            "fail",
            fixed_keys("fail", qk, worker_id=worker_id, job_id=job.id),
            [job.id, job.attempt, serde.dumps(error), delay_ms, self.maxlen, self.policy,
             qk.job_prefix],
        )
        return _outcome(int(code), FailOutcome), int(due)

    async def release(self, job: ClaimedJob, worker_id: str, reason: str) -> int:
        qk = self.qk(job.queue)
        return int(await self._run(
            "release",
            fixed_keys("release", qk, worker_id=worker_id, job_id=job.id),
            [job.id, job.attempt, self.maxlen, reason, qk.job_prefix],
        ))

    async def handback(
        self, job: ClaimedJob, worker_id: str, first_ms: int, cap_ms: int, jitter: float
    ) -> tuple[int, int]:
        """Give back a job this worker has no handler for, unrun and uncounted, delayed by a
        hold-off that doubles with each hand-back (see handback.lua): (1 | code, due ms).
        Once due, the job is left to other workers for longer than an idle one blocks."""
        keys = fixed_keys("handback", self.qk(job.queue), worker_id=worker_id, job_id=job.id)
        avoid_ms = int(self.settings.block_seconds * 1000) + 500
        code, due = await self._run("handback", keys, [
            job.id, job.attempt, first_ms, cap_ms, jitter, self.maxlen, worker_id, avoid_ms])
        return int(code), int(due)

    async def limit(
        self, job: ClaimedJob, worker_id: str, limit: str, cap: int, interval_ms: int, burst: int
    ) -> tuple[int, int]:
        """Ask the execution limit ``limit`` to let ``job`` run: (1 granted | 2 parked |
        3 delayed | -1 stale, due ms)."""
        keys = fixed_keys("limit", self.qk(job.queue), worker_id=worker_id, job_id=job.id,
                          limit=limit)
        code, due = await self._run("limit", keys, [
            job.id, job.attempt, cap, int(self.settings.lease_seconds * 1000), interval_ms,
            burst, self.maxlen])
        return int(code), int(due)

    async def renew(
        self, queue: str, leases: Sequence[tuple[str, int]], worker_id: str = ""
    ) -> tuple[list[str], list[str]]:
        """Extend leases; returns (ids whose lease is lost, ids whose cancel was requested).
        With ``worker_id`` it also refreshes the TTL of that worker's held-jobs SET."""
        qk = self.qk(queue)
        keys = (fixed_keys("renew", qk, worker_id=worker_id)
                + [qk.job(job_id) for job_id, _ in leases])
        args: list[Any] = [int(self.settings.lease_seconds * 1000), self.held_ttl_ms]
        for job_id, token in leases:
            args += [job_id, token]
        raw = await self._run("renew", keys, args)
        split = raw.index("|")
        return list(raw[:split]), list(raw[split + 1:])

    async def reap(self, queue: str, dead_worker: str = "") -> tuple[int, int]:
        """Requeue expired leases (and a dead worker's jobs); returns (requeued, dead)."""
        qk = self.qk(queue)
        raw = await self._run(
            "reap",
            fixed_keys("reap", qk, worker_id=dead_worker),
            [qk.job_prefix, self.maxlen, self.settings.poison_threshold, dead_worker, 1000,
             self.policy],
        )
        return int(raw[0]), int(raw[1])

    async def cancel(self, queue: str, job_id: str) -> tuple[int, str]:
        qk = self.qk(queue)
        code, status = await self._run(
            "cancel",
            fixed_keys("cancel", qk, job_id=job_id),
            [job_id, self.maxlen, self.policy, self.cancel_channel, qk.job_prefix],
        )
        return _outcome(int(code), CancelOutcome), str(status)

    @property
    def cancel_channel(self) -> str:
        return f"{self.keys.glob.tag}:{CANCEL_CHANNEL}"

    async def retry(self, queue: str, job_id: str) -> tuple[int, str]:
        qk = self.qk(queue)
        code, status = await self._run(
            "retry", fixed_keys("retry", qk, job_id=job_id), [job_id, self.maxlen]
        )
        return int(code), str(status)

    async def retry_many(self, queue: str, job_ids: Sequence[str]) -> list[int]:
        """``retry`` of each job, pipelined in one round trip (not atomic across jobs: each
        job's retry is); returns each job's code."""
        qk = self.qk(queue)
        async with self.redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                await self._run("retry", fixed_keys("retry", qk, job_id=job_id),
                                [job_id, self.maxlen], client=pipe)
            replies = await pipe.execute()
        return [int(reply[0]) for reply in replies]

    async def delete(self, queue: str, job_ids: Sequence[str]) -> list[int]:
        qk = self.qk(queue)
        keys = fixed_keys("delete", qk) + [qk.job(j) for j in job_ids]
        args = [self.maxlen, self.policy, qk.job_prefix, *job_ids]
        return [int(x) for x in await self._run("delete", keys, args)]

    async def pause(self, queue: str, paused: bool) -> None:
        await self._run("pause", fixed_keys("pause", self.qk(queue)), [int(paused), self.maxlen])

    async def progress(
        self, queue: str, job_id: str, token: int, fraction: float, message: str
    ) -> int:
        keys = fixed_keys("progress", self.qk(queue), job_id=job_id)
        return int(await self._run("progress", keys, [job_id, token, fraction, message,
                                                       self.maxlen]))

    async def heartbeat(self, worker_id: str, info: dict[str, Any], ttl_ms: int) -> int:
        """Mark the worker alive (Redis time) and store its info; returns the server time."""
        args: list[Any] = [worker_id, ttl_ms]
        for name, value in info.items():
            args += [name, value]
        keys = global_keys("heartbeat", self.keys, worker_id=worker_id)
        return int(await self._run("heartbeat", keys, args))

    async def lock(self, op: str, name: str, owner: str, ttl_ms: int) -> int:
        """Acquire, renew or release the lock ``name`` (see lock.lua for the answers)."""
        keys = global_keys("lock", self.keys, name=name)
        return int(await self._run("lock", keys, [op, owner, ttl_ms, self.lock_channel(name)]))

    def lock_channel(self, name: str) -> str:
        return f"{self.keys.glob.lock(name)}:released"

    async def dead_workers(self, ttl_ms: int) -> list[str]:
        """Workers whose last heartbeat is older than ``ttl_ms`` (by Redis time)."""
        now = server_ms(await self.redis.time())
        return strs(await self.redis.zrangebyscore(self.keys.glob.workers, "-inf", now - ttl_ms))


def _batch(jobs: Sequence[NewJob]) -> bytes:
    """The jobs as the one JSON argument enqueue.lua and check.lua take."""
    return orjson.dumps([
        [job.id, job.type, job.args_json, job.priority, job.delay_ms, job.run_at_ms,
         job.max_attempts, job.timeout, job.fingerprint, job.idempotency_key or "",
         job.meta_json, job.depends_on, job.on_parent_failure]
        for job in jobs
    ])


def _raise_refusal(queue: str, jobs: Sequence[NewJob], raw: Any) -> None:
    """Raise the refusal enqueue.lua / check.lua answered with, if any."""
    if raw and raw[0] == REFUSED_PARENT:
        raise MissingParent(int(raw[1]) - 1, str(raw[2]), queue)
    if raw and raw[0] == REFUSED_KEY:
        job = jobs[int(raw[1]) - 1]
        raise IdempotencyConflict(job.idempotency_key or "", str(raw[2]).partition(" ")[0])


def _outcome(code: int, enum: type[FailOutcome] | type[CancelOutcome]) -> Any:
    return Code(code) if code < 0 else enum(code)
