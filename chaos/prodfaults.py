"""The production-fault run: the faults production Redis deployments actually have, while
jobs flow and a per-second cron job ticks, with production (default) liveness settings.

    python -m chaos.prodfaults                       # the long run (part of make chaos)
    python -m chaos.prodfaults --short               # about the CI tier

What runs, all on 127.0.0.1: the Redis under test (AOF, ``appendfsync always``), the ledger
(never faulted), a TCP proxy (``tests.faults.proxy``) between the workers and Redis, two
workers (``conveyor worker chaos.app:app``, default liveness: heartbeat 1 s, dead after 5 s,
lease 30 s) through the proxy, a scheduler (``conveyor scheduler chaos.app:app``, direct)
running the per-second cron job ``chaos_tick``, and the driver's producer (direct).

Faults, one after the other with normal running between them (``chaos.redis_faults``):
an outage longer than every client retry window (SIGTERM, down, restart on the same AOF),
an OOM window, READONLY (the server turned replica and back, no write lost), BUSY (a script
past the busy threshold, then SCRIPT KILL), LOADING (a restart on a slow-loading dataset),
MISCONF (a snapshot that failed, as on a full disk: writes refused until one succeeds), an
event-loop stall (``time.sleep`` in an async handler), a paused network path, and connection
resets. The checker is chaos.run's (lost = 0, every duplicate attributed to a fault) plus the
rules of this run: no poison pill and no duplicate from the stall (no worker dies here), the
stall job ran once, and every cron tick is accounted for (``chaos.ticks``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import math
import os
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from redis.exceptions import RedisError
from rich.console import Console
from rich.table import Table
from tests.faults.proxy import ProxyProcess

from chaos import redis_faults
from chaos.app import CRON_QUEUE, STALL_QUEUE, STALL_TYPE, STALLS, TICKS
from chaos.producer import ACCEPTED, ProducerStats, make_producer_app, pace
from chaos.run import (
    KEYS,
    ChaosConfig,
    Checker,
    Driver,
    Evidence,
    Execution,
    Fault,
    Report,
    console,
    lrange_all,
    poll,
)
from chaos.ticks import CronJob, TickReport, account
from conveyor import Conveyor
from conveyor.job import NewJob
from conveyor.logs import setup_logging

log = logging.getLogger("chaos.prodfaults")

# Production liveness (conveyor.settings defaults); only retry backoff is fast, so the
# by-design failures end within the run.
SETTINGS: dict[str, float] = {"backoff_base_seconds": 0.05, "backoff_cap_seconds": 0.2}
HEARTBEAT_TTL = 5.0  # the default
# A reaper may requeue a lease up to a heartbeat TTL (+ its period and a reconnect) after a
# fault ends: the fault is still the cause.
AFTERMATH = HEARTBEAT_TTL + 3.0
REFIRE_S = 8.0  # cron must fire again this soon after Redis is back
REDIS_SIDE = ("outage", "oom", "readonly", "busy", "loading", "misconf")
MUST_BE_ZERO = ("stall",)  # a live worker is never judged dead: no duplicates from these


@dataclass
class ProdConfig(ChaosConfig):
    """Durations of the faults, in seconds; ``gap`` of normal running between them."""

    jobs: int = 0  # as many as ``rate`` gives over the run
    kills: int = 0
    workers: int = 2
    rate: float = 100.0
    batch: int = 50
    redis_restart: bool = False
    sigstop: bool = False
    recorder: bool = False
    producer_kill: bool = False
    gap: float = 5.0
    outage: float = 30.0
    oom: float = 8.0
    readonly: float = 8.0
    busy: float = 4.0  # the heartbeat TTL is 5 s: a longer BUSY is a (real) silence
    loading: float = 4.0
    misconf: float = 8.0
    stall: float = 8.0
    pause: float = 8.0
    cuts: int = 5
    faults: tuple[str, ...] = ("outage", "oom", "readonly", "busy", "loading", "misconf",
                               "stall", "pause", "cut")
    tail: float = 6.0  # normal running after the last fault (cron ticks, the last jobs)


def short_config(**overrides: Any) -> ProdConfig:
    """The CI tier: every fault, the outage still past every retry window."""
    values: dict[str, Any] = {"gap": 2.0, "outage": 12.0, "oom": 3.0, "readonly": 3.0,
                              "busy": 3.0, "loading": 2.5, "misconf": 3.0, "stall": 8.0,
                              "pause": 6.0,
                              "cuts": 3, "tail": 4.0, "rate": 80.0}
    return ProdConfig(**{**values, **overrides})


@dataclass
class ProdReport:
    base: Report
    ticks: TickReport
    stall_runs: int = 0
    stall_status: str | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.base.ok and self.ticks.ok and not self.problems


class ProdDriver(Driver):
    """chaos.run's driver with a proxy, a scheduler, production settings and these faults."""

    def __init__(self, cfg: ProdConfig, workdir: Path) -> None:
        super().__init__(cfg, workdir)
        self.pcfg = cfg
        self.proxy = ProxyProcess(0, workdir / "proxy.log")
        self.scheduler_proc: Any = None
        self.stall_id: str | None = None
        self.produced = 0
        self.direct = False  # spawn with the Redis URL itself instead of the proxy's

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in super().env().items() if not k.startswith("CONVEYOR_")}
        env.update({f"CONVEYOR_{k.upper()}": str(v) for k, v in SETTINGS.items()})
        # Workers reach Redis through the proxy.
        env["CONVEYOR_REDIS_URL"] = self.redis_server.url if self.direct else self.proxy.url
        env["CONVEYOR_EVENTS_MAXLEN"] = str(self.events_maxlen)
        return env

    async def setup(self) -> None:
        self.ledger_server.start()
        self.redis_server.start(timeout=60)
        self.proxy.target_port = self.redis_server.port
        self.proxy.start()
        from conveyor.connect import make_redis

        self.redis = make_redis(self.redis_server.url)
        self.ledger = make_redis(self.ledger_server.url)
        for proc in [self.start_worker() for _ in range(self.cfg.workers)]:
            await self.worker_id(proc)
        # The scheduler talks to Redis directly (the proxy's faults are the workers').
        self.direct = True
        try:
            self.scheduler_proc = self.spawn("scheduler", [
                "conveyor", "scheduler", "chaos.app:app", "--no-history"])
        finally:
            self.direct = False
        await poll(self.ticked, 30, "the cron job to run")

    async def ticked(self) -> bool:
        return bool(await self.ledger.llen(TICKS))

    # -- the run -----------------------------------------------------------------------------

    async def run(self) -> None:
        cfg = self.pcfg
        self.faults = [Fault(kind, 0.0) for kind in cfg.faults]
        log.info(f"seed {self.seed}; {cfg.rate:g} jobs/s; faults "
                    f"{', '.join(cfg.faults)}; workdir {self.workdir}")
        self.t0 = time.time() + 0.2
        stop = asyncio.Event()
        app = make_producer_app(self.redis_server.url, {"events_maxlen": self.events_maxlen})
        tasks = [asyncio.create_task(self.produce(app, stop), name="producer"),
                 asyncio.create_task(self.sample_cpu()),
                 asyncio.create_task(self.sample_heartbeats())]
        try:
            await self.inject_all()
            await asyncio.sleep(cfg.tail)  # normal running after the last fault
            stop.set()
            await asyncio.wait_for(tasks[0], 300)
            self.t_end = time.time()
            log.info(f"{self.produced} jobs in {self.t_end - self.t0:.1f} s; "
                        "draining")
            await self.stop_scheduler()
            await self.drain()
            await self.drain_queue(CRON_QUEUE)
            await self.drain_queue(STALL_QUEUE)
        finally:
            from conveyor.worker.worker import cancel_all

            await cancel_all(tasks)
            await app.close()

    async def produce(self, app: Conveyor, stop: asyncio.Event) -> None:
        """Batches at the rate until ``stop``; a refused batch (connection lost, or an error
        reply: OOM, READONLY, BUSY, LOADING) is sent again unchanged (same ids)."""
        cfg = self.pcfg
        while not stop.is_set():
            first = self.produced
            jobs = [await app.prepare(self.spec(n)) for n in range(first, first + cfg.batch)]
            ids = await submit_through_errors(app, jobs, self.stats)
            await self.ledger.rpush(ACCEPTED, *ids)
            self.produced += len(ids)
            self.stats.batches += 1
            self.stats.accepted += len(ids)
            await pace(self.t0, self.produced, cfg.rate)

    async def inject_all(self) -> None:
        actions: dict[str, Callable[[Fault], Awaitable[None]]] = {
            "outage": self.outage, "oom": self.redis_side, "readonly": self.redis_side,
            "busy": self.redis_side, "loading": self.redis_side, "misconf": self.redis_side,
            "stall": self.stall,
            "pause": self.pause, "cut": self.cut}
        for fault in self.faults:
            await asyncio.sleep(self.pcfg.gap)  # normal running between faults
            fault.planned = time.time() - self.t0
            fault.at = time.time()
            await actions[fault.kind](fault)
            fault.until = fault.until or time.time()
            log.info(f"fault: {fault.kind} at +{fault.at - self.t0:.1f} s for "
                        f"{fault.until - fault.at:.1f} s: {describe(fault)}")

    async def outage(self, fault: Fault) -> None:
        assert self.redis_server.proc is not None
        fault.pid = self.redis_server.proc.pid
        down = await asyncio.to_thread(redis_faults.outage, self.redis_server, self.pcfg.outage)
        fault.detail = {"down_s": round(down, 2), "port": self.redis_server.port}

    async def redis_side(self, fault: Fault) -> None:
        c, server = self.pcfg, self.redis_server
        calls: dict[str, Callable[[], Any]] = {
            "oom": lambda: redis_faults.oom(server, c.oom),
            "readonly": lambda: redis_faults.readonly(server, c.readonly),
            "busy": lambda: redis_faults.busy(server, c.busy),
            "loading": lambda: redis_faults.loading(server, c.loading),
            "misconf": lambda: redis_faults.misconf(server, c.misconf),
        }
        result = await asyncio.to_thread(calls[fault.kind])
        fault.detail = {"result": result}

    async def stall(self, fault: Fault) -> None:
        """A job that blocks its worker's event loop; the fault lasts until it returned."""
        app = make_producer_app(self.redis_server.url, {})
        try:
            (handle,) = await app.enqueue_many(
                [{"type": STALL_TYPE, "args": {"seconds": self.pcfg.stall}}])
        finally:
            await app.close()
        self.stall_id = handle.id
        fault.detail = {"job": handle.id, "blocked_s": None}
        with contextlib.suppress(AssertionError):  # the checker says what never ran
            await poll(self.stalled_once, self.pcfg.stall + 30, "the stall job to return")
        fault.until = time.time()
        for line in await self.ledger.lrange(STALLS, 0, 0):
            run = line.split()
            fault.pid = int(run[2])
            fault.detail["blocked_s"] = round(float(run[4]) - float(run[3]), 1)

    async def stalled_once(self) -> bool:
        return bool(await self.ledger.llen(STALLS))

    async def pause(self, fault: Fault) -> None:
        fault.pid = self.proxy.proc.pid if self.proxy.proc else None
        await asyncio.to_thread(self.proxy.pause)
        await asyncio.sleep(self.pcfg.pause)  # the fault itself
        await asyncio.to_thread(self.proxy.resume)
        fault.until = time.time()

    async def cut(self, fault: Fault) -> None:
        fault.pid = self.proxy.proc.pid if self.proxy.proc else None
        reset = 0
        for _ in range(self.pcfg.cuts):
            reset += await asyncio.to_thread(self.proxy.cut)
            await asyncio.sleep(0.7)  # connections reset over and over while jobs flow
        fault.detail = {"cuts": self.pcfg.cuts, "connections_reset": reset}

    async def stop_scheduler(self) -> None:
        proc = self.scheduler_proc
        if proc is not None and proc.alive():
            proc.popen.send_signal(signal.SIGTERM)
            await asyncio.to_thread(proc.popen.wait, 30)

    async def drain_queue(self, queue: str) -> None:
        qk = KEYS.queue(queue)

        async def idle() -> bool:
            async with self.redis.pipeline(transaction=False) as pipe:
                for key in qk.ready_all:
                    pipe.llen(key)
                pipe.zcard(qk.active)
                pipe.zcard(qk.delayed)
                return sum(await pipe.execute()) == 0

        with contextlib.suppress(AssertionError):
            await poll(idle, self.cfg.drain_timeout, f"queue {queue} to drain")

    async def close(self) -> None:
        await super().close()
        self.proxy.stop()

    # -- evidence ----------------------------------------------------------------------------

    async def cron_jobs(self) -> list[CronJob]:
        qk = KEYS.queue(CRON_QUEUE)
        runs: dict[str, int] = {}
        for line in await lrange_all(self.ledger, TICKS):
            job = line.split()[0]
            runs[job] = runs.get(job, 0) + 1
        out = []
        async for key in self.redis.scan_iter(match=f"{qk.job_prefix}*", count=1000):
            h = await self.redis.hgetall(key)
            if h.get("meta"):
                out.append(CronJob(h["id"], int(orjson.loads(h["meta"])["tick"]),
                                   int(h["created"]), h["status"], runs.get(h["id"], 0)))
        return out

    async def explained_reruns(self, ids: list[str]) -> frozenset[str]:
        """Cron jobs run more than once whose lease a reaper requeued during a fault (or
        its aftermath), as for every other job."""
        if not ids:
            return frozenset()
        windows = [(f.at * 1000, ((f.until or f.at) + AFTERMATH) * 1000)
                   for f in self.faults if f.at]
        wanted, out = set(ids), set()
        for entry_id, f in await self.redis.xrange(KEYS.queue(CRON_QUEUE).events):
            at = int(entry_id.split("-")[0])
            if (f.get("event") == "requeued" and f.get("job") in wanted
                    and any(lo <= at <= hi for lo, hi in windows)):
                out.add(f["job"])
        return frozenset(out)

    async def stall_outcome(self) -> tuple[int, str | None]:
        runs = len(await self.ledger.lrange(STALLS, 0, -1))
        status = None
        if self.stall_id:
            status = await self.redis.hget(KEYS.queue(STALL_QUEUE).job(self.stall_id), "status")
        return runs, status


