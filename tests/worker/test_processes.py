"""Process-level reliability: real worker subprocesses and real servers, killed, frozen and
signalled mid-job. Every assertion counts jobs, executions and events.

Handlers of ``tests.apps.basic`` append ``jobid:attempt:pid`` to the ``ledger`` list when an
execution runs to its end (``started`` when it begins), so executions are counted across
processes; the queue's events stream says what the scripts did, with Redis-clock ids.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from conveyor import Context, Conveyor, Worker
from conveyor.broker.keys import Keys
from conveyor.embedded import RedisServer
from tests.conftest import FAST
from tests.procs import redis_ms, spawn_worker, submit, wait_for, worker_id

KEYS = Keys("cv")
QK = KEYS.queue("default")
GRACE = FAST["grace_seconds"]


class Fleet:
    """Worker subprocesses of one test; whatever is still alive at the end is killed."""

    def __init__(self, url: str, tmp_path: Path) -> None:
        self.url = url
        self.tmp_path = tmp_path
        self.procs: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(self, *args: str, **overrides: float | str) -> subprocess.Popen[bytes]:
        log = self.tmp_path / f"worker-{len(self.procs)}.log"
        proc = spawn_worker(self.url, log, *args, **overrides)
        self.procs.append((proc, log))
        return proc

    def log(self, proc: subprocess.Popen[bytes]) -> str:
        return next(log.read_text() for p, log in self.procs if p is proc)

    def close(self) -> None:
        for proc, _ in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.kill()
            proc.wait(10)


FleetOf = Callable[[RedisServer], Fleet]


@pytest.fixture
def fleet_of(tmp_path: Path) -> Iterator[FleetOf]:
    """``fleet_of(server)``: a Fleet of workers on that server, killed at teardown."""
    fleets: list[Fleet] = []

    def make(server: RedisServer) -> Fleet:
        fleets.append(Fleet(server.url, tmp_path))
        return fleets[-1]

    yield make
    for f in fleets:
        f.close()


def client(server: RedisServer) -> redis.Redis:
    return redis.Redis.from_url(server.url, decode_responses=True)


def ledger(r: redis.Redis, key: str = "ledger") -> list[tuple[str, int, int]]:
    """(job id, attempt, pid) per execution, in the order they were recorded."""
    out = []
    for entry in r.lrange(key, 0, -1):
        job_id, attempt, pid = entry.rsplit(":", 2)
        out.append((job_id, int(attempt), int(pid)))
    return out


def events(r: redis.Redis, job_id: str | None = None) -> list[tuple[int, dict[str, str]]]:
    """(Redis ms, fields) of each event of the default queue, of one job if given."""
    return [(int(eid.split("-")[0]), f) for eid, f in r.xrange(QK.events)
            if job_id is None or f["job"] == job_id]


def drained(r: redis.Redis) -> bool:
    """Nothing ready, delayed or leased on the default queue: every job reached an end."""
    return sum([r.llen(QK.ready(p)) for p in ("high", "normal", "low")]
               + [r.zcard(QK.active), r.zcard(QK.delayed)]) == 0


def statuses(r: redis.Redis, ids: list[str]) -> Counter[str]:
    with r.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.hget(QK.job(job_id), "status")
        return Counter(pipe.execute())


def exit_within(proc: subprocess.Popen[bytes], timeout: float) -> tuple[int, float]:
    """Wait for the process to end; returns (exit code, seconds it took)."""
    t0 = time.monotonic()
    code = proc.wait(timeout)
    return code, time.monotonic() - t0


def blocked_fetchers(r: redis.Redis) -> int:
    """Connections whose last command was the idle fetcher's BZPOPMIN on the marker."""
    return sum(1 for c in r.client_list() if c.get("cmd") == "bzpopmin")


