"""The test rig of tests/faults: a Redis under test, a ledger server no fault touches, real
``conveyor worker`` / ``conveyor scheduler`` processes of ``chaos.app:app``, and the counts
the assertions need.

Handlers of ``chaos.app`` record every execution in the ledger (``chaos:starts`` when a
``chaos_work`` handler starts, ``chaos:ticks`` for a cron job, ``chaos:stalls`` for a stall),
so executions are counted across processes whatever the Redis under test is going through.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
from chaos.app import CRON_QUEUE, LEDGER_ENV, QUEUE, STALLS, STARTS, TICKS
from chaos.producer import make_producer_app
from chaos.ticks import CronJob

from conveyor.broker.keys import Keys
from conveyor.embedded import RedisServer

ROOT = Path(__file__).resolve().parents[2]
KEYS = Keys("cv")
QK = KEYS.queue(QUEUE)
CK = KEYS.queue(CRON_QUEUE)
# Fast failure detection (tests/conftest.py FAST), with a lease long enough that no fault of
# these tests (3 s at most while the worker is up) makes a re-run necessary: every repeated
# execution is then a bug. A job longer than the lease shows that renewals still happen.
LEASE = 6.0
FAST: dict[str, float] = {
    "heartbeat_seconds": 0.2, "heartbeat_ttl_seconds": 1.0, "reap_seconds": 0.2,
    "renew_seconds": 0.5, "lease_seconds": LEASE, "block_seconds": 1.0,
    "backoff_base_seconds": 0.01, "backoff_cap_seconds": 0.05, "grace_seconds": 5.0,
}


def wait_for(condition: Callable[[], object], timeout: float, what: str,
             every: float = 0.05) -> object:
    """Poll a state other processes make true (no event crosses the process boundary)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = condition()
        except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError):
            value = None  # the server under test may be faulted right now
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")