async def submit_through_errors(
    app: Conveyor, jobs: list[NewJob], stats: ProducerStats, give_up_after: float = 180.0
) -> list[str]:
    """Like chaos.producer.submit_until_accepted, also through error replies: an API in
    front of Redis answers 503 to those and its client sends the same jobs again."""
    first = time.monotonic()
    delay, tries = 0.05, 0
    while True:
        tries += 1
        try:
            handles = await asyncio.wait_for(app.submit_prepared(jobs), 15.0)
        except (RedisError, OSError, TimeoutError) as exc:
            stats.failed_attempts += 1
            if time.monotonic() - first > give_up_after:
                raise RuntimeError(f"Redis refused a batch for {give_up_after}s: {exc}") from exc
            await asyncio.sleep(delay)  # back off, then the same batch again
            delay = min(delay * 2, 1.0)
            continue
        stats.longest_wait = max(stats.longest_wait, time.monotonic() - first)
        stats.retried_batches += tries > 1
        return [h.id for h in handles]


# -- the checker ---------------------------------------------------------------------------

class ProdChecker(Checker):
    """chaos.run's rules, with duplicates attributed to the faults of this run."""

    def attribute(self, e: Execution) -> str | None:
        wid = self.ev.pid_wid.get(e.pid)
        requeue = self.ev.requeues.get((e.job, e.attempt))
        if wid is None or requeue is None or requeue[1] != wid:
            return None
        at = requeue[0] / 1000
        # The latest fault that began before the requeue and whose aftermath covers it.
        for f in sorted((f for f in self.ev.faults if f.at), key=lambda f: -f.at):
            if f.at <= at <= (f.until or math.inf) + AFTERMATH:
                return f.kind
        if self.starved(wid, requeue[0]):
            return "starved worker"
        return None


    def silences(self) -> None:
        """The longest a worker's heartbeat was seen old outside the faults (and their
        aftermath)."""
        windows = [(f.at, (f.until or math.inf) + 2) for f in self.ev.faults if f.at]
        for samples in self.ev.beats.values():
            for t, age in samples:
                if not any(lo * 1000 <= t <= hi * 1000 for lo, hi in windows):
                    self.report.max_silence_ms = max(self.report.max_silence_ms, age)