def fetcher_connections(r: redis.Redis) -> int:
    """The fetchers' blocking connections (named by the worker), whatever they last ran (a
    single-queue fetcher's claim follows its BZPOPMIN on that connection)."""
    return sum(1 for c in r.client_list() if c.get("name", "").startswith("conveyor-fetch:"))


# -- 1. kill -9 mid-job ----------------------------------------------------------------------

JOBS = 1200


def test_kill9_mid_job_loses_nothing_and_orphans_rerun_within_10s(
    redis_server: RedisServer, fleet_of: FleetOf
) -> None:
    r = client(redis_server)
    fleet = fleet_of(redis_server)
    victim, survivor = fleet.start("--concurrency", "30"), fleet.start("--concurrency", "30")
    victim_id, survivor_id = worker_id(r, victim.pid), worker_id(r, survivor.pid)
    ids = submit(redis_server.url, [
        {"type": "record", "args": {"n": i, "sleep": 0.01 * (1 + i % 5)}} for i in range(JOBS)])
    held = QK.worker_jobs(victim_id)

    wait_for(lambda: r.llen("ledger") >= 200 and r.scard(held) >= 5, 30,
             "the victim to be mid-way with jobs in flight")
    kill_ms = redis_ms(r)
    victim.kill()
    victim.wait(5)
    done_before_kill = len(ledger(r))

    wait_for(lambda: drained(r), 60, "every job to reach an end")

    # Every job completed exactly once; none lost, none dead.
    assert statuses(r, ids) == Counter({"completed": JOBS})
    assert r.zcard(QK.dead) == 0
    completed = [(ms, f) for ms, f in events(r) if f["event"] == "completed"]
    assert Counter(f["job"] for _, f in completed) == Counter({i: 1 for i in ids})
    runs = ledger(r)
    assert {job for job, _, _ in runs} == set(ids)  # each ran to its end at least once

    # The reaper of the surviving worker requeued exactly the leases the victim held when it
    # died: those it claimed (an 'active' event) and never acknowledged.
    evs = events(r)
    claimed = {(f["job"], int(f["attempt"])) for _, f in evs
               if f["event"] == "active" and f["worker"] == victim_id}
    acked = {(f["job"], int(f["attempt"])) for _, f in completed if f["worker"] == victim_id}
    requeued = [(ms, f) for ms, f in evs if f["event"] == "requeued"]
    orphans = {f["job"]: int(f["attempt"]) for _, f in requeued}
    assert len(orphans) >= 5, "the victim held too few jobs at the kill"
    assert set(orphans.items()) == claimed - acked
    assert len(requeued) == len(orphans)
    assert {(f["worker"], f["reason"]) for _, f in requeued} == {(victim_id, "worker lost")}
    by_job = {f["job"]: (ms, f) for ms, f in completed}

    # ...and the survivor ran each orphan again, under a newer lease, within 10 s of the kill.
    latencies = []
    for job, attempt in orphans.items():
        ms, f = by_job[job]
        assert f["worker"] == survivor_id
        assert int(f["attempt"]) > attempt
        assert (job, int(f["attempt"]), survivor.pid) in runs
        latencies.append(ms - kill_ms)
    requeue_ms = max(ms for ms, _ in requeued) - kill_ms
    assert max(latencies) <= 10_000, f"orphans re-ran {max(latencies)} ms after the kill"
    print(f"\n{len(orphans)} orphans of {JOBS} jobs ({done_before_kill} done at the kill); "
          f"requeued {requeue_ms} ms, all re-run by {max(latencies)} ms after the kill; "
          f"{len(runs) - JOBS} executions repeated")


# -- 2. a frozen worker's late completion is refused -----------------------------------------

