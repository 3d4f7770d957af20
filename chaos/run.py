"""The chaos driver and checker.

    python -m chaos.run --jobs 100000 --kills 20          # make chaos
    python -m chaos.run --jobs 10000 --kills 5 --seed 7   # about the CI tier

What runs, all on 127.0.0.1:

- the Redis under test (``redis-server`` from PATH, else Valkey), AOF with
  ``appendfsync always``, so a submission Redis acknowledged survives its ``kill -9``;
- the LEDGER, a second server no fault touches, where every execution records its start and
  end (``chaos.app``) and producers record the ids Redis accepted;
- N real worker processes (``python -m conveyor worker chaos.app:app``) with fast failure
  detection (heartbeat 0.2 s, heartbeat TTL 1 s, lease 3 s, reaper 0.2 s);
- the history recorder (``python -m conveyor recorder chaos.app:app``, SQLite store);
- two producers: the driver's own (most jobs) and a producer process (a share of the jobs).

Faults, at seeded random times: ``kill -9`` of random busy workers (each replaced by a fresh
one), ``kill -9`` of the Redis under test and a restart on the same port and data folder,
SIGSTOP of a busy worker past its lease then SIGCONT, ``kill -9`` of the recorder (a second
one takes over) and of the producer process mid-submission (a replacement resubmits the
same prepared jobs).

The checker then reads Redis, the ledger and the history store and prints the figures; see
docs/chaos.md for how to read them. ``run_chaos(ChaosConfig(...))`` is what the CI tier calls.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import math
import os
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rich.console import Console
from rich.table import Table

from chaos.app import ENDS, LEDGER_ENV, QUEUE, STARTS
from chaos.producer import (
    ACCEPTED,
    CHILD_STATS,
    IN_FLIGHT,
    RESUMED,
    ProducerStats,
    job_spec,
    make_producer_app,
    produce,
)
from conveyor.broker.keys import Keys
from conveyor.connect import make_redis
from conveyor.embedded import RedisServer, find_server
from conveyor.logs import setup_logging
from conveyor.worker.worker import cancel_all

ROOT = Path(__file__).resolve().parent.parent
KEYS = Keys("cv")
QK = KEYS.queue(QUEUE)
# The fast failure-detection settings of the process-level tests (tests/conftest.py FAST).
FAST: dict[str, float] = {
    "heartbeat_seconds": 0.2,
    "heartbeat_ttl_seconds": 1.0,
    "reap_seconds": 0.2,
    "renew_seconds": 0.5,
    "lease_seconds": 3.0,
    "block_seconds": 1.0,
    "backoff_base_seconds": 0.01,
    "backoff_cap_seconds": 0.05,
    "grace_seconds": 5.0,
}
LEASE = FAST["lease_seconds"]
TTL_MS = int(FAST["heartbeat_ttl_seconds"] * 1000)
# A reaper judges a worker dead at TTL_MS of silence; the driver's sampler (every 0.1 s, and
# starved itself at times) must have seen at least this much of it.
STARVED_MS = int(TTL_MS * 0.6)
STOP_SLACK = 1.0  # a reaper that judged the stopped worker may requeue just after SIGCONT
# After a Redis restart, reapers take leases that ran out while it was down (up to a lease
# after the kill) and the jobs of workers that stay silent a heartbeat TTL after the first
# reaper is back (give or take a client's reconnect backoff).
RESTART_AFTERMATH = LEASE + 2.0
console = Console()
log = logging.getLogger("chaos")


@dataclass
class ChaosConfig:
    """One chaos run. ``rate`` paces submission so the run lasts about jobs / rate seconds
    and the faults land while jobs flow."""

    jobs: int = 100_000
    kills: int = 20
    workers: int = 4
    concurrency: int = 25
    rate: float = 300.0  # jobs submitted per second (both producers together)
    job_ms: tuple[int, int] = (20, 300)  # each job sleeps a random time in this range
    batch: int = 200  # jobs per submission (driver's producer)
    fail_every: int = 200  # every fail_every-th job fails by design: retried once, then dead
    redis_restart: bool = True
    redis_down: float = 1.5  # seconds the Redis under test stays dead before its restart
    sigstop: bool = True
    stop_seconds: float = LEASE + 1.5  # SIGSTOP lasts past the lease
    recorder: bool = True  # run the history recorder and kill it once
    producer_kill: bool = True  # a producer process with producer_share of the jobs, killed
    producer_share: float = 0.1
    seed: int | None = None
    workdir: Path | None = None  # default: a temporary folder, removed if the run passes
    drain_timeout: float = 120.0  # after submission ends, for every job to reach an end
    store_timeout: float = 120.0  # then for the history store to hold every job

    def resolved_seed(self) -> int:
        if self.seed is None:
            self.seed = random.SystemRandom().randrange(1, 2**31)
        return self.seed


@dataclass
class Fault:
    kind: str  # worker kill | redis restart | sigstop | recorder kill | producer kill
    planned: float  # seconds after the start of submission
    at: float = 0.0  # epoch seconds when it hit (time.time(), the ledger's clock)
    until: float | None = None  # SIGCONT / Redis answering again
    pid: int | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class Proc:
    role: str
    popen: subprocess.Popen[bytes]
    log: Path
    wid: str | None = None

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None


@dataclass(frozen=True)
class Execution:
    job: str
    n: int
    attempt: int
    pid: int
    start: float
    end: float | None = None
    outcome: str | None = None


def plan_faults(cfg: ChaosConfig, rng: random.Random, window: float) -> list[Fault]:
    """Seeded fault times over the submission window, one fault per equal slot (so they
    stay apart); the recorder kill comes early, so its successor's takeover (after the
    entries' 30 s idle time) happens while the run goes on."""
    kinds = ["worker kill"] * cfg.kills
    kinds += ["redis restart"] * cfg.redis_restart + ["sigstop"] * cfg.sigstop
    kinds += ["producer kill"] * cfg.producer_kill
    rng.shuffle(kinds)
    lo, hi = 0.08 * window, 0.92 * window
    slot = (hi - lo) / max(1, len(kinds))
    faults = [Fault(k, lo + (i + rng.uniform(0.2, 0.8)) * slot) for i, k in enumerate(kinds)]
    if cfg.recorder:
        faults.append(Fault("recorder kill", rng.uniform(0.1, 0.25) * window))
    return sorted(faults, key=lambda f: f.planned)