def judge(base: Report, ticks: TickReport, stall: tuple[int, str | None] | None) -> ProdReport:
    """``stall``: (runs, status) of the stall job, None when the run had no stall."""
    r = ProdReport(base, ticks, *(stall or (0, None)))
    for kind in MUST_BE_ZERO:
        if base.attributed[kind]:
            r.problems.append(f"{base.attributed[kind]} duplicate executions from the {kind}: "
                              "a live worker was judged dead")
    if base.dead_poison:
        r.problems.append(f"{base.dead_poison} poison pills, though no worker died")
    if stall is not None and stall != (1, "completed"):
        r.problems.append(f"the stall job ran {stall[0]} times and is {stall[1]}")
    return r


def fault_windows(faults: list[Fault]) -> list[tuple[int, int]]:
    """(start, end) in ms of the faults during which the scheduler could not write."""
    return [(int(f.at * 1000), int((f.until or f.at) * 1000)) for f in faults
            if f.kind in REDIS_SIDE and f.at]


# -- output --------------------------------------------------------------------------------

def describe(f: Fault) -> str:
    d = f.detail
    text = {
        "outage": f"SIGTERM, down {d.get('down_s')} s, restart on port {d.get('port')} "
                  "with the same AOF",
        "oom": f"maxmemory {d.get('result')} bytes (below the memory in use), noeviction",
        "readonly": "turned into a replica of its own synced copy (PSYNC), then primary again",
        "busy": "a script looping past busy-reply-threshold (100 ms), then SCRIPT KILL",
        "loading": f"restart on a slow-loading AOF: not answering for {d.get('result') or 0:.1f} s",
        "misconf": "a snapshot child killed (SIGKILL): MISCONF to every write until a "
                   "snapshot succeeded",
        "stall": f"job {d.get('job', '')[:8]}: time.sleep in an async handler, " + (
            f"loop blocked {d['blocked_s']} s" if d.get("blocked_s") else "never ran"),
        "pause": "proxy stops forwarding, sockets open",
        "cut": f"{d.get('cuts')} resets of every proxied connection "
               f"({d.get('connections_reset')} connections)",
    }
    return text.get(f.kind, str(d))