def test_stale_lease_completion_is_refused(redis_server: RedisServer, fleet_of: FleetOf) -> None:
    r = client(redis_server)
    fleet = fleet_of(redis_server)
    frozen = fleet.start("--concurrency", "2")
    frozen_id = worker_id(r, frozen.pid)
    (job,) = submit(redis_server.url, [{"type": "slow_first", "args": {"seconds": 1.5}}])
    wait_for(lambda: r.llen("started") == 1, 20, "the first attempt to start")
    frozen.send_signal(signal.SIGSTOP)
    # A renewal sent just before the stop may still land: allow for one more period.
    lease_deadline = int(r.zscore(QK.active, job) or 0) + int(FAST["renew_seconds"] * 1000)
    assert r.hget(QK.job(job), "worker") == frozen_id

    other = fleet.start("--concurrency", "2")
    other_id = worker_id(r, other.pid)
    wait_for(lambda: r.hget(QK.job(job), "status") == "completed", 20,
             "the other worker to take the job over and complete it")
    # Stay frozen past the lease too: the first attempt's sleep has long ended by now, so on
    # SIGCONT its handler returns and the worker presents its (stale) lease.
    wait_for(lambda: redis_ms(r) > lease_deadline + 200, 10, "the frozen lease to run out")
    frozen.send_signal(signal.SIGCONT)

    info = KEYS.glob.worker(frozen_id)
    wait_for(lambda: int(r.hget(info, "stale") or 0) >= 1, 10,
             "the resumed worker to count its refused completion")
    wait_for(lambda: "late completions refused" in fleet.log(frozen), 5, "the refusal logged")

    h = r.hgetall(QK.job(job))
    assert h["status"] == "completed"
    assert h["worker"] == other_id
    assert h["attempt"] == "2"
    assert int(h["stale"]) >= 1
    assert r.hget(info, "processed") == "0"
    assert sorted(ledger(r)) == [(job, 1, frozen.pid), (job, 2, other.pid)]  # ran twice...
    evs = events(r, job)
    done = [f for _, f in evs if f["event"] == "completed"]
    assert len(done) == 1  # ...completed once, with the second worker's result
    assert (done[0]["worker"], done[0]["attempt"]) == (other_id, "2")
    assert done[0]["result"] == h["result"] == f'{{"attempt":2,"pid":{other.pid}}}'
    assert [(f["worker"], f["reason"]) for _, f in evs if f["event"] == "requeued"] == [
        (frozen_id, "worker lost")]

    frozen.terminate()
    assert exit_within(frozen, 10)[0] == 0


# -- 3. graceful shutdown --------------------------------------------------------------------

def test_sigterm_lets_the_running_job_finish_and_leaves_the_queue_alone(
    any_redis: RedisServer, fleet_of: FleetOf
) -> None:
    r = client(any_redis)
    fleet = fleet_of(any_redis)
    w = fleet.start("--concurrency", "1")
    wid = worker_id(r, w.pid)
    (running,) = submit(any_redis.url, [{"type": "started_then_sleep", "args": {"seconds": 1.0}}])
    wait_for(lambda: r.llen("started") == 1, 20, "the job to start")
    waiting = submit(any_redis.url, [{"type": "record", "args": {"n": i}} for i in range(5)])

    w.terminate()
    code, took = exit_within(w, GRACE + 5)
    assert code == 0
    assert took < GRACE
    assert ledger(r) == [(running, 1, w.pid)]  # the running job finished...
    h = r.hgetall(QK.job(running))
    assert (h["status"], h.get("stale")) == ("completed", None)  # acknowledged once
    assert r.zcard(QK.active) == 0  # ...nothing is left leased...
    assert statuses(r, waiting) == Counter({"queued": 5})  # ...the rest is untouched
    assert sorted(r.lrange(QK.ready("normal"), 0, -1)) == sorted(waiting)
    assert r.zscore(KEYS.glob.workers, wid) is None  # and the worker signed off
    assert not r.exists(KEYS.glob.worker(wid))

    nxt = fleet.start("--concurrency", "5")
    wait_for(lambda: drained(r), 20, "the next worker to run the queued jobs")
    assert statuses(r, waiting) == Counter({"completed": 5})
    assert Counter(job for job, _, pid in ledger(r) if pid == nxt.pid) == Counter(
        {job: 1 for job in waiting})