# -- the driver ----------------------------------------------------------------------------

class Driver:
    """Starts the servers and processes, produces, injects the faults, waits for the end,
    and gathers the evidence. Every wait has a timeout; ``close`` kills what is left."""

    def __init__(self, cfg: ChaosConfig, workdir: Path) -> None:
        self.cfg = cfg
        self.seed = cfg.resolved_seed()
        self.rng = random.Random(self.seed)
        self.workdir = workdir
        binary = find_server()
        self.redis_server = RedisServer(binary, workdir / "redis", aof=True,
                                        extra=["--appendfsync", "always",
                                               "--latency-monitor-threshold", "100"])
        self.ledger_server = RedisServer(binary, workdir / "ledger", aof=False)
        self.procs: list[Proc] = []
        self.faults: list[Fault] = []
        self.stats = ProducerStats()
        self.stopped: Proc | None = None
        self.registering: list[asyncio.Task[str]] = []
        self.dead_consumers: list[str] = []
        self.watchers: list[asyncio.Task[None]] = []
        self.recorder_kill: Fault | None = None
        self.events_maxlen = max(200_000, cfg.jobs * 12)
        self.store_path = workdir / "history.db"
        self.driver_jobs = cfg.jobs - self.child_jobs
        self.t0 = 0.0
        self.t_end = 0.0
        self.cpu_saturated = 0.0
        self.beats: defaultdict[str, list[tuple[int, int]]] = defaultdict(list)
        self.redis: Redis
        self.ledger: Redis

    @property
    def child_jobs(self) -> int:
        if not self.cfg.producer_kill:
            return 0
        return max(self.cfg.batch, int(self.cfg.jobs * self.cfg.producer_share))

    # -- processes -------------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update({f"CONVEYOR_{k.upper()}": str(v) for k, v in FAST.items()})
        env["CONVEYOR_REDIS_URL"] = self.redis_server.url
        env["CONVEYOR_EVENTS_MAXLEN"] = str(self.events_maxlen)
        env["CONVEYOR_STORE_URL"] = f"sqlite:///{self.store_path}"
        env[LEDGER_ENV] = self.ledger_server.url
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        return env

    def spawn(self, role: str, args: list[str]) -> Proc:
        log = self.workdir / f"{role}-{len(self.procs)}.log"
        with log.open("ab") as sink:
            popen = subprocess.Popen([sys.executable, "-m", *args], env=self.env(), cwd=ROOT,
                                     stdout=sink, stderr=sink)
        proc = Proc(role, popen, log)
        self.procs.append(proc)
        return proc

    def start_worker(self) -> Proc:
        return self.spawn("worker", ["conveyor", "worker", "chaos.app:app",
                                     "--concurrency", str(self.cfg.concurrency)])

    def start_recorder(self) -> Proc:
        return self.spawn("recorder", ["conveyor", "recorder", "chaos.app:app"])

    def start_producer(self) -> Proc:
        c = self.cfg
        return self.spawn("producer", [
            "chaos.producer", "--redis", self.redis_server.url,
            "--ledger", self.ledger_server.url, "--first", str(self.driver_jobs),
            "--count", str(self.child_jobs), "--rate", str(c.rate * self.child_jobs / c.jobs),
            "--t0", repr(self.t0), "--batch", "50", "--seed", str(self.seed),
            "--job-ms", f"{c.job_ms[0]},{c.job_ms[1]}", "--fail-every", str(c.fail_every),
            "--events-maxlen", str(self.events_maxlen)])

    async def worker_id(self, proc: Proc, timeout: float = 60.0) -> str:
        """The id of worker ``proc`` once its first heartbeat is in Redis."""
        async def find() -> str | None:
            for wid in await self.redis.zrange(KEYS.glob.workers, 0, -1):
                if await self.redis.hget(KEYS.glob.worker(wid), "pid") == str(proc.pid):
                    return str(wid)
            return None

        wid = await poll(find, timeout, f"worker pid {proc.pid} to register")
        proc.wid = wid
        return wid

    def workers(self) -> list[Proc]:
        return [p for p in self.procs if p.role == "worker" and p.alive() and p.wid]

    # -- the run -----------------------------------------------------------------------------

    async def setup(self) -> None:
        self.ledger_server.start()
        self.redis_server.start(timeout=60)
        # Clients that reconnect (with backoff) after the Redis under test restarts.
        self.redis = make_redis(self.redis_server.url)
        self.ledger = make_redis(self.ledger_server.url)
        fsync = (await self.redis.config_get("appendfsync"))["appendfsync"]
        if fsync != "always":
            raise RuntimeError(f"the Redis under test runs appendfsync {fsync}, not always")
        started = [self.start_worker() for _ in range(self.cfg.workers)]
        for proc in started:
            await self.worker_id(proc)
        if self.cfg.recorder:
            self.start_recorder()

    async def sample_cpu(self) -> None:
        """Counts the seconds every core was >= 95% busy (a starved worker misses its
        heartbeats, which the figures must be read with)."""
        prev = cpu_times()
        while True:
            await asyncio.sleep(0.5)  # a sampling period
            cur = cpu_times()
            if prev and cur and cur[0] > prev[0]:
                busy = 1 - (cur[1] - prev[1]) / (cur[0] - prev[0])
                self.cpu_saturated += 0.5 * (busy >= 0.95)
            prev = cur

    async def sample_heartbeats(self) -> None:
        """Watches every worker's last heartbeat from outside (Redis clock): the evidence
        that a worker a reaper judged dead had in fact gone silent."""
        while True:
            await asyncio.sleep(0.1)  # a sampling period
            with contextlib.suppress(RedisError, OSError):
                async with self.redis.pipeline(transaction=False) as pipe:
                    pipe.time()
                    pipe.zrange(KEYS.glob.workers, 0, -1, withscores=True)
                    (sec, usec), beats = await pipe.execute()
                now = int(sec) * 1000 + int(usec) // 1000
                for wid, beat in beats:
                    if now - beat >= 300:
                        self.beats[wid].append((now, int(now - beat)))

    async def run(self) -> None:
        cfg = self.cfg
        window = cfg.jobs / cfg.rate
        self.faults = plan_faults(cfg, self.rng, window)
        log.info(f"seed {self.seed}; {cfg.jobs} jobs at {cfg.rate:g}/s "
                    f"(~{window:.0f} s); {len(self.faults)} faults; workdir {self.workdir}")
        self.t0 = time.time() + 0.5
        app = make_producer_app(self.redis_server.url, {"events_maxlen": self.events_maxlen})
        numbers = range(self.driver_jobs)
        tasks = [asyncio.create_task(produce(
            app, self.ledger, numbers, rate=cfg.rate * self.driver_jobs / cfg.jobs, t0=self.t0,
            batch=cfg.batch, spec=self.spec, stats=self.stats), name="producer")]
        if self.child_jobs:
            self.start_producer()
            tasks.append(asyncio.create_task(self.wait_producers(), name="producer process"))
        tasks.append(asyncio.create_task(self.inject(), name="faults"))
        samplers = [asyncio.create_task(self.sample_cpu()),
                    asyncio.create_task(self.sample_heartbeats())]
        try:
            limit = window + 300
            done, pending = await asyncio.wait(tasks, timeout=limit,
                                               return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                if task.exception() is not None:
                    raise RuntimeError(f"chaos {task.get_name()} failed") from task.exception()
            if pending:
                raise TimeoutError(f"still running after {limit:.0f} s: "
                                   f"{[t.get_name() for t in pending]}")
            self.t_end = time.time()
            log.info(f"submission done in {self.t_end - self.t0:.1f} s; draining")
            await self.drain()
        finally:
            # cancel_all cancels again until done: on Python 3.11 a cancellation landing as a
            # redis-py command completes can be lost, and these tasks loop.
            await cancel_all([*tasks, *samplers, *self.registering])
            await app.close()

    def spec(self, n: int) -> dict[str, Any]:
        return job_spec(n, self.seed, self.cfg.job_ms, self.cfg.fail_every)

    async def wait_producers(self) -> None:
        """Until the producer process (and any replacement) has exited with success."""
        while True:
            live = [p for p in self.procs if p.role == "producer" and p.alive()]
            if not live:
                last = [p for p in self.procs if p.role == "producer"][-1]
                if last.popen.returncode != 0:
                    raise RuntimeError(f"the producer process failed, see {last.log}")
                return
            await asyncio.sleep(0.2)  # another process: nothing to await but its exit

    async def inject(self) -> None:
        actions: dict[str, Callable[[Fault], Awaitable[None]]] = {
            "worker kill": self.kill_worker, "redis restart": self.restart_redis,
            "sigstop": self.stop_worker, "recorder kill": self.kill_recorder,
            "producer kill": self.kill_producer}
        conts = []
        for fault in self.faults:
            await asyncio.sleep(max(0.0, self.t0 + fault.planned - time.time()))
            await actions[fault.kind](fault)
            log.info(f"fault: {fault.kind} at +{fault.at - self.t0:.1f} s, pid {fault.pid}: "
                        f"{describe(fault, None)}")
            if fault.kind == "sigstop":
                conts.append(asyncio.create_task(self.cont_worker(fault)))
        await asyncio.gather(*conts, *self.registering)

    async def pick_busy_worker(self) -> Proc:
        """A random live worker holding leases right now (mid-job), the busier the likelier;
        waits up to 3 s for one, then takes any."""
        deadline = time.monotonic() + 3.0
        while True:
            candidates = [p for p in self.workers() if p is not self.stopped]
            held = [len(await self.leases_of(p.wid or "")) for p in candidates]
            if sum(held) or time.monotonic() > deadline:
                if not sum(held):
                    return self.rng.choice(candidates)
                return self.rng.choices(candidates, weights=held)[0]  # busier: likelier
            await asyncio.sleep(0.05)  # other processes claim: look again

    async def kill_worker(self, fault: Fault) -> None:
        victim = await self.pick_busy_worker()
        fault.pid = victim.pid
        fault.at = time.time()
        victim.popen.kill()
        victim.popen.wait(10)
        fault.detail = {"worker": victim.wid, "held": await self.leases_of(victim.wid or "")}
        replacement = self.start_worker()
        self.registering.append(asyncio.create_task(self.worker_id(replacement)))

    async def leases_of(self, wid: str) -> list[str]:
        """The jobs a worker holds a lease on. Its lease set also keeps ids of leases it lost
        (a reaper that requeues an expired lease leaves them there), so each job hash must
        still name it. Right after a kill the set and hashes stay as they were until a
        reaper notices the silence (>= 0.8 s later). A fault may follow a Redis restart
        closely: the driver's own reads then wait for Redis like everyone's (up to 60 s)."""
        deadline = time.monotonic() + 60
        while True:
            try:
                return await self._leases_of(wid)
            except (RedisConnectionError, RedisTimeoutError):
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)  # Redis is restarting: try again

    async def _leases_of(self, wid: str) -> list[str]:
        ids = sorted(await self.redis.smembers(QK.worker_jobs(wid)))
        async with self.redis.pipeline(transaction=False) as pipe:
            for job in ids:
                pipe.hmget(QK.job(job), ["status", "worker"])
            owners = await pipe.execute()
        return [job for job, (status, worker) in zip(ids, owners, strict=True)
                if status == "active" and worker == wid]

    async def stop_worker(self, fault: Fault) -> None:
        victim = await self.pick_busy_worker()
        self.stopped = victim
        fault.pid = victim.pid
        fault.at = time.time()
        victim.popen.send_signal(signal.SIGSTOP)
        fault.detail = {"worker": victim.wid, "held": len(await self.leases_of(victim.wid or ""))}

    async def cont_worker(self, fault: Fault) -> None:
        await asyncio.sleep(self.cfg.stop_seconds)  # frozen past its lease: the fault itself
        assert self.stopped is not None
        self.stopped.popen.send_signal(signal.SIGCONT)
        fault.until = time.time()
        fault.detail["stopped_s"] = round(fault.until - fault.at, 2)
        self.stopped = None
        log.info(f"fault: SIGCONT of pid {fault.pid} after {fault.detail['stopped_s']} s")

    async def restart_redis(self, fault: Fault) -> None:
        assert self.redis_server.proc is not None
        fault.pid = self.redis_server.proc.pid
        fault.at = time.time()
        self.redis_server.kill()
        await asyncio.sleep(self.cfg.redis_down)
        await asyncio.to_thread(self.redis_server.start, 120)
        fault.until = time.time()
        fault.detail = {"down_s": round(fault.until - fault.at, 2), "appendfsync": "always",
                        "port": self.redis_server.port}

    async def kill_recorder(self, fault: Fault) -> None:
        """Kill the recorder mid-batch: once it holds entries it read but has not yet
        acknowledged (its store commit is under way)."""
        rec = next(p for p in self.procs if p.role == "recorder" and p.alive())
        consumer = f"{socket.gethostname()}-{rec.pid}"

        async def pending() -> int:
            info = await self.redis.xpending(QK.events, "recorder")
            return sum(int(c["pending"]) for c in info.get("consumers") or []
                       if c["name"] == consumer)

        with contextlib.suppress(AssertionError):
            await poll(pending, 10.0, "the recorder to be mid-batch", every=0.002)
        fault.pid = rec.pid
        fault.at = time.time()
        rec.popen.kill()
        rec.popen.wait(10)
        fault.detail = {"pending_entries": await pending()}
        self.dead_consumers.append(consumer)
        self.recorder_kill = fault
        self.start_recorder()
        self.watchers.append(asyncio.create_task(self.watch_takeover(fault)))

    async def watch_takeover(self, fault: Fault) -> None:
        """Notes when the killed recorder's unacknowledged entries are all taken over."""
        with contextlib.suppress(AssertionError):
            await poll(lambda: self.orphaned_entries_are(0), 600, "the takeover", 0.5)
            fault.detail["taken_over_s"] = round(time.time() - fault.at, 1)

    async def orphaned_entries_are(self, n: int) -> bool:
        return await self.orphaned_entries() == n

    async def kill_producer(self, fault: Fault) -> None:
        """Kill the producer process while a batch is in flight (intent stored, not done)."""
        proc = next(p for p in self.procs if p.role == "producer")
        deadline = time.monotonic() + 10
        in_flight = False
        while proc.alive() and time.monotonic() < deadline:
            if await self.ledger.exists(IN_FLIGHT):
                in_flight = True
                break
            await asyncio.sleep(0.001)  # watching another process's progress
        fault.pid = proc.pid
        fault.at = time.time()
        if not proc.alive():
            fault.detail = {"skipped": "the producer process had already finished"}
            return
        proc.popen.kill()
        proc.popen.wait(10)
        fault.detail = {"batch_in_flight": in_flight}
        self.start_producer()

    async def drain(self) -> None:
        """Until nothing is ready, delayed or leased (every job reached an end)."""
        async def idle() -> bool:
            async with self.redis.pipeline(transaction=False) as pipe:
                for key in QK.ready_all:
                    pipe.llen(key)
                pipe.zcard(QK.active)
                pipe.zcard(QK.delayed)
                return sum(await pipe.execute()) == 0

        try:
            await poll(idle, self.cfg.drain_timeout, "every job to reach an end")
        except AssertionError as exc:  # the checker reports what never finished as lost
            log.error(f"{exc}")

    async def wait_store(self, expected: Counter[str]) -> None:
        """Until the history store counts what Redis counts and no killed recorder holds
        entries any more (a second recorder takes over entries idle for 30 s)."""
        async def caught_up() -> bool:
            counts = await asyncio.to_thread(store_counts, self.store_path)
            if any(counts.get(k, 0) != v for k, v in expected.items()):
                return False
            return await self.orphaned_entries() == 0

        with contextlib.suppress(AssertionError):
            await poll(caught_up, self.cfg.store_timeout, "the history store to catch up", 1.0)
        if self.recorder_kill:
            self.recorder_kill.detail["left_pending"] = await self.orphaned_entries()

    async def orphaned_entries(self) -> int:
        """Events-stream entries killed recorders read and never acknowledged."""
        if not self.dead_consumers:
            return 0
        info = await self.redis.xpending(QK.events, "recorder")
        return sum(int(c["pending"]) for c in info.get("consumers") or []
                   if c["name"] in self.dead_consumers)

    async def stop_all(self) -> None:
        for p in self.procs:
            if p.alive():
                with contextlib.suppress(ProcessLookupError):
                    p.popen.send_signal(signal.SIGCONT)
                    p.popen.terminate()
        deadline = time.monotonic() + 20
        for p in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.popen.wait(max(0.1, deadline - time.monotonic()))
            if p.alive():
                p.popen.kill()
                p.popen.wait(5)

    async def close(self) -> None:
        await cancel_all(self.watchers)
        await self.stop_all()
        for client in ("redis", "ledger"):
            if hasattr(self, client):
                with contextlib.suppress(Exception):
                    await getattr(self, client).aclose()
        self.redis_server.kill()
        self.ledger_server.kill()

    # -- evidence ----------------------------------------------------------------------------

    async def evidence(self) -> Evidence:
        accepted = await lrange_all(self.ledger, ACCEPTED)
        starts = await lrange_all(self.ledger, STARTS)
        ends = await lrange_all(self.ledger, ENDS)
        executions = parse_executions(starts, ends)
        unique = list(dict.fromkeys(accepted))
        hashes = await self.job_fields(unique, executions)
        job_keys = await self.count_job_keys()
        latency = {str(row[0]): (int(row[2]), int(row[3]))
                   for row in await self.redis.execute_command("LATENCY", "LATEST")}
        resumed = await self.ledger.hgetall(RESUMED)
        child = await self.ledger.hgetall(CHILD_STATS)
        self.stats.retried_batches += int(child.get("retried_batches", 0))
        self.stats.longest_wait = max(self.stats.longest_wait,
                                      float(child.get("longest_wait", 0)))
        return Evidence(
            accepted=unique, accepted_records=len(accepted), hashes=hashes,
            executions=executions, job_keys=job_keys, faults=self.faults,
            store=None, resumed=resumed, producer=self.stats, latency=latency,
            seconds=self.t_end - self.t0, cpu_saturated=self.cpu_saturated,
            pid_wid={p.pid: p.wid for p in self.procs if p.wid}, beats=dict(self.beats))

    async def job_fields(
        self, ids: list[str], executions: dict[str, list[Execution]]
    ) -> dict[str, dict[str, str]]:
        """status/attempt/stale/error of every job; the whole hash where it ran more than
        once (its ``error:<attempt>`` fields say which failures Redis recorded)."""
        out: dict[str, dict[str, str]] = {}
        names = ("status", "attempt", "stale", "error")
        for chunk in chunks(ids, 5000):
            async with self.redis.pipeline(transaction=False) as pipe:
                for job in chunk:
                    if len(executions.get(job, ())) > 1:
                        pipe.hgetall(QK.job(job))
                    else:
                        pipe.hmget(QK.job(job), names)
                replies = await pipe.execute()
            for job, reply in zip(chunk, replies, strict=True):
                fields = reply if isinstance(reply, dict) else dict(zip(names, reply, strict=True))
                out[job] = {k: v for k, v in fields.items() if v is not None}
        return out

    async def requeues(
        self, runs: list[Execution], after_ms: int = 10_000
    ) -> dict[tuple[str, int], tuple[int, str, str]]:
        """The 'requeued' events (Redis ms, worker, reason) of the leases of ``runs``, read
        from the queue's events stream in the time windows around them (up to ``after_ms``
        after each run ended: a lease is requeued at most that long after)."""
        spans = sorted((int(e.start * 1000) - 1000, int((e.end or e.start) * 1000) + after_ms)
                       for e in runs)
        windows: list[list[int]] = []
        for lo, hi in spans:
            if windows and lo <= windows[-1][1]:
                windows[-1][1] = max(windows[-1][1], hi)
            else:
                windows.append([lo, hi])
        wanted = {(e.job, e.attempt) for e in runs}
        out: dict[tuple[str, int], tuple[int, str, str]] = {}
        for lo, hi in windows:
            start = f"{lo}-0"
            while True:
                page = await self.redis.xrange(QK.events, min=start, max=str(hi), count=5000)
                for entry_id, f in page:
                    key = (f.get("job", ""), int(f.get("attempt") or 0))
                    if f.get("event") == "requeued" and key in wanted:
                        out[key] = (int(entry_id.split("-")[0]), f.get("worker", ""),
                                    f.get("reason", ""))
                if len(page) < 5000:
                    break
                start = f"({page[-1][0]}"
        return out

    async def count_job_keys(self) -> int:
        count = 0
        async for key in self.redis.scan_iter(match=f"{QK.job_prefix}*", count=5000):
            count += not key.endswith(":children")
        return count