class Rig:
    """Servers and processes of one test; ``close`` kills whatever is left."""

    def __init__(self, binary: str, folder: Path) -> None:
        self.folder = folder
        self.server = RedisServer(binary, folder / "redis", aof=True,
                                  extra=["--appendfsync", "always"]).start()
        self.ledger_server = RedisServer(binary, folder / "ledger", aof=False).start()
        self.r = redis.Redis.from_url(self.server.url, decode_responses=True, socket_timeout=10)
        self.led = redis.Redis.from_url(self.ledger_server.url, decode_responses=True)
        self.procs: list[tuple[subprocess.Popen[bytes], Path]] = []
        self.next_n = 0
        self.cleanups: list[Callable[[], object]] = []

    def on_close(self, cleanup: Callable[[], object]) -> None:
        self.cleanups.append(cleanup)

    # -- processes -------------------------------------------------------------------------

    def env(self, url: str, settings: dict[str, float]) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
        env.update({f"CONVEYOR_{k.upper()}": str(v) for k, v in settings.items()})
        env["CONVEYOR_REDIS_URL"] = url
        env[LEDGER_ENV] = self.ledger_server.url
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        return env

    def spawn(self, role: str, args: list[str], url: str | None,
              settings: dict[str, float]) -> subprocess.Popen[bytes]:
        log = self.folder / f"{role}-{len(self.procs)}.log"
        with log.open("ab") as sink:
            proc = subprocess.Popen(
                [sys.executable, "-m", "conveyor", role, "chaos.app:app", *args],
                env=self.env(url or self.server.url, settings), cwd=ROOT,
                stdout=sink, stderr=sink)
        self.procs.append((proc, log))
        return proc

    def worker(self, concurrency: int = 10, url: str | None = None,
               settings: dict[str, float] | None = None) -> tuple[subprocess.Popen[bytes], str]:
        """A worker of every chaos queue and its id, once its first heartbeat is in."""
        proc = self.spawn("worker", ["--concurrency", str(concurrency)], url,
                          FAST if settings is None else settings)
        return proc, self.worker_id(proc)

    def scheduler(self, settings: dict[str, float] | None = None) -> subprocess.Popen[bytes]:
        return self.spawn("scheduler", ["--no-history"], None,
                          FAST if settings is None else settings)

    def worker_id(self, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> str:
        def find() -> str | None:
            assert proc.poll() is None, f"pid {proc.pid} exited:\n{self.log(proc)}"
            for wid in self.r.zrange(KEYS.glob.workers, 0, -1):
                if self.r.hget(KEYS.glob.worker(wid), "pid") == str(proc.pid):
                    return str(wid)
            return None

        return str(wait_for(find, timeout, f"worker pid {proc.pid} to register"))

    def log(self, proc: subprocess.Popen[bytes], tail: int = 3000) -> str:
        text = next(log.read_text(errors="replace") for p, log in self.procs if p is proc)
        return text[-tail:]

    def assert_alive(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.poll() is None, (
            f"pid {proc.pid} exited with {proc.returncode}:\n{self.log(proc)}")

    def close(self) -> None:
        for cleanup in self.cleanups:
            cleanup()
        for proc, _ in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)
        self.r.close()
        self.led.close()
        self.server.kill()
        self.ledger_server.kill()

    # -- jobs ------------------------------------------------------------------------------

    def submit(self, count: int, ms: int = 200) -> list[str]:
        """Submit ``count`` chaos_work jobs of ``ms`` ms each; their ids, once accepted."""
        return self.submit_specs([self.work(ms) for _ in range(count)])

    def work(self, ms: int) -> dict[str, Any]:
        self.next_n += 1
        return {"type": "chaos_work", "args": {"n": self.next_n - 1, "ms": ms}}

    def submit_specs(self, specs: list[dict[str, Any]]) -> list[str]:
        """Submit jobs of ``chaos.app`` in one call; their ids, once Redis accepted them."""
        async def go() -> list[str]:
            app = make_producer_app(self.server.url, {})
            try:
                return [h.id for h in await app.enqueue_many(specs)]
            finally:
                await app.close()

        return asyncio.run(go())

    def statuses(self, ids: list[str], queue: str = QUEUE) -> Counter[str]:
        qk = KEYS.queue(queue)
        with self.r.pipeline(transaction=False) as pipe:
            for job in ids:
                pipe.hget(qk.job(job), "status")
            return Counter(str(s) for s in pipe.execute())

    def wait_ended(self, ids: list[str], timeout: float, *procs: subprocess.Popen[bytes],
                   queue: str = QUEUE) -> None:
        """Until every job is completed or dead; on a timeout the message says where they
        are and what the processes logged."""
        try:
            wait_for(lambda: set(self.statuses(ids, queue)) <= {"completed", "dead"}, timeout,
                     f"{len(ids)} jobs to end")
        except AssertionError as exc:
            logs = "\n".join(f"--- pid {p.pid} (exit {p.poll()}):\n{self.log(p)}" for p in procs)
            raise AssertionError(f"{exc}: {dict(self.statuses(ids, queue))}\n{logs}") from None

    def runs(self) -> Counter[str]:
        """Executions per chaos_work job (handler starts in the ledger)."""
        return Counter(line.split()[0] for line in self.led.lrange(STARTS, 0, -1))

    def tick_runs(self) -> Counter[str]:
        return Counter(line.split()[0] for line in self.led.lrange(TICKS, 0, -1))

    def stall_runs(self) -> list[list[str]]:
        return [line.split() for line in self.led.lrange(STALLS, 0, -1)]

    def assert_ran_once(self, ids: list[str]) -> None:
        runs = self.runs()
        twice = {job: n for job, n in runs.items() if job in set(ids) and n > 1}
        never = [job for job in ids if runs[job] == 0]
        assert not twice, f"{len(twice)} jobs ran more than once, e.g. {list(twice.items())[:5]}"
        assert not never, f"{len(never)} jobs never ran, e.g. {never[:5]}"
        assert self.statuses(ids) == Counter({"completed": len(ids)})

    def cron_jobs(self) -> list[CronJob]:
        """Every cron job in Redis, with the tick it stands for and its executions."""
        runs = self.tick_runs()
        out = []
        for key in self.r.scan_iter(match=f"{CK.job_prefix}*", count=1000):
            h = self.r.hgetall(key)
            if h.get("meta"):
                out.append(CronJob(h["id"], int(json.loads(h["meta"])["tick"]),
                                   int(h["created"]), h["status"], runs[h["id"]]))
        return out

    def requeued_since(self, ms: int) -> set[str]:
        """Jobs a reaper put back (a 'requeued' event) from Redis time ``ms`` on: the only
        ones a fault may have made run twice."""
        return {f["job"] for _, f in self.r.xrange(QK.events, min=f"{ms}-0")
                if f.get("event") == "requeued"}

    def assert_ran_once_but(self, ids: list[str], rerun: set[str]) -> None:
        """Each job ran once, except those in ``rerun``: at most twice."""
        runs = self.runs()
        extra = {j: runs[j] for j in ids if runs[j] > (2 if j in rerun else 1)}
        assert not extra, (f"{len(extra)} jobs ran more often than the fault explains "
                           f"(re-runs allowed for {len(rerun)}): {list(extra.items())[:5]}")
        assert all(runs[j] for j in ids), "a job never ran"
        assert self.statuses(ids) == Counter({"completed": len(ids)})

    def redis_ms(self) -> int:
        seconds, micros = self.r.time()
        return int(seconds) * 1000 + int(micros) // 1000

    def heartbeat_age_ms(self, wid: str) -> float:
        """How old the worker's last heartbeat is, by the Redis clock."""
        seconds, micros = self.r.time()
        beat = self.r.zscore(KEYS.glob.workers, wid)
        return float("inf") if beat is None else seconds * 1000 + micros / 1000 - beat

    def assert_heartbeats(self, wid: str, proc: subprocess.Popen[bytes]) -> None:
        """The worker's heartbeat lands again (its liveness loop outlived the fault)."""
        ttl_ms = FAST["heartbeat_ttl_seconds"] * 1000
        try:
            wait_for(lambda: self.heartbeat_age_ms(wid) < ttl_ms / 2, 5, "a fresh heartbeat")
        except AssertionError:
            raise AssertionError(f"worker {wid} beats no more (last one "
                                 f"{self.heartbeat_age_ms(wid):.0f} ms old):\n"
                                 f"{self.log(proc)}") from None

    def last_tick(self) -> int:
        return int(self.r.hget(f"{KEYS.glob.schedules}-ticks", "chaos_tick") or 0)
