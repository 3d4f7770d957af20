"""Prometheus metrics of one API process (``GET /metrics``, text format 0.0.4).

Job metrics come from the events streams through the hub, so an API process sees every
job of every worker: counters and histograms count from the moment the process started
(Prometheus' ``rate()`` and ``increase()`` are made for that). Several API processes each
export the same job counts; aggregate them with ``max``, not ``sum``. Queue depths, DLQ sizes
and live workers are read from Redis at scrape time.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from conveyor import inspect as views
from conveyor.supervise import Supervisor

if TYPE_CHECKING:
    from conveyor.api.hub import HubEvent
    from conveyor.app import Conveyor

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
OUTCOMES = frozenset({"completed", "dead", "canceled", "retrying", "requeued", "released"})
ENDS_ATTEMPT = OUTCOMES - {"requeued", "released"}
MAX_TRACKED = 100_000  # jobs whose due/start time is remembered to compute latencies
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)
PICKUP_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    """The process's registry. Responsibilities: count job transitions and observe
    durations (start to end of an attempt) and pickup latency (first due to first start)
    from hub events, with bounded memory; fill queue and worker gauges at scrape time;
    count API requests, rate-limit refusals and WebSocket clients."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.submitted = Counter("conveyor_jobs_submitted", "Jobs submitted", ["queue"],
                                 registry=r)
        self.outcomes = Counter("conveyor_jobs", "Attempts ended or jobs moved, by outcome",
                                ["queue", "outcome"], registry=r)
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
        for gauge in (self.depth, self.dlq, self.oldest, self.paused):
            gauge.clear()  # forget queues that are gone
        for q in queues:
            for state in ("high", "normal", "low", "delayed", "active"):
                self.depth.labels(q.name, state).set(getattr(q, state))
            self.dlq.labels(q.name).set(q.dead)
            self.paused.labels(q.name).set(int(q.paused))
            self.oldest.labels(q.name).set(q.oldest_waiting_seconds or 0.0)
        self.workers.set(sum(w.alive for w in workers))
        self.worker_loop_stuck.clear()  # forget workers that are gone
        for w in workers:
            if w.alive:
                for loop, health in w.loops.items():
                    stuck = isinstance(health, dict) and bool(health.get("stuck"))
                    self.worker_loop_stuck.labels(w.id, loop).set(int(stuck))
        return generate_latest(self.registry)


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