async def poll(
    check: Callable[[], Awaitable[Any]], timeout: float, what: str, every: float = 0.2
) -> Any:
    """Poll a condition other processes make true (no event crosses the boundary); Redis
    errors (it may be restarting) count as not yet."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(RedisError, OSError):
            value = await check()
            if value:
                return value
        await asyncio.sleep(every)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")


async def lrange_all(r: Redis, key: str, step: int = 50_000) -> list[str]:
    out: list[str] = []
    while True:
        part = await r.lrange(key, len(out), len(out) + step - 1)
        out += part
        if len(part) < step:
            return out


def chunks(items: list[str], size: int) -> Iterable[list[str]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def parse_executions(starts: list[str], ends: list[str]) -> dict[str, list[Execution]]:
    """Executions per job id, in order of start, with their ends where they had one."""
    finished: dict[tuple[str, int, int], tuple[float, str]] = {}
    for line in ends:
        job, attempt, pid, _start, end, outcome = line.split()
        finished[(job, int(attempt), int(pid))] = (float(end), outcome)
    by_job: dict[str, list[Execution]] = defaultdict(list)
    for line in starts:
        job, n, attempt, pid, start = line.split()
        end, outcome = finished.get((job, int(attempt), int(pid)), (None, None))
        by_job[job].append(Execution(job, int(n), int(attempt), int(pid), float(start),
                                     end, outcome))
    for runs in by_job.values():
        runs.sort(key=lambda e: e.start)
    return by_job


def cpu_times() -> tuple[int, int] | None:
    """(total, idle) jiffies of all cores from /proc/stat; None where there is none."""
    try:
        first = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    except OSError:
        return None
    values = [int(x) for x in first[1:]]
    return sum(values), values[3] + values[4]


def superseded(h: dict[str, str], runs: list[Execution]) -> list[Execution]:
    """The executions of one job whose outcome Redis did not take: all but the completing
    attempt and the failures Redis recorded (``error:<attempt>`` fields); for a job with
    none of those (a poison pill), all but its last run."""
    taken = {int(k[6:]) for k in h if k.startswith("error:")}
    if h.get("status") == "completed":
        taken.add(int(h.get("attempt", 0)))
    if runs and not taken & {e.attempt for e in runs}:
        taken.add(runs[-1].attempt)
    return [e for e in runs if e.attempt not in taken]


def store_counts(path: Path) -> Counter[str]:
    """Jobs per status in the SQLite history store (read-only)."""
    if not path.exists():
        return Counter()
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as db:
        try:
            rows = db.execute("SELECT status, COUNT(*) FROM jobs WHERE queue = ? "
                              "AND deleted_ms IS NULL GROUP BY status", (QUEUE,)).fetchall()
        except sqlite3.OperationalError:  # the recorder has not created its schema yet
            return Counter()
    return Counter({status: count for status, count in rows})


def store_statuses(path: Path) -> dict[str, str]:
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as db:
        return dict(db.execute("SELECT id, status FROM jobs WHERE queue = ?", (QUEUE,)))


# -- the checker ---------------------------------------------------------------------------

@dataclass
class Evidence:
    accepted: list[str]
    accepted_records: int
    hashes: dict[str, dict[str, str]]
    executions: dict[str, list[Execution]]
    job_keys: int
    faults: list[Fault]
    store: dict[str, str] | None
    resumed: dict[str, str]
    producer: ProducerStats
    seconds: float
    latency: dict[str, tuple[int, int]] = field(default_factory=dict)
    cpu_saturated: float = 0.0
    pid_wid: dict[int, str] = field(default_factory=dict)
    beats: dict[str, list[tuple[int, int]]] = field(default_factory=dict)  # (Redis ms, age ms)
    requeues: dict[tuple[str, int], tuple[int, str, str]] = field(default_factory=dict)


@dataclass
class Report:
    seed: int
    accepted: int = 0
    completed: int = 0
    dead_by_design: int = 0
    dead_poison: int = 0
    dead_other: int = 0
    lost: list[str] = field(default_factory=list)
    doubled: int = 0
    executions: int = 0
    attributed: Counter[str] = field(default_factory=Counter)
    unattributed: list[Execution] = field(default_factory=list)
    stale: int = 0
    latencies: list[float] = field(default_factory=list)
    not_rerun: int = 0
    store_held: int | None = None
    store_matching: int | None = None
    faults: list[Fault] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    producer: ProducerStats = field(default_factory=ProducerStats)
    resumed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    total_seconds: float = 0.0
    stalls: dict[str, tuple[int, int]] = field(default_factory=dict)
    cpu_saturated: float = 0.0
    max_silence_ms: int = 0
    starved_silence_ms: int = 0

    @property
    def dead(self) -> int:
        return self.dead_by_design + self.dead_poison + self.dead_other

    @property
    def duplicates(self) -> int:
        return sum(self.attributed.values()) + len(self.unattributed)

    @property
    def ok(self) -> bool:
        return not self.problems

    def latency(self, q: float) -> float | None:
        if not self.latencies:
            return None
        xs = sorted(self.latencies)
        return xs[min(len(xs) - 1, int(q * len(xs)))]


class Checker:
    """Turns the evidence into the figures, and every rule it breaks into a problem."""

    def __init__(self, ev: Evidence, seed: int, fail_every: int) -> None:
        self.ev = ev
        self.fail_every = fail_every
        self.report = Report(seed, faults=ev.faults, producer=ev.producer, resumed=ev.resumed,
                             seconds=ev.seconds, stalls=ev.latency,
                             cpu_saturated=ev.cpu_saturated)
        self.kills = {f.pid: f.at for f in ev.faults if f.kind == "worker kill" and f.at}
        self.stop = next((f for f in ev.faults if f.kind == "sigstop" and f.at), None)
        self.restart = next((f for f in ev.faults if f.kind == "redis restart" and f.at), None)

    def check(self) -> Report:
        r, ev = self.report, self.ev
        r.accepted = len(ev.accepted)
        if ev.accepted_records != r.accepted:
            r.problems.append(f"{ev.accepted_records - r.accepted} ids recorded as accepted "
                              "twice")
        for job in ev.accepted:
            self.outcome(job, ev.hashes.get(job, {}))
            self.duplicates(job, ev.hashes.get(job, {}), ev.executions.get(job, []))
        self.strays()
        self.silences()
        self.recovery()
        self.history()
        if r.lost:
            r.problems.append(f"{len(r.lost)} accepted jobs lost (neither completed nor dead), "
                              f"e.g. {r.lost[:5]}")
        if r.unattributed:
            r.problems.append(f"{len(r.unattributed)} duplicate executions no fault explains, "
                              f"e.g. {r.unattributed[:3]}")
        return r

    def outcome(self, job: str, h: dict[str, str]) -> None:
        r = self.report
        status = h.get("status")
        n = self.n_of(job)
        by_design = n is not None and self.fail_every > 0 and n % self.fail_every == (
            self.fail_every - 1)
        if status == "completed":
            r.completed += 1
            if by_design:
                r.problems.append(f"job {job} was to fail but completed")
        elif status == "dead":
            if by_design:
                r.dead_by_design += 1
            elif "PoisonPill" in h.get("error", ""):
                r.dead_poison += 1  # a consequence of faults (its worker died 3 times)
            else:
                r.dead_other += 1
                r.problems.append(f"job {job} is dead for no fault: {h.get('error')}")
        else:
            r.lost.append(job)
        r.stale += int(h.get("stale") or 0)

    def n_of(self, job: str) -> int | None:
        runs = self.ev.executions.get(job)
        return runs[0].n if runs else None

    def duplicates(self, job: str, h: dict[str, str], runs: list[Execution]) -> None:
        """Executions Redis did not take the outcome of: each must come from a fault."""
        r = self.report
        r.executions += len(runs)
        if len({e.attempt for e in runs}) != len(runs):
            r.problems.append(f"job {job}: one lease token ran twice: {runs}")
        if h.get("status") == "completed":
            final = int(h.get("attempt", 0))
            if not any(e.attempt == final and e.outcome == "ok" for e in runs):
                r.problems.append(f"job {job} completed by attempt {final}, which the ledger "
                                  "never saw run to its end")
        for e in superseded(h, runs):
            cause = self.attribute(e)
            if cause:
                r.attributed[cause] += 1
            else:
                r.unattributed.append(e)

    def superseded_runs(self) -> list[Execution]:
        """Every execution whose outcome Redis did not take (their requeue events are then
        fetched from the events stream)."""
        return [e for job in self.ev.accepted
                for e in superseded(self.ev.hashes.get(job, {}), self.ev.executions.get(job, []))]

    def attribute(self, e: Execution) -> str | None:
        """The fault behind a superseded execution. Its lease (job, attempt) can only have
        moved on through a reaper, whose 'requeued' event names the worker and the time:
        that event is matched against the faults. None when nothing explains it."""
        wid = self.ev.pid_wid.get(e.pid)
        requeue = self.ev.requeues.get((e.job, e.attempt))
        if wid is None or requeue is None or requeue[1] != wid:
            return None
        at = requeue[0] / 1000
        if e.pid in self.kills and at >= self.kills[e.pid]:
            return "killed worker"
        stop = self.stop
        if stop and e.pid == stop.pid and stop.at <= at <= (stop.until or math.inf) + STOP_SLACK:
            return "SIGSTOPped worker"
        restart = self.restart
        if restart and restart.at <= at <= (restart.until or math.inf) + RESTART_AFTERMATH:
            return "Redis restart window"
        if self.starved(wid, requeue[0]):
            return "starved worker"
        return None

    def starved(self, wid: str, at_ms: int) -> bool:
        """A live worker that went silent, as seen from outside the system under test: the
        driver saw its heartbeat at least STARVED_MS old in the 2 s before a reaper took its
        lease. A pause no one injected (CPU or disk starvation) is a short SIGSTOP."""
        seen = [age for t, age in self.ev.beats.get(wid, ()) if at_ms - 2000 <= t <= at_ms + 50]
        if not seen or max(seen) < STARVED_MS:
            return False
        self.report.starved_silence_ms = max(self.report.starved_silence_ms, *seen)
        return True

    def strays(self) -> None:
        """Jobs in Redis or the ledger that no producer recorded as accepted."""
        r, ev = self.report, self.ev
        accepted = set(ev.accepted)
        stray = [j for j in ev.executions if j not in accepted]
        if stray:
            r.problems.append(f"{len(stray)} jobs ran that no producer saw accepted")
        by_n: dict[int, set[str]] = defaultdict(set)
        for job, runs in ev.executions.items():
            by_n[runs[0].n].add(job)
        r.doubled = sum(len(ids) - 1 for ids in by_n.values()) + max(0, ev.job_keys - r.accepted)
        if r.doubled:
            r.problems.append(f"{r.doubled} jobs submitted twice")

    def silences(self) -> None:
        """The longest a live worker's heartbeat was seen old, outside injected faults (a
        killed worker from its kill on, the stopped one while stopped, all of them while
        Redis was down)."""
        wid_pid = {w: p for p, w in self.ev.pid_wid.items()}
        everyone = []
        if self.restart:
            everyone.append((self.restart.at, (self.restart.until or math.inf) + 2))
        for wid, samples in self.ev.beats.items():
            pid = wid_pid.get(wid)
            windows = list(everyone)
            if pid in self.kills:
                windows.append((self.kills[pid], math.inf))
            if self.stop and pid == self.stop.pid:
                windows.append((self.stop.at, (self.stop.until or math.inf) + 2))
            for t, age in samples:
                if not any(lo * 1000 <= t <= hi * 1000 for lo, hi in windows):
                    self.report.max_silence_ms = max(self.report.max_silence_ms, age)

    def recovery(self) -> None:
        """From each worker kill to the re-start of each job that worker held."""
        r = self.report
        for f in self.ev.faults:
            if f.kind != "worker kill" or not f.at:
                continue
            for job in f.detail.get("held", []):
                later = [e.start for e in self.ev.executions.get(job, [])
                         if e.pid != f.pid and e.start >= f.at]
                if later:
                    r.latencies.append(min(later) - f.at)
                else:
                    r.not_rerun += 1
                    if self.ev.hashes.get(job, {}).get("status") != "dead":
                        r.problems.append(f"job {job} held by killed pid {f.pid} never re-ran")

    def history(self) -> None:
        r, ev = self.report, self.ev
        if ev.store is None:
            return
        for f in ev.faults:
            if f.kind == "recorder kill" and f.detail.get("left_pending"):
                r.problems.append(f"{f.detail['left_pending']} events the killed recorder read "
                                  "were never taken over by the second one")
        r.store_held = sum(1 for j in ev.accepted if j in ev.store)
        r.store_matching = sum(1 for j in ev.accepted
                               if ev.store.get(j) == ev.hashes.get(j, {}).get("status"))
        if r.store_matching != r.accepted:
            r.problems.append(f"the history store holds {r.store_held} of {r.accepted} jobs, "
                              f"{r.store_matching} with their final status")


# -- output --------------------------------------------------------------------------------

def fmt_ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:,.0f} ms"


def fmt_stalls(stalls: dict[str, tuple[int, int]]) -> str:
    if not stalls:
        return "none"
    return ", ".join(f"{name} {mx} ms ({latest})" for name, (latest, mx) in stalls.items())


def figures_table(r: Report) -> Table:
    t = Table(title=f"Chaos run (seed {r.seed}): {'PASS' if r.ok else 'FAIL'}")
    t.add_column("figure")
    t.add_column("value", justify="right")
    t.add_column("rule / note")
    def ok(good: bool) -> str:
        return "[green]ok[/green]" if good else "[red]FAIL[/red]"
    rows = [
        ("accepted", f"{r.accepted:,}", "acknowledged by Redis to a producer"),
        ("completed", f"{r.completed:,}", ""),
        ("dead", f"{r.dead:,}", f"{r.dead_by_design} by design (fail twice), "
         f"{r.dead_poison} poison pills, {r.dead_other} other"),
        ("lost", f"{len(r.lost)}", f"accepted, neither completed nor dead: must be 0 "
         f"{ok(not r.lost)}"),
        ("submitted twice", f"{r.doubled}", f"must be 0 {ok(not r.doubled)}"),
        ("executions", f"{r.executions:,}", "handler starts in the ledger"),
        ("duplicate executions", f"{r.duplicates:,}",
         "runs whose outcome Redis did not take (lease requeued by a reaper)"),
        ("  by a killed worker", f"{r.attributed['killed worker']:,}",
         "its lease requeued after the kill -9"),
        ("  by the SIGSTOPped worker", f"{r.attributed['SIGSTOPped worker']:,}",
         "its lease requeued while it was stopped"),
        ("  in the Redis-restart window", f"{r.attributed['Redis restart window']:,}",
         f"lease requeued from the kill -9 to {RESTART_AFTERMATH:g} s after the restart"),
        ("  by a starved worker", f"{r.attributed['starved worker']:,}",
         "not injected: a live worker silent past its heartbeat TTL lost the lease"
         + (f" (seen {r.starved_silence_ms:,} ms silent)" if r.starved_silence_ms else "")),
        ("  unattributed", f"{len(r.unattributed)}", f"must be 0 {ok(not r.unattributed)}"),
        ("longest heartbeat silence", f"{r.max_silence_ms:,} ms",
         f"of a live worker outside injected faults (TTL {TTL_MS:,} ms; sampled every 0.1 s)"),
        ("stale completions rejected", f"{r.stale:,}", "sum of the job hashes' 'stale'"),
        ("recovery latency p50", fmt_ms(r.latency(0.5)),
         f"worker kill -> re-start of each job it held ({len(r.latencies)} jobs)"),
        ("recovery latency p99", fmt_ms(r.latency(0.99)), ""),
        ("recovery latency max", fmt_ms(max(r.latencies, default=None)), "target <= 10 s"),
    ]
    if r.store_held is not None:
        rows.append(("history store", f"{r.store_matching:,}/{r.accepted:,}",
                     f"jobs held with their final status {ok(r.store_matching == r.accepted)}"))
    rows += [
        ("slowest submission", f"{r.producer.longest_wait:.1f} s",
         f"first try to acceptance of a batch; {r.producer.retried_batches} batches re-sent "
         "after an error"),
        ("Redis stalls >= 100 ms", fmt_stalls(r.stalls),
         "LATENCY LATEST since the restart: event max (latest)"),
        ("CPU saturated", f"{r.cpu_saturated:.0f} s", "seconds all cores were >= 95% busy"),
        ("run time", f"{r.seconds:.0f} s", f"{r.accepted / max(r.seconds, 1e-9):,.0f} jobs/s "
         f"submitted; {r.total_seconds:.0f} s with setup, drain and checks"),
    ]
    for row in rows:
        t.add_row(*row)
    return t


def faults_table(r: Report, t0: float) -> Table:
    t = Table(title="Faults")
    for col in ("at", "fault", "pid", "what happened"):
        t.add_column(col, justify="right" if col == "at" else "left")
    for f in r.faults:
        if not f.at:
            continue
        t.add_row(f"+{f.at - t0:.1f} s", f.kind, str(f.pid or ""), describe(f, r))
    return t


def describe(f: Fault, r: Report | None) -> str:
    d = f.detail
    if f.kind == "worker kill":
        return f"kill -9 holding {len(d.get('held', []))} leases; replaced"
    if f.kind == "redis restart":
        return (f"kill -9, restart on port {d.get('port')} with the same AOF "
                f"(appendfsync {d.get('appendfsync')}); answering again after {d.get('down_s')} s")
    if f.kind == "sigstop":
        cont = f", SIGCONT after {d['stopped_s']} s" if "stopped_s" in d else ""
        return f"SIGSTOP holding {d.get('held')} leases{cont}"
    if f.kind == "recorder kill":
        text = f"kill -9 with {d.get('pending_entries')} entries read, not acknowledged"
        if d.get("left_pending"):
            return f"{text}; {d['left_pending']} of them never taken over"
        if "taken_over_s" in d:
            return f"{text}; all taken over by a second recorder {d['taken_over_s']} s later"
        return f"{text}; a second recorder started"
    if f.kind == "producer kill":
        if "skipped" in d:
            return str(d["skipped"])
        if r is None:
            return f"kill -9, batch in flight: {d.get('batch_in_flight')}; replaced"
        res = r.resumed if r else {}
        resumed = (f"replacement resubmitted batch {res.get('batch')} ({res.get('jobs')} jobs, "
                   f"{res.get('already_in_redis')} already in Redis)" if res
                   else "no batch to resubmit")
        return f"kill -9, batch in flight: {d.get('batch_in_flight')}; {resumed}"
    return str(d)


# -- entry points --------------------------------------------------------------------------

@dataclass
class Outcome:
    report: Report
    t0: float
    workdir: Path

    def print(self, out: Console | None = None) -> None:
        out = out or Console(width=max(110, console.width))
        out.print(faults_table(self.report, self.t0))
        out.print(figures_table(self.report))
        for p in self.report.problems:
            out.print(f"[red]problem:[/red] {p}")


async def run_async(cfg: ChaosConfig) -> Outcome:
    started = time.monotonic()
    workdir = cfg.workdir or Path(tempfile.mkdtemp(prefix="conveyor-chaos-"))
    workdir.mkdir(parents=True, exist_ok=True)
    driver = Driver(cfg, workdir)
    try:
        await driver.setup()
        await driver.run()
        ev = await driver.evidence()
        ev.requeues = await driver.requeues(
            Checker(ev, driver.seed, cfg.fail_every).superseded_runs())
        report = Checker(ev, driver.seed, cfg.fail_every).check()
        (workdir / "faults.json").write_bytes(orjson.dumps(
            {"seed": driver.seed, "t0": driver.t0, "pid_wid": ev.pid_wid,
             "faults": [dataclasses.asdict(f) for f in driver.faults], "beats": ev.beats},
            option=orjson.OPT_NON_STR_KEYS | orjson.OPT_INDENT_2))
        if cfg.recorder:
            expected = Counter({"completed": report.completed, "dead": report.dead})
            await driver.wait_store(expected)
            ev.store = await asyncio.to_thread(store_statuses, driver.store_path)
            report = Checker(ev, driver.seed, cfg.fail_every).check()
    finally:
        await driver.close()
    report.total_seconds = time.monotonic() - started
    if report.ok and cfg.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    return Outcome(report, driver.t0, workdir)


def run_chaos(cfg: ChaosConfig) -> Outcome:
    """Run one chaos run to its end (every wait is bounded) and check it."""
    return asyncio.run(run_async(cfg))


def parse_args(argv: list[str] | None = None) -> ChaosConfig:
    p = argparse.ArgumentParser(prog="python -m chaos.run", description=__doc__.split("\n")[0])
    d = ChaosConfig()
    p.add_argument("--jobs", type=int, default=d.jobs)
    p.add_argument("--kills", type=int, default=d.kills, help="worker kill -9 faults")
    p.add_argument("--workers", type=int, default=d.workers)
    p.add_argument("--concurrency", type=int, default=d.concurrency)
    p.add_argument("--rate", type=float, default=d.rate, help="jobs submitted per second")
    p.add_argument("--job-ms", default=f"{d.job_ms[0]},{d.job_ms[1]}",
                   help="range of job durations in ms, e.g. 20,300")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--workdir", type=Path, default=None, help="kept (logs, AOF, history)")
    p.add_argument("--no-redis-restart", action="store_true")
    p.add_argument("--no-sigstop", action="store_true")
    p.add_argument("--no-recorder", action="store_true")
    p.add_argument("--no-producer-kill", action="store_true")
    a = p.parse_args(argv)
    lo, hi = (int(x) for x in a.job_ms.split(","))
    return ChaosConfig(
        jobs=a.jobs, kills=a.kills, workers=a.workers, concurrency=a.concurrency, rate=a.rate,
        job_ms=(lo, hi), seed=a.seed, workdir=a.workdir, redis_restart=not a.no_redis_restart,
        sigstop=not a.no_sigstop, recorder=not a.no_recorder,
        producer_kill=not a.no_producer_kill)


def main(argv: list[str] | None = None) -> int:
    setup_logging()  # one line per record off a terminal, rich on one
    cfg = parse_args(argv)
    outcome = run_chaos(cfg)
    outcome.print()
    if not outcome.report.ok:
        console.print(f"[red]chaos run failed[/red]; logs, AOF and history kept in "
                      f"{outcome.workdir}")
    return 0 if outcome.report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