def released_then_completed(r: redis.Redis, fleet: Fleet, job: str, pid: int) -> None:
    """The job went back to the queue unharmed, and another worker completes it."""
    h = r.hgetall(QK.job(job))
    assert (h["status"], h["releases"], h["failures"]) == ("queued", "1", "0")
    assert r.lrange(QK.ready("normal"), 0, -1) == [job]
    assert r.zcard(QK.active) == 0
    kinds = [f["event"] for _, f in events(r, job)]
    assert kinds == ["submitted", "active", "released"]
    assert events(r, job)[-1][1]["reason"] == "worker shutdown"
    assert ledger(r) == []  # the first attempt never ran to its end

    nxt = fleet.start("--concurrency", "1")
    wait_for(lambda: r.hget(QK.job(job), "status") == "completed", 20, "the next worker")
    assert r.hget(QK.job(job), "result") == f'{{"attempt":2,"pid":{nxt.pid}}}'
    assert ledger(r) == [(job, 2, nxt.pid)]
    assert "retrying" not in [f["event"] for _, f in events(r, job)]
    assert [(j, a, p) for j, a, p in ledger(r, "started")] == [(job, 1, pid), (job, 2, nxt.pid)]


def test_sigterm_past_the_grace_period_releases_the_job(
    any_redis: RedisServer, fleet_of: FleetOf
) -> None:
    r = client(any_redis)
    fleet = fleet_of(any_redis)
    w = fleet.start("--concurrency", "2", "--grace", "1")
    worker_id(r, w.pid)
    (job,) = submit(any_redis.url, [{"type": "slow_first", "args": {"seconds": 60}}])
    wait_for(lambda: r.llen("started") == 1, 20, "the job to start")

    w.terminate()
    code, took = exit_within(w, 10)
    assert code == 0
    assert 1.0 <= took < 3.0, f"exit after {took:.1f}s with a 1 s grace period"
    released_then_completed(r, fleet, job, w.pid)


def test_sigterm_past_the_grace_period_with_a_sync_job_exits_promptly(
    any_redis: RedisServer, fleet_of: FleetOf
) -> None:
    r = client(any_redis)
    fleet = fleet_of(any_redis)
    w = fleet.start("--concurrency", "2", "--grace", "1")
    worker_id(r, w.pid)
    (job,) = submit(any_redis.url, [{"type": "record_sync", "args": {"n": 1, "sleep": 5}}])
    wait_for(lambda: r.hget(QK.job(job), "status") == "active", 20, "the job to start")

    t0 = time.monotonic()
    w.terminate()
    wait_for(lambda: r.hget(QK.job(job), "status") == "queued", 5, "the job to be released")
    code, _ = exit_within(w, 10)
    took = time.monotonic() - t0
    assert code == 0
    assert took < 3.0, f"exit {took:.1f}s after SIGTERM with a 1 s grace period"


def test_second_sigterm_stops_at_once(any_redis: RedisServer, fleet_of: FleetOf) -> None:
    r = client(any_redis)
    fleet = fleet_of(any_redis)
    w = fleet.start("--concurrency", "1")  # grace: FAST's 5 s
    worker_id(r, w.pid)
    wait_for(lambda: blocked_fetchers(r) == 1, 10, "the idle worker to block on its marker")
    (job,) = submit(any_redis.url, [{"type": "slow_first", "args": {"seconds": 60}}])
    wait_for(lambda: r.llen("started") == 1, 20, "the job to start")
    assert fetcher_connections(r) == 1  # its fetcher's connection, idle while the job runs

    w.terminate()
    # The first signal was handled once the fetcher closed its blocking connection.
    wait_for(lambda: fetcher_connections(r) == 0, 5, "the worker to stop claiming")
    assert w.poll() is None  # still inside its grace period
    w.terminate()
    code, took = exit_within(w, GRACE + 5)
    assert code == 0
    assert took < 2.5, f"exit {took:.1f}s after the second signal (grace: {GRACE}s)"
    released_then_completed(r, fleet, job, w.pid)