def faults_table(faults: list[Fault], t0: float) -> Table:
    t = Table(title="Production faults")
    for col in ("at", "fault", "lasted", "what happened"):
        t.add_column(col, justify="right" if col in ("at", "lasted") else "left")
    for f in faults:
        if f.at:
            t.add_row(f"+{f.at - t0:.1f} s", f.kind, f"{(f.until or f.at) - f.at:.1f} s",
                      describe(f))
    return t


def ok(good: bool) -> str:
    return "[green]ok[/green]" if good else "[red]FAIL[/red]"


def figures_table(p: ProdReport, kinds: tuple[str, ...]) -> Table:
    r, tk = p.base, p.ticks
    t = Table(title=f"Production-fault run (seed {r.seed}): {'PASS' if p.ok else 'FAIL'}")
    for col in ("figure", "value", "rule / note"):
        t.add_column(col, justify="right" if col == "value" else "left")
    rows = [
        ("accepted", f"{r.accepted:,}", "acknowledged by Redis to the producer"),
        ("completed", f"{r.completed:,}", ""),
        ("dead", f"{r.dead:,}", f"{r.dead_by_design} by design, {r.dead_poison} poison pills "
         f"{ok(not r.dead_poison)}, {r.dead_other} other {ok(not r.dead_other)}"),
        ("lost", f"{len(r.lost)}", f"accepted, neither completed nor dead: must be 0 "
         f"{ok(not r.lost)}"),
        ("submitted twice", f"{r.doubled}", f"must be 0 {ok(not r.doubled)}"),
        ("executions", f"{r.executions:,}", "handler starts in the ledger"),
        ("duplicate executions", f"{r.duplicates:,}", "runs whose outcome Redis did not take"),
    ]
    for kind in (*kinds, "starved worker"):
        rule = f"must be 0 {ok(not r.attributed[kind])}" if kind in MUST_BE_ZERO else (
            f"lease requeued from the fault to {AFTERMATH:g} s after it")
        rows.append((f"  {kind}", f"{r.attributed[kind]:,}", rule))
    rows.append(("  unattributed", f"{len(r.unattributed)}",
                 f"must be 0 {ok(not r.unattributed)}"))
    if "stall" in kinds:
        rows.append(("stall job", f"{p.stall_runs} run(s)", f"{p.stall_status}: must be 1 "
                     f"run, completed {ok((p.stall_runs, p.stall_status) == (1, 'completed'))}"))
    rows += [
        ("cron ticks", f"{tk.ticks:,}", f"{tk.fired} fired once, {tk.coalesced} missed in an "
         "outage and coalesced (misfire once)"),
        ("  fired twice", f"{len(tk.doubled)}", f"must be 0 {ok(not tk.doubled)}"),
        ("  unaccounted", f"{len(tk.unexplained)}", f"must be 0 {ok(not tk.unexplained)}"),
        ("  not run once", f"{len(tk.bad_runs)}", f"cron jobs not completed, or run again "
         f"with no fault to explain it: must be 0 {ok(not tk.bad_runs)}; {tk.reruns} run "
         "again after a fault requeued them"),
        ("  refire after fault", refires(tk), f"Redis back -> next cron fire, each <= "
         f"{REFIRE_S:g} s {ok(all(s is not None and s <= REFIRE_S for s in tk.refire_s))}"),
        ("stale completions rejected", f"{r.stale:,}", "sum of the job hashes' 'stale'"),
        ("longest heartbeat silence", f"{r.max_silence_ms:,} ms", "of a worker (TTL 5,000 ms)"),
        ("slowest submission", f"{r.producer.longest_wait:.1f} s",
         f"first try to acceptance; {r.producer.retried_batches} batches re-sent"),
        ("CPU saturated", f"{r.cpu_saturated:.0f} s", "seconds all cores were >= 95% busy"),
        ("run time", f"{r.seconds:.0f} s", f"{r.total_seconds:.0f} s with setup and checks"),
    ]
    for row in rows:
        t.add_row(*row)
    return t


