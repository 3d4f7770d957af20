"""Core table: Conveyor against huey, dramatiq and rq in the same run, each through its
documented API against its own fresh redis-server (Debian's 7.0, AOF everysec for all).

    .venv/bin/python bench/core.py [--reps 3] [--jobs 20000]

Per repetition the systems take turns (Conveyor, huey, dramatiq, rq), so a change in the
machine's speed hits all of them; each figure is the median of the repetitions. The
producer of each system runs in its own process (``bench/peers/driver.py``; Conveyor's is
``ConveyorDriver`` below), one worker process drains. The peers live in bench/.venv-peers
(``make bench-peers`` makes it from bench/peers/requirements.txt).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    PEERS_PYTHON,
    ROOT,
    Table,
    fmt_rate,
    fresh_redis,
    mark,
    median,
    percentile,
    show,
)
from bench.peers.driver import Driver, measure, parser

PEER_NAMES = ("huey", "dramatiq", "rq")
SCRIPT_PHASES = ("single", "bulk", "drain", "pickup")


class ConveyorDriver(Driver):
    """Conveyor's producer: its async API on uvloop, the worker is ``conveyor worker``."""

    name = "conveyor"

    def __init__(self, url: str) -> None:
        super().__init__(url)
        import os

        import uvloop

        os.environ["CONVEYOR_REDIS_URL"] = url
        from bench.apps import app

        self.app = app
        app.configure(redis_url=url)
        self.runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
        self.server: dict[str, dict[str, float]] = {}
        self.floor: list[float] = []  # ms of a PING after the pickups' idle gap

    def fresh(self) -> None:
        super().fresh()
        self.app._known_queues.clear()
        self.redis.config_resetstat()

    def phase_stats(self, phase: str) -> None:
        """The server's INFO commandstats since ``fresh``: calls and usec per call."""
        stats = self.redis.info("commandstats")
        self.server[phase] = {name[8:]: [v["calls"], v["usec_per_call"]]
                              for name, v in stats.items() if v["calls"] >= 2}

    def single(self, n: int) -> float:
        async def go() -> float:
            enqueue = self.app.enqueue
            start = time.perf_counter()
            for _ in range(n):
                await enqueue("noop", {})
            return time.perf_counter() - start

        took = self.runner.run(go())
        self.phase_stats("single")
        return took

    def bulk(self, n: int, batch: int) -> float:
        async def go() -> float:
            spec = {"type": "noop", "args": {}}
            start = time.perf_counter()
            for size in [batch] * (n // batch) + [n % batch]:
                if size:
                    await self.app.enqueue_many([spec] * size)
            return time.perf_counter() - start

        took = self.runner.run(go())
        self.phase_stats("bulk")
        return took

    def stamp(self, tag: str) -> None:
        self.runner.run(self.app.enqueue("stamp", {"tag": tag}))

    def drain(self, n: int, concurrency: int, budget: float) -> float:
        rate = super().drain(n, concurrency, budget)
        self.phase_stats("drain")
        return rate

    def pickup(self, n: int, gap: float, budget: float) -> list[float]:
        """As the peers', with the enqueue and the wait in one coroutine (no event-loop
        start per call inside the measured span)."""
        self.fresh()
        worker = self.start_worker(10)
        try:
            self.stamp("ready")
            if self.wait_stamp(60) is None:
                self.failed("pickup")
                return []
            latencies = self.runner.run(self._pickups(n, gap, budget))
            self.phase_stats("pickup")
            return latencies
        finally:
            from bench.peers.driver import stop

            stop(worker)

    async def _pickups(self, n: int, gap: float, budget: float) -> list[float]:
        from redis.asyncio import Redis

        stamps = Redis.from_url(self.url, socket_timeout=None)
        latencies: list[float] = []
        deadline = time.monotonic() + budget
        while len(latencies) < n and time.monotonic() < deadline:
            await asyncio.sleep(gap)
            sent = time.time()
            await self.app.enqueue("stamp", {"tag": "p"})
            got = await stamps.blpop(["bench:stamps"], timeout=10)
            if got is None:
                break
            latencies.append((float(got[1].split()[1]) - sent) * 1000)
        # The machine's floor: one PING after the same idle gap (a pickup needs at least two
        # trips: the submit, then the worker's wake-up and claim). On a VM whose idle CPUs
        # sleep deeply, a round trip from idle costs several times a busy one.
        for _ in range(min(n, 200)):
            await asyncio.sleep(gap)
            sent = time.perf_counter()
            await stamps.ping()
            self.floor.append((time.perf_counter() - sent) * 1000)
        await stamps.aclose()
        return latencies

    def worker_cmd(self, concurrency: int) -> list[str]:
        return [sys.executable, "-m", "conveyor", "worker", "bench.apps:app", "--queues",
                "bench", "--concurrency", str(concurrency)]


# -- orchestration -----------------------------------------------------------------------

def run_driver(system: str, url: str, opts: argparse.Namespace) -> dict[str, Any]:
    python = sys.executable if system == "conveyor" else str(PEERS_PYTHON)
    script = ROOT / ("bench/core.py" if system == "conveyor" else "bench/peers/driver.py")
    args = [python, str(script), system, "--url", url, "--single", str(opts.single),
            "--bulk", str(opts.jobs), "--drain", str(opts.jobs), "--pickups", str(opts.pickups),
            "--budget", str(opts.budget), "--concurrency", str(opts.concurrency)]
    done = subprocess.run(args, capture_output=True, text=True, timeout=opts.budget * 6,
                          check=False)
    if done.returncode != 0:
        print(f"  {system}: driver failed: {done.stderr[-800:]}", file=sys.stderr)
        return {"system": system}
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    lat = result.pop("pickup", [])
    result["p50"], result["p99"] = percentile(lat, 50), percentile(lat, 99)
    result["pickups"] = len(lat)
    if "floor" in result:
        result["floor_p50"] = percentile(result.pop("floor"), 50)
    return result


def collect(opts: argparse.Namespace) -> dict[str, list[dict[str, Any]]]:
    runs: dict[str, list[dict[str, Any]]] = {s: [] for s in opts.systems}
    for rep in range(opts.reps):
        for system in opts.systems:
            with fresh_redis() as server:
                started = time.monotonic()
                runs[system].append(run_driver(system, server.url, opts))
                print(f"  core rep {rep + 1}/{opts.reps} {system}: "
                      f"{time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
    return runs


def med(runs: list[dict[str, Any]], key: str) -> float:
    return median([r[key] for r in runs if key in r and not math.isnan(r[key])])


def paired(runs: dict[str, list[dict[str, Any]]], key: str, peer: str) -> float:
    """The median of the per-repetition ratios Conveyor / peer: each pair ran minutes
    apart at most, so a change in the machine's load between repetitions cancels out."""
    pairs = zip(runs["conveyor"], runs[peer], strict=False)
    return median([c[key] / p[key] for c, p in pairs
                   if key in c and key in p and not math.isnan(c[key] / p[key])])


def core_table(runs: dict[str, list[dict[str, Any]]], opts: argparse.Namespace) -> Table:
    peers = [s for s in opts.systems if s != "conveyor"]
    table = Table(f"Core: median of {opts.reps} in one run, {opts.jobs:,} no-op jobs "
                  f"({opts.single:,} for single enqueue), one worker process",
                  ["metric", *opts.systems, "best peer", "ratio", "goal", "mark"])
    higher = [("single enqueue, 1 call/job, 1 producer (jobs/s)", "single", 1.0),
              ("bulk enqueue, 1,000/call (jobs/s)", "bulk", 3.0),
              ("drain, 1 worker process (jobs/s)", "drain", 5.0)]
    for label, key, goal in higher:
        values = {s: med(runs[s], key) for s in opts.systems}
        best = max(peers, key=lambda s: values[s] if not math.isnan(values[s]) else -1)
        ratio = paired(runs, key, best)
        table.add(label, *(fmt_rate(values[s]) for s in opts.systems), best,
                  f"{ratio:.2f}x", f">= {goal:g}x best peer", mark(ratio >= goal))
    for label, key, bar in [("pickup p50, idle worker (ms)", "p50", 0.35),
                            ("pickup p99, idle worker (ms)", "p99", 1.0)]:
        values = {s: med(runs[s], key) for s in opts.systems}
        best = min(peers, key=lambda s: values[s] if not math.isnan(values[s]) else 1e9)
        table.add(label, *(f"{values[s]:.2f}" for s in opts.systems), best,
                  f"{paired(runs, key, best):.2f}x", f"<= {bar} ms",
                  mark(values["conveyor"] <= bar))
    table.notes += [
        "ratio: median over the repetitions of Conveyor / best peer (by median) of the same "
        "repetition (pickup: >1 means slower).",
        f"workers: conveyor --concurrency {opts.concurrency}; huey -k thread -w 8; dramatiq "
        "-p 1 -t 8; rq SimpleWorker (no fork per job). Each system on its own redis-server.",
        f"pickup floor: a PING after the same idle gap took "
        f"{med(runs['conveyor'], 'floor_p50'):.2f} ms (p50) on this machine; a pickup is at "
        "least two such trips (the submit, then the worker's wake-up with its claim).",
        *server_notes(runs["conveyor"]),
    ]
    return table


def server_notes(runs: list[dict[str, Any]]) -> list[str]:
    """Conveyor's server side per phase (INFO commandstats of the last repetition)."""
    if not runs or "server" not in runs[-1]:
        return []
    notes = []
    for phase, stats in runs[-1]["server"].items():
        top = sorted(stats.items(), key=lambda kv: -kv[1][0] * kv[1][1])[:3]
        notes.append(f"conveyor server side, {phase}: " + "; ".join(
            f"{cmd} {calls:,} calls {usec:.1f} us/call" for cmd, (calls, usec) in top))
    return notes


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--jobs", type=int, default=20_000, help="bulk and drain jobs")
    p.add_argument("--single", type=int, default=20_000, help="single-enqueue jobs")
    p.add_argument("--pickups", type=int, default=200)
    p.add_argument("--concurrency", type=int, default=200)
    p.add_argument("--budget", type=float, default=120.0, help="most seconds of a phase")
    p.add_argument("--systems", nargs="+", default=["conveyor", *PEER_NAMES])


def main(opts: argparse.Namespace, markdown: Path | None = None) -> None:
    if not PEERS_PYTHON.exists():
        opts.systems = ["conveyor"]
        print("  no bench/.venv-peers: run `make bench` (it creates it)", file=sys.stderr)
    show(core_table(collect(opts), opts), markdown)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "conveyor":
        d_opts = parser().parse_args()
        driver = ConveyorDriver(d_opts.url)
        result = measure(driver, d_opts)
        result["server"] = driver.server
        result["floor"] = driver.floor
        print(json.dumps(result))
    else:
        p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
        add_args(p)
        main(p.parse_args())