# -- 4. poison pill --------------------------------------------------------------------------

def test_job_that_kills_its_worker_three_times_is_dead_as_a_poison_pill(
    any_redis: RedisServer, fleet_of: FleetOf
) -> None:
    r = client(any_redis)
    fleet = fleet_of(any_redis)
    (job,) = submit(any_redis.url, [{"type": "started_then_sleep", "args": {"seconds": 60}}])
    killed = []
    for death in range(1, 4):
        w = fleet.start("--concurrency", "2")
        wait_for(lambda n=death: r.llen("started") == n, 20, f"attempt {death} to start")
        w.kill()
        w.wait(5)
        killed.append(w.pid)

    last = fleet.start("--concurrency", "2")
    wait_for(lambda: r.hget(QK.job(job), "status") == "dead", 20, "the job to be buried")
    h = r.hgetall(QK.job(job))
    assert "poison pill" in h["error"]
    assert "died 3 times" in h["error"]
    assert h["deaths"] == "3"
    assert r.zscore(QK.dead, job) is not None
    assert r.zcard(QK.active) == 0
    assert [(a, p) for _, a, p in ledger(r, "started")] == list(zip([1, 2, 3], killed, strict=True))
    assert ledger(r) == []
    kinds = [f["event"] for _, f in events(r, job)]
    assert kinds.count("requeued") == 2
    assert kinds[-1] == "dead"
    assert kinds.count("active") == 3  # the surviving worker never ran it
    assert last.poll() is None


# -- 5. timeouts (in-process worker) ---------------------------------------------------------

def timeout_app(server: RedisServer, seen: dict[str, Any]) -> Conveyor:
    """Handlers that overrun their timeout on attempt 1 only and note how they were stopped."""
    app = Conveyor(redis_url=server.url, **FAST)

    @app.job(timeout=0.3, max_attempts=3)
    async def slow_async(ctx: Context) -> int:
        if ctx.attempt == 1:
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                seen["cancelled"] = True
                raise
        return ctx.attempt

    @app.job(timeout=0.3, max_attempts=3)
    def slow_sync(ctx: Context) -> int:
        if ctx.attempt == 1:
            end = time.monotonic() + 5
            while not ctx.cancelled and time.monotonic() < end:
                time.sleep(0.01)
            seen["cancelled"] = ctx.cancelled
        return ctx.attempt

    @app.job(timeout=60, max_attempts=3)
    async def slow_unless_per_job_timeout(ctx: Context) -> int:
        return await slow_async(ctx)

    return app


@pytest.mark.parametrize(("job_type", "per_job"), [
    ("slow_async", None), ("slow_sync", None), ("slow_unless_per_job_timeout", 0.3)])
async def test_handler_over_its_timeout_fails_and_is_retried(
    any_redis: RedisServer, job_type: str, per_job: float | None
) -> None:
    seen: dict[str, Any] = {}
    app = timeout_app(any_redis, seen)
    worker = Worker(app, concurrency=4)
    run = asyncio.create_task(worker.run())
    try:
        handle = await app.enqueue(job_type, {}, timeout=per_job)
        assert await handle.result(timeout=10) == 2
        info = await handle.info()
    finally:
        worker.stop()
        await asyncio.wait_for(run, 10)
        await app.close()
    assert (info.attempt, info.failures) == (2, 1)
    (err,) = info.errors
    assert (err.attempt, err.type) == (1, "HandlerTimeout")
    assert "timed out after 0.3s" in err.message
    assert err.started is not None and err.finished is not None
    assert err.finished - err.started < 2.0  # stopped at the timeout, not run to its end
    assert seen["cancelled"] is True
    assert worker.stats.failed == 1
    assert worker.stats.processed == 1