def refires(tk: TickReport) -> str:
    return ", ".join("never" if s is None else f"{s:.1f}" for s in tk.refire_s) or "-"


@dataclass
class ProdOutcome:
    report: ProdReport
    faults: list[Fault]
    kinds: tuple[str, ...]
    t0: float
    workdir: Path

    def print(self, out: Console | None = None) -> None:
        out = out or Console(width=max(110, console.width))
        out.print(faults_table(self.faults, self.t0))
        out.print(figures_table(self.report, self.kinds))
        for problem in [*self.report.base.problems, *self.report.ticks.problems,
                        *self.report.problems]:
            out.print(f"[red]problem:[/red] {problem}")


async def run_async(cfg: ProdConfig) -> ProdOutcome:
    started = time.monotonic()
    workdir = cfg.workdir or Path(tempfile.mkdtemp(prefix="conveyor-prodfaults-"))
    workdir.mkdir(parents=True, exist_ok=True)
    driver = ProdDriver(cfg, workdir)
    try:
        await driver.setup()
        await driver.run()
        report = await check(driver)
    finally:
        await driver.close()
    report.base.total_seconds = time.monotonic() - started
    if report.ok and cfg.workdir is None:
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)
    return ProdOutcome(report, driver.faults, cfg.faults, driver.t0, workdir)


