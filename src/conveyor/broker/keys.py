"""Every Redis key name Conveyor uses, and nothing else builds key strings.

Layout (``cv`` is the prefix, ``q`` a queue name)::

    {cv:q}:high | :normal | :low   LIST   ready job ids; LPUSH on submit, RPOP on claim (FIFO)
    {cv:q}:delayed                 ZSET   job id -> due time (ms)
    {cv:q}:active                  ZSET   job id -> lease deadline (ms)
    {cv:q}:dead                    ZSET   job id -> time of death (ms), the dead-letter queue;
                                          trimmed to CONVEYOR_DLQ_RETENTION_DAYS on every write
    {cv:q}:job:<id>                HASH   the job (see broker/lua/enqueue.lua for the fields);
                                          terminal jobs expire (lua/includes/retire.lua)
    {cv:q}:events                  STREAM every transition of every job of the queue
    {cv:q}:marker                  ZSET   wake-up marker idle workers block on (BZPOPMIN)
    {cv:q}:meta                    HASH   queue settings (``paused``)
    {cv:q}:unique:<key>            STRING idempotency key -> job id, with a TTL
    {cv:q}:wjobs:<worker>          SET    ids a worker holds leases on (for the reaper); TTL a
                                          few leases, refreshed by claim and renew
    {cv:q}:job:<id>:children       SET    ids of jobs waiting for this one (depends_on)
    {cv:q}:limit:<name>            ZSET   execution limit: holders of its concurrency slots
    {cv:q}:limit:<name>:waiting    LIST   jobs parked until one of those slots frees
    {cv:q}:rate:<name>             STRING execution limit: GCRA state of its rate

Global keys share the tag ``{cv}`` so the few scripts that touch several of them stay on one
Cluster slot::

    {cv}:queues                    SET    every queue ever used
    {cv}:workers                   ZSET   worker id -> last heartbeat (ms, Redis time)
    {cv}:worker:<id>               HASH   worker info (host, pid, queues, counts, current jobs,
                                          the health of its loops)
    {cv}:worker:<id>:quiet         STRING set: the worker claims nothing new (operators' "quiet")
    {cv}:schedulers                ZSET   scheduler owner -> last status (ms)
    {cv}:scheduler:<owner>         HASH   a scheduler's status and loop health (short TTL)
    {cv}:catalog                   HASH   job type -> JSON (queue, schema, defaults)

The per-queue hash tag puts every key of a queue in one slot, so each script runs unchanged on
Redis Cluster. Scripts touch the keys passed in KEYS, plus keys derived from the queue's key
prefix passed in ARGV (``{cv:q}:job:`` + an id they learn while running, a job's children,
the limit named in a job's 'limit' field). Those share the queue's hash tag, so they are in
the same slot by construction, which is all Cluster requires; enqueue and complete take
their jobs this way to keep thousands of arguments off the client.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

from conveyor.errors import InvalidName

NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
PRIORITIES = ("high", "normal", "low")


def check_name(kind: str, value: object) -> str:
    """Return ``value`` if it is a valid queue/tenant/key name, else raise ``InvalidName``."""
    if not isinstance(value, str) or not NAME_RE.fullmatch(value) or value in (".", ".."):
        raise InvalidName(
            kind,
            f"{kind} {value!r} is not a valid name: use 1 to 64 characters from "
            "A-Z a-z 0-9 _ . -, not '.' or '..' (braces would move the key to another Cluster "
            "slot; dots alone name paths)",
        )
    return value


@dataclass(frozen=True)
class QueueKeys:
    """Key names of one queue."""

    prefix: str
    queue: str

    @property
    def tag(self) -> str:
        return f"{{{self.prefix}:{self.queue}}}"

    def ready(self, priority: str) -> str:
        return f"{self.tag}:{priority}"

    @property
    def ready_all(self) -> tuple[str, str, str]:
        return (self.ready("high"), self.ready("normal"), self.ready("low"))

    @property
    def delayed(self) -> str:
        return f"{self.tag}:delayed"

    @property
    def active(self) -> str:
        return f"{self.tag}:active"

    @property
    def dead(self) -> str:
        return f"{self.tag}:dead"

    @property
    def events(self) -> str:
        return f"{self.tag}:events"

    @property
    def marker(self) -> str:
        return f"{self.tag}:marker"

    @property
    def meta(self) -> str:
        return f"{self.tag}:meta"

    @property
    def job_prefix(self) -> str:
        return f"{self.tag}:job:"

    def job(self, job_id: str) -> str:
        return f"{self.tag}:job:{job_id}"

    def unique(self, key: str) -> str:
        return f"{self.tag}:unique:{key}"

    @property
    def no_unique(self) -> str:
        """Placeholder passed where a script takes a unique key but the job has none."""
        return f"{self.tag}:unique:"

    def limit_slots(self, name: str) -> str:
        """Concurrency slots of an execution limit (its waiting LIST appends ':waiting')."""
        return f"{self.tag}:limit:{name}"

    def limit_rate(self, name: str) -> str:
        return f"{self.tag}:rate:{name}"

    def worker_jobs(self, worker_id: str) -> str:
        return f"{self.tag}:wjobs:{worker_id}"


@dataclass(frozen=True)
class GlobalKeys:
    """Key names that belong to no queue."""

    prefix: str

    @property
    def tag(self) -> str:
        return f"{{{self.prefix}}}"

    @property
    def queues(self) -> str:
        return f"{self.tag}:queues"

    @property
    def workers(self) -> str:
        return f"{self.tag}:workers"

    def worker(self, worker_id: str) -> str:
        return f"{self.tag}:worker:{worker_id}"

    def worker_quiet(self, worker_id: str) -> str:
        """Present while the worker is asked to claim no new job (it finishes its own)."""
        return f"{self.tag}:worker:{worker_id}:quiet"

    def scheduler(self, owner: str) -> str:
        """A scheduler's status (its loops' health), with a short TTL."""
        return f"{self.tag}:scheduler:{owner}"

    @property
    def schedulers(self) -> str:
        """ZSET of scheduler owners -> when they last published their status (ms)."""
        return f"{self.tag}:schedulers"

    @property
    def catalog(self) -> str:
        return f"{self.tag}:catalog"

    def ratelimit(self, name: str) -> str:
        return f"{self.tag}:rl:{name}"

    def lock(self, name: str) -> str:
        return f"{self.tag}:lock:{name}"

    def fence(self, name: str) -> str:
        return f"{self.tag}:fence:{name}"

    @property
    def api_keys(self) -> str:
        return f"{self.tag}:apikeys"

    @property
    def schedules(self) -> str:
        return f"{self.tag}:schedules"

    @property
    def leader(self) -> str:
        return f"{self.tag}:leader"


class Keys:
    """Entry point: ``Keys("cv").queue("emails").ready("high")``."""

    def __init__(self, prefix: str) -> None:
        self.prefix = check_name("prefix", prefix)
        self.glob = GlobalKeys(prefix)

    @cache  # noqa: B019 - a handful of queues per process; Keys lives as long as the app
    def queue(self, name: str) -> QueueKeys:
        return QueueKeys(self.prefix, check_name("queue", name))
