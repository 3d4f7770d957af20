"""Prometheus metrics of one API process (``GET /metrics``, text format 0.0.4).

Job metrics come from the events streams through the hub, so an API process sees every
job of every worker: counters and histograms (outcomes, and deferrals by an execution limit
or a worker without the handler) count from the moment the process started (Prometheus'
``rate()`` and ``increase()`` are made for that). Several API processes each export the same
job counts; aggregate them with ``max``, not ``sum``. Queue depths, DLQ sizes, live workers
(in all and per queue), live schedulers and the leader, and the history recorder's lag are
read from Redis at scrape time.
"""

from __future__ import annotations

import time
from collections import Counter as Tally
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from conveyor import inspect as views
from conveyor.connect import server_ms
from conveyor.scheduler.recorder import GROUP as RECORDER_GROUP
from conveyor.scheduler.service import LEADER_LOCK
from conveyor.supervise import Supervisor

if TYPE_CHECKING:
    from conveyor.api.hub import HubEvent
    from conveyor.app import Conveyor

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
OUTCOMES = frozenset({"completed", "dead", "canceled", "retrying", "requeued", "released"})
ENDS_ATTEMPT = OUTCOMES - {"requeued", "released"}
# The reasons of 'deferred' events (broker/lua/limit.lua, handback.lua); any other is 'other',
# so a stray stream entry cannot grow the label set.
DEFER_REASONS = frozenset({"rate limit", "concurrency limit", "no handler"})
MAX_TRACKED = 100_000  # jobs whose due/start time is remembered to compute latencies
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)
PICKUP_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    """The process's registry. Responsibilities: count job transitions and deferrals and
    observe durations (start to end of an attempt) and pickup latency (first due to first
    start) from hub events, with bounded memory; fill queue, worker, scheduler and recorder
    gauges at scrape time; count API requests, rate-limit refusals and WebSocket clients."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.submitted = Counter("conveyor_jobs_submitted", "Jobs submitted", ["queue"],
                                 registry=r)
        self.outcomes = Counter("conveyor_jobs", "Attempts ended or jobs moved, by outcome",
                                ["queue", "outcome"], registry=r)
        self.deferred = Counter("conveyor_jobs_deferred",
                                "Jobs stepped aside unrun: over a job type's rate= or "
                                "concurrency= limit, or handed back by a worker without the "
                                "handler", ["queue", "reason"], registry=r)
        self.duration = Histogram("conveyor_job_duration_seconds", "Run time of attempts",
                                  ["queue", "type"], buckets=DURATION_BUCKETS, registry=r)
        self.pickup = Histogram("conveyor_pickup_latency_seconds",
                                "From a job's due time to its first start", ["queue"],
                                buckets=PICKUP_BUCKETS, registry=r)
        self.depth = Gauge("conveyor_queue_depth", "Jobs in a queue by state",
                           ["queue", "state"], registry=r)
        self.dlq = Gauge("conveyor_dlq_size", "Jobs in the dead-letter queue", ["queue"],
                         registry=r)
        self.oldest = Gauge("conveyor_queue_oldest_waiting_seconds",
                            "Age of the oldest ready job", ["queue"], registry=r)
        self.paused = Gauge("conveyor_queue_paused", "1 when the queue is paused", ["queue"],
                            registry=r)
        self.workers = Gauge("conveyor_workers_alive", "Workers with a recent heartbeat",
                             registry=r)
        self.queue_workers = Gauge("conveyor_queue_workers",
                                   "Workers with a recent heartbeat that serve the queue",
                                   ["queue"], registry=r)
        self.schedulers = Gauge("conveyor_schedulers_alive",
                                "Schedulers whose status key is present", registry=r)
        self.leaders = Gauge("conveyor_scheduler_leaders",
                             "Live schedulers that hold the leader lock", registry=r)
        self.recorder_lag = Gauge(
            "conveyor_recorder_lag_seconds",
            "Age of the oldest event of the queue that the history recorder has not "
            "acknowledged (0 when none; absent while the recorder has no group on the queue)",
            ["queue"], registry=r)
        self.requests = Counter("conveyor_api_requests", "HTTP requests",
                                ["method", "route", "status"], registry=r)
        self.limited = Counter("conveyor_api_ratelimited", "Requests refused with 429",
                               ["kind"], registry=r)
        self.limiter_errors = Counter("conveyor_api_ratelimit_errors",
                                      "Rate-limit checks that could not reach Redis", registry=r)
        self.ws_clients = Gauge("conveyor_api_websocket_clients", "Connected WebSocket clients",
                                registry=r)
        self.ws_dropped = Counter("conveyor_api_websocket_dropped",
                                  "WebSocket clients cut off for not reading", registry=r)
        self.worker_loop_stuck = Gauge(
            "conveyor_worker_loop_stuck", "1 when a live worker reports the loop stuck",
            ["worker", "loop"], registry=r)
        r.register(LoopCollector())
        self._due: dict[str, int] = {}
        self._started: dict[str, int] = {}
        # Label children by their labels: labels() takes a lock and builds tuples per call.
        self._submitted_of: dict[str, Any] = {}
        self._requests_of: dict[tuple[str, str, int], Any] = {}

    # -- from events ----------------------------------------------------------------------

    def observe(self, ev: HubEvent) -> None:
        f = ev.fields
        event = f.get("event")
        if event == "submitted":
            child = self._submitted_of.get(ev.queue)
            if child is None:
                child = self._submitted_of[ev.queue] = self.submitted.labels(ev.queue)
            child.inc()
            _remember(self._due, ev.job, _int(f.get("due")))
        elif event == "active":
            self._started_attempt(ev)
        elif event == "deferred":
            reason = f.get("reason", "")
            self.deferred.labels(ev.queue, reason if reason in DEFER_REASONS else "other").inc()
        elif event in OUTCOMES:
            self.outcomes.labels(ev.queue, event).inc()
            started = _int(f.get("started")) or self._started.pop(ev.job, None)
            if event in ENDS_ATTEMPT and started is not None and f.get("worker"):
                end = _int(f.get("ts")) or started
                self.duration.labels(ev.queue, ev.job_type).observe((end - started) / 1000)

    def _started_attempt(self, ev: HubEvent) -> None:
        ts = _int(ev.fields.get("ts"))
        if ts is None:
            return
        _remember(self._started, ev.job, ts)
        if ev.fields.get("attempt") == "1":
            due = _int(ev.fields.get("due")) or self._due.pop(ev.job, None)
            if due is not None:
                self.pickup.labels(ev.queue).observe(max(0, ts - due) / 1000)

    def observe_request(self, method: str, route: str, status: int) -> None:
        if method not in METHODS:
            method = "other"  # a client's made-up method must not grow the label set
        key = (method, route, status)
        child = self._requests_of.get(key)
        if child is None:
            child = self._requests_of[key] = self.requests.labels(method, route, str(status))
        child.inc()

    # -- at scrape time -------------------------------------------------------------------

    async def render(self, conveyor: Conveyor) -> bytes:
        queues = await views.queue_stats(conveyor)
        workers = await views.workers(conveyor)
        services = await read_services(conveyor, [q.name for q in queues])
        self._fill_queues(queues)
        self._fill_workers(workers, [q.name for q in queues])
        self._fill_services(services)
        return generate_latest(self.registry)

    def _fill_queues(self, queues: list[views.QueueStats]) -> None:
        for gauge in (self.depth, self.dlq, self.oldest, self.paused):
            gauge.clear()  # forget queues that are gone
        for q in queues:
            for state in ("high", "normal", "low", "delayed", "active"):
                self.depth.labels(q.name, state).set(getattr(q, state))
            self.dlq.labels(q.name).set(q.dead)
            self.paused.labels(q.name).set(int(q.paused))
            self.oldest.labels(q.name).set(q.oldest_waiting_seconds or 0.0)

    def _fill_workers(self, workers: list[views.WorkerInfo], queues: list[str]) -> None:
        live = [w for w in workers if w.alive]
        self.workers.set(len(live))
        serving = Tally(q for w in live for q in set(w.queues))
        self.queue_workers.clear()  # forget queues that are gone
        for queue in sorted(set(queues) | set(serving)):
            self.queue_workers.labels(queue).set(serving[queue])
        self.worker_loop_stuck.clear()  # forget workers that are gone
        for w in live:
            for loop, health in w.loops.items():
                stuck = isinstance(health, dict) and bool(health.get("stuck"))
                self.worker_loop_stuck.labels(w.id, loop).set(int(stuck))

    def _fill_services(self, services: Services) -> None:
        self.schedulers.set(services.schedulers_alive)
        self.leaders.set(services.scheduler_leaders)
        self.recorder_lag.clear()  # forget queues that are gone
        for queue, lag in services.recorder_lag.items():
            self.recorder_lag.labels(queue).set(lag)


@dataclass(frozen=True, slots=True)
class Services:
    """What the processes that are not workers show in Redis: live schedulers (their status
    key is present), those of them that hold the leader lock, and per queue the recorder's
    lag in seconds (queues whose events stream has no recorder group are absent)."""

    schedulers_alive: int
    scheduler_leaders: int
    recorder_lag: dict[str, float]


async def read_services(conveyor: Conveyor, queues: list[str]) -> Services:
    """Schedulers and the recorder's lag, in two pipelined round trips (and a TIME when a
    recorder lags): the first reads the schedulers' ZSET, the leader lock and every events
    stream's groups; the second checks which schedulers' status keys exist and finds each
    lagging stream's oldest entry that is not acknowledged: the oldest pending one
    (XPENDING) or else the first one after the group's last delivered id (XRANGE), since
    pending entries come before undelivered ones."""
    redis, glob = conveyor.redis, conveyor.keys.glob
    streams = [conveyor.keys.queue(q).events for q in queues]
    async with redis.pipeline(transaction=False) as pipe:
        pipe.zrange(glob.schedulers, 0, -1)
        pipe.get(glob.lock(LEADER_LOCK))
        for stream in streams:
            pipe.xinfo_groups(stream)
        owners, lock, *infos = _checked(await pipe.execute(raise_on_error=False))
    groups = {q: g for q, g in zip(queues, map(_recorder_group, infos), strict=True) if g}
    lagging = {q: g for q, g in groups.items() if g.get("pending") or g.get("lag") != 0}
    async with redis.pipeline(transaction=False) as pipe:
        for owner in owners:
            pipe.exists(glob.scheduler(owner))
        for queue, group in lagging.items():
            stream = conveyor.keys.queue(queue).events
            if group.get("pending"):
                pipe.xpending(stream, RECORDER_GROUP)
            else:
                pipe.xrange(stream, min=_after(group["last-delivered-id"]), count=1)
        replies = _checked(await pipe.execute(raise_on_error=False)) if len(pipe) else []
    alive = {o for o, present in zip(owners, replies[:len(owners)], strict=True) if present}
    # Not in the pipeline: a Cluster pipeline refuses keyless commands such as TIME.
    now_ms = server_ms(await redis.time()) if lagging else 0
    lag = dict.fromkeys(groups, 0.0)
    for queue, reply in zip(lagging, replies[len(owners):], strict=True):
        oldest = _oldest_id(reply)
        lag[queue] = max(0, now_ms - _id_ms(oldest)) / 1000 if oldest else 0.0
    holder = (lock or "").partition(" ")[0]
    return Services(schedulers_alive=len(alive), scheduler_leaders=int(holder in alive),
                    recorder_lag=lag)


def _checked(replies: list[Any]) -> list[Any]:
    """Pipeline replies with the errors of a stream or group that does not exist (yet, or no
    more) made None; any other error is raised."""
    for reply in replies:
        if isinstance(reply, Exception) and not _missing(reply):
            raise reply
    return [None if isinstance(reply, Exception) else reply for reply in replies]


def _missing(error: Exception) -> bool:
    message = str(error).lower()
    return "no such key" in message or message.startswith("nogroup")


def _recorder_group(groups: list[dict[str, Any]] | None) -> dict[str, Any] | None:
    return next((g for g in groups or [] if g.get("name") == RECORDER_GROUP), None)


def _after(entry_id: str) -> str:
    """The smallest stream id after ``entry_id`` (an exclusive XRANGE start on any Redis)."""
    ms, _, seq = entry_id.partition("-")
    return f"{ms}-{int(seq or 0) + 1}"


def _oldest_id(reply: Any) -> str | None:
    """The id an XPENDING summary (``min``) or an XRANGE of one entry answered, if any."""
    if isinstance(reply, dict):
        return cast(str | None, reply.get("min"))
    return cast(str, reply[0][0]) if reply else None


def _id_ms(entry_id: str) -> int:
    return int(entry_id.partition("-")[0])


class LoopCollector(Collector):
    """The health of every supervised loop of this process (``Supervisor.registry``: the
    hub's, and a worker's and scheduler's in ``conveyor up``), computed at scrape time."""

    def collect(self) -> Iterator[Metric]:
        labels = ["component", "loop"]
        age = GaugeMetricFamily("conveyor_loop_last_success_age_seconds",
                                "Seconds since the loop last succeeded", labels=labels)
        stuck = GaugeMetricFamily("conveyor_loop_stuck", "1 when the loop is stuck",
                                  labels=labels)
        restarts = CounterMetricFamily("conveyor_loop_restarts",
                                       "Restarts of the loop after a crash", labels=labels)
        errors = CounterMetricFamily("conveyor_loop_transient_errors",
                                     "Transient errors the loop backed off from", labels=labels)
        now = time.time()
        for component, supervisor in list(Supervisor.registry.items()):
            for name, health in list(supervisor.loops.items()):
                values = [component, name]
                age.add_metric(values, health.age(now))
                stuck.add_metric(values, int(health.stuck(now)))
                restarts.add_metric(values, health.restarts)
                errors.add_metric(values, health.transient_errors)
        yield from (age, stuck, restarts, errors)


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None


def _remember(table: dict[str, int], job: str, value: int | None) -> None:
    if value is None or not job:
        return
    table[job] = value
    if len(table) > MAX_TRACKED:
        del table[next(iter(table))]  # the oldest entry: its job is long gone or stuck