async def check(driver: ProdDriver) -> ProdReport:
    ev: Evidence = await driver.evidence()
    # A lease of a job that ended just as Redis went away is requeued after it is back.
    longest = max(driver.pcfg.outage, driver.pcfg.pause, driver.pcfg.stall)
    ev.requeues = await driver.requeues(
        ProdChecker(ev, driver.seed, driver.cfg.fail_every).superseded_runs(),
        after_ms=int((longest + AFTERMATH + 10) * 1000))
    base = ProdChecker(ev, driver.seed, driver.cfg.fail_every).check()
    cron = await driver.cron_jobs()
    rerun_ok = await driver.explained_reruns([j.id for j in cron if j.runs > 1])
    ticks = account(cron, fault_windows(driver.faults), REFIRE_S, rerun_ok)
    stall = await driver.stall_outcome() if "stall" in driver.pcfg.faults else None
    report = judge(base, ticks, stall)
    (driver.workdir / "faults.json").write_bytes(orjson.dumps(
        {"seed": driver.seed, "t0": driver.t0, "pid_wid": ev.pid_wid,
         "faults": [dataclasses.asdict(f) for f in driver.faults],
         "ticks": dataclasses.asdict(ticks)},
        option=orjson.OPT_NON_STR_KEYS | orjson.OPT_INDENT_2, default=str))
    return report


