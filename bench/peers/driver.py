"""One system's producer side of the core table, run in its own process:

    bench/.venv-peers/bin/python bench/peers/driver.py huey --url redis://127.0.0.1:PORT/0

prints one JSON object: single and bulk enqueue rates, the drain rate of one worker process
and the pickup latencies of an idle worker. Each phase starts on an empty Redis (FLUSHALL).

Every system is driven through its documented API; the worker is its own documented command
line (``huey_consumer``, ``dramatiq``, ``rq worker``; Conveyor's in ``bench/core.py``).
Drains and pickups are timed by ``stamp`` jobs (``stamps.py``): a drain runs from the start
of its first job to the start of its last (all queues here are FIFO lists), so worker start-up
is not counted for anyone.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
STAMPS = "bench:stamps"


class Driver:
    """What a system must do for the phases; peers are synchronous."""

    name = ""

    def __init__(self, url: str) -> None:
        self.url = url
        self.redis = redis.Redis.from_url(url, socket_timeout=None)  # BLPOP waits longer

    # -- to implement ---------------------------------------------------------------------
    def single(self, n: int) -> float:
        """Enqueue ``n`` no-op jobs one call each; the seconds it took."""
        raise NotImplementedError

    def bulk(self, n: int, batch: int) -> float:
        raise NotImplementedError

    def stamp(self, tag: str) -> None:
        raise NotImplementedError

    def worker_cmd(self, concurrency: int) -> list[str]:
        raise NotImplementedError

    # -- shared -----------------------------------------------------------------------------
    def fresh(self) -> None:
        self.redis.flushall()

    def remaining(self) -> int | None:
        """Jobs still waiting in the queue, where the system says (a drain over budget)."""
        return None

    def enqueue_drain(self, n: int) -> None:
        """A start stamp, n - 2 no-ops through the bulk path, an end stamp (untimed)."""
        self.stamp("start")
        self.bulk(n - 2, 1000)
        self.stamp("end")

    def start_worker(self, concurrency: int) -> subprocess.Popen[bytes]:
        env = {**os.environ, "BENCH_REDIS_URL": self.url,
               "PYTHONPATH": os.pathsep.join([str(HERE), str(HERE.parent.parent),
                                             str(HERE.parent.parent / "src")])}
        # its tail is printed if a phase fails; closed with the driver
        self.worker_log = tempfile.TemporaryFile()  # noqa: SIM115
        return subprocess.Popen(self.worker_cmd(concurrency), env=env, cwd=HERE,
                                stdout=subprocess.DEVNULL, stderr=self.worker_log,
                                start_new_session=True)

    def failed(self, phase: str) -> float:
        self.worker_log.seek(0)
        tail = self.worker_log.read()[-1500:].decode(errors="replace")
        print(f"{self.name} {phase}: no stamp in time; worker's stderr:\n{tail}",
              file=sys.stderr)
        return float("nan")

    def wait_stamp(self, timeout: float) -> tuple[str, float] | None:
        got = self.redis.blpop([STAMPS], timeout=timeout)
        if got is None:
            return None
        tag, at = got[1].decode().split()
        return tag, float(at)

    def drain(self, n: int, concurrency: int, budget: float) -> float:
        self.fresh()
        self.enqueue_drain(n)
        worker = self.start_worker(concurrency)
        try:
            start = self.wait_stamp(60)
            end = self.wait_stamp(budget)
            if start is not None and end is None and self.remaining() is not None:
                # Slower than the budget: the rate so far, from what is left in the queue.
                done = n - 1 - (self.remaining() or 0)
                return done / (time.time() - start[1])
            if start is None or end is None:
                return self.failed("drain")
            return (n - 1) / (end[1] - start[1])
        finally:
            stop(worker)

    def pickup(self, n: int, gap: float, budget: float) -> list[float]:
        """Latencies (ms) from just before the enqueue call to the handler's start, an idle
        worker, one job at a time with ``gap`` seconds between (a sparse stream)."""
        self.fresh()
        worker = self.start_worker(10)
        latencies: list[float] = []
        try:
            self.stamp("ready")
            if self.wait_stamp(60) is None:
                self.failed("pickup")
                return latencies
            deadline = time.monotonic() + budget
            while len(latencies) < n and time.monotonic() < deadline:
                time.sleep(gap)
                sent = time.time()
                self.stamp("p")
                got = self.wait_stamp(10)
                if got is None:
                    break
                latencies.append((got[1] - sent) * 1000)
            return latencies
        finally:
            stop(worker)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the worker's process group (dramatiq forks), SIGKILL after 10 s."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


class Huey(Driver):
    name = "huey"

    def __init__(self, url: str) -> None:
        super().__init__(url)
        os.environ["BENCH_REDIS_URL"] = url
        import huey_app

        self.app = huey_app

    def single(self, n: int) -> float:
        noop = self.app.noop
        start = time.perf_counter()
        for _ in range(n):
            noop()
        return time.perf_counter() - start

    def bulk(self, n: int, batch: int) -> float:
        start = time.perf_counter()
        for _ in range(n // batch):
            self.app.noop.map([()] * batch)
        self.app.noop.map([()] * (n % batch))
        return time.perf_counter() - start

    def stamp(self, tag: str) -> None:
        self.app.stamp(tag)

    def worker_cmd(self, concurrency: int) -> list[str]:
        return [str(BIN / "huey_consumer"), "huey_app.huey", "-k", "thread", "-w",
                str(min(concurrency, 8)), "-q"]


class Dramatiq(Driver):
    name = "dramatiq"

    def __init__(self, url: str) -> None:
        super().__init__(url)
        os.environ["BENCH_REDIS_URL"] = url
        import dramatiq_app

        self.app = dramatiq_app

    def single(self, n: int) -> float:
        send = self.app.noop.send
        start = time.perf_counter()
        for _ in range(n):
            send()
        return time.perf_counter() - start

    def bulk(self, n: int, batch: int) -> float:
        import dramatiq

        start = time.perf_counter()
        for size in [batch] * (n // batch) + [n % batch]:
            if size:
                dramatiq.group([self.app.noop.message() for _ in range(size)]).run()
        return time.perf_counter() - start

    def stamp(self, tag: str) -> None:
        self.app.stamp.send(tag)

    def worker_cmd(self, concurrency: int) -> list[str]:
        return [str(BIN / "dramatiq"), "dramatiq_app", "--processes", "1", "--threads",
                str(min(concurrency, 8))]


class Rq(Driver):
    name = "rq"

    def __init__(self, url: str) -> None:
        super().__init__(url)
        import rq_app
        from rq import Queue

        self.app = rq_app
        self.queue = Queue("bench", connection=self.redis)

    def single(self, n: int) -> float:
        enqueue, noop = self.queue.enqueue, self.app.noop
        start = time.perf_counter()
        for _ in range(n):
            enqueue(noop)
        return time.perf_counter() - start

    def bulk(self, n: int, batch: int) -> float:
        from rq import Queue

        start = time.perf_counter()
        for size in [batch] * (n // batch) + [n % batch]:
            if size:
                with self.redis.pipeline() as pipe:
                    self.queue.enqueue_many([Queue.prepare_data(self.app.noop)
                                             for _ in range(size)], pipeline=pipe)
                    pipe.execute()
        return time.perf_counter() - start

    def stamp(self, tag: str) -> None:
        self.queue.enqueue(self.app.stamp, tag)

    def remaining(self) -> int | None:
        return int(self.queue.count)

    def worker_cmd(self, concurrency: int) -> list[str]:
        # SimpleWorker runs jobs in the worker process: rq's fastest documented worker (the
        # default Worker forks a process per job).
        return [str(BIN / "rq"), "worker", "--url", self.url, "--worker-class",
                "rq.worker.SimpleWorker", "-q", "bench"]


PEERS: dict[str, type[Driver]] = {"huey": Huey, "dramatiq": Dramatiq, "rq": Rq}


def measure(driver: Driver, args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"system": driver.name}
    driver.fresh()
    out["single"] = args.single / driver.single(args.single)
    driver.fresh()
    out["bulk"] = args.bulk / driver.bulk(args.bulk, args.batch)
    out["drain"] = driver.drain(args.drain, args.concurrency, args.budget)
    latencies = driver.pickup(args.pickups, args.gap, args.budget)
    out["pickup"] = latencies
    driver.fresh()
    return out


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("system")
    p.add_argument("--url", required=True)
    p.add_argument("--single", type=int, default=20_000, help="jobs enqueued one per call")
    p.add_argument("--bulk", type=int, default=20_000, help="jobs enqueued in batches")
    p.add_argument("--batch", type=int, default=1000)
    p.add_argument("--drain", type=int, default=20_000, help="jobs drained by one worker")
    p.add_argument("--concurrency", type=int, default=200, help="worker concurrency (huey and "
                   "dramatiq threads: at most 8; rq: 1)")
    p.add_argument("--pickups", type=int, default=200)
    p.add_argument("--gap", type=float, default=0.02, help="seconds between pickups")
    p.add_argument("--budget", type=float, default=120.0, help="most seconds of a phase")
    return p


if __name__ == "__main__":
    opts = parser().parse_args()
    print(json.dumps(measure(PEERS[opts.system](opts.url), opts)))