def run_prodfaults(cfg: ProdConfig) -> ProdOutcome:
    return asyncio.run(run_async(cfg))


def parse_args(argv: list[str] | None = None) -> ProdConfig:
    p = argparse.ArgumentParser(prog="python -m chaos.prodfaults",
                                description=__doc__.split("\n")[0])
    p.add_argument("--short", action="store_true", help="the CI tier's durations")
    p.add_argument("--faults", default=None,
                   help="comma-separated subset, in order (default: all)")
    p.add_argument("--rate", type=float, default=None, help="jobs submitted per second")
    p.add_argument("--outage", type=float, default=None, help="seconds Redis stays down")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--workdir", type=Path, default=None, help="kept (logs, AOF, faults.json)")
    a = p.parse_args(argv)
    overrides: dict[str, Any] = {"seed": a.seed, "workdir": a.workdir}
    if a.faults:
        overrides["faults"] = tuple(a.faults.split(","))
    for name in ("rate", "outage"):
        if getattr(a, name) is not None:
            overrides[name] = getattr(a, name)
    return short_config(**overrides) if a.short else ProdConfig(**overrides)


def main(argv: list[str] | None = None) -> int:
    setup_logging()  # one line per record off a terminal, rich on one
    outcome = run_prodfaults(parse_args(argv))
    outcome.print()
    if not outcome.report.ok:
        console.print(f"[red]production-fault run failed[/red]; logs and AOF kept in "
                      f"{outcome.workdir}")
    return 0 if outcome.report.ok else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
