"""`make bench-profile`: where Conveyor's time goes, server side and client side.

    .venv/bin/python bench/profile.py [--jobs 20000] [--single 5000] [--seconds 5]

Server side: a fresh redis-server with SLOWLOG catching every command (threshold 0) and the
latency monitor on; each phase's top-level commands are grouped by script (EVALSHA's sha
mapped back to ``conveyor/broker/lua/*.lua``): calls and usec per call. Client side: py-spy
(from bench/.venv-peers) samples the producer process (single and bulk enqueue), the worker
process (a drain) and the API process (wrk on ``POST /api/jobs`` and the bulk route); the
samples are grouped by the package of the innermost frame. Idle samples are not taken, so
``wall - cpu`` per job is time spent waiting (on Redis or the socket). Profiling slows
everything: read the shares, not the rates.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import PEERS_VENV, fresh_redis
from bench.peers.driver import stop

PYSPY = str(PEERS_VENV / "bin" / "py-spy")
RATE = 250  # py-spy samples per second
# Innermost frame's file (as py-spy names it, relative to sys.path) -> what it is.
PARTS = [("redis/", "redis-py"), ("hiredis", "redis-py"), ("pydantic", "pydantic"),
         ("conveyor/submit.py", "conveyor submit (checks, ids, encoding)"),
         ("conveyor/registry.py", "conveyor argument validation"),
         ("conveyor/broker/", "conveyor broker (script args, replies)"),
         ("conveyor/worker/", "conveyor worker"), ("conveyor/api/", "conveyor api"),
         ("conveyor/", "conveyor other"), ("uvicorn/", "uvicorn"), ("starlette/", "starlette"),
         ("fastapi/", "fastapi"), ("asyncio/", "asyncio"), ("uvloop", "uvloop"),
         ("opentelemetry", "opentelemetry"), ("trace/", "opentelemetry"), ("orjson", "orjson"),
         ("json/", "json"), ("logging/", "logging"), ("uuid.py", "uuid"),
         ("bench/", "bench harness"), ("_weakrefset", "weakref"), ("re/", "re")]


def script_names() -> dict[str, str]:
    from conveyor.broker.scripts import available, source

    return {hashlib.sha1(source(n).text.encode()).hexdigest(): n for n in available()}


def server_side(client: Any, shas: dict[str, str]) -> list[tuple[str, int, float]]:
    """(command or script, calls, usec per call) from the SLOWLOG since the last reset."""
    calls: collections.Counter[str] = collections.Counter()
    usec: collections.Counter[str] = collections.Counter()
    for entry in client.slowlog_get(-1):
        cmd = entry["command"].decode(errors="replace").split()
        name = cmd[0].lower() if cmd else "?"
        if name == "evalsha" and len(cmd) > 1:
            name = "script " + shas.get(cmd[1], cmd[1][:8])
        calls[name] += 1
        usec[name] += entry["duration"]
    client.slowlog_reset()
    return sorted(((n, calls[n], usec[n] / calls[n]) for n in calls),
                  key=lambda t: -t[1] * t[2])


def latency_events(client: Any) -> str:
    events = client.execute_command("LATENCY", "LATEST")
    client.execute_command("LATENCY", "RESET")
    return ", ".join(f"{e[0].decode()} max {e[3]} ms" for e in events) or "none over 1 ms"


def part_of(frame: str) -> str:
    path = frame[frame.rfind("(") + 1:]
    return next((name for prefix, name in PARTS if path.startswith(prefix)),
                "other: " + frame[:60])


def summarise(raw: Path, must: str = "") -> tuple[int, list[tuple[str, int]],
                                                    list[tuple[str, int]]]:
    """Samples, by package of the innermost frame, and the top innermost functions; start-up
    (imports) left out, and with ``must`` only the stacks inside that function."""
    parts: collections.Counter[str] = collections.Counter()
    funcs: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit() or "_find_and_load" in stack or must not in stack:
            continue
        inner = stack.split(";")[-1]
        parts[part_of(inner)] += int(count)
        funcs[inner] += int(count)
        total += int(count)
    return total, parts.most_common(12), funcs.most_common(8)


def attach(pid: int, out: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([PYSPY, "record", "--pid", str(pid), "--rate", str(RATE),
                             "--format", "raw", "--nonblocking", "-o", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # py-spy attaches
    return proc


def detach(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGINT)  # py-spy writes its file on Ctrl-C
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()


def report(title: str, wall_us: float, jobs: int, raw: Path,
           server: list[tuple[str, int, float]] | None, latency: str = "",
           must: str = "") -> None:
    total, parts, funcs = summarise(raw, must) if raw.exists() else (0, [], [])
    cpu_us = total / RATE / max(1, jobs) * 1e6
    print(f"\n== {title}: {wall_us:,.1f} us per job (wall, under the profiler), "
          f"{cpu_us:,.1f} us CPU per job in the sampled process ({total:,} samples)")
    for name, count in parts:
        print(f"   {count / max(1, total):6.1%}  {count / RATE / max(1, jobs) * 1e6:8.1f} us  "
              f"{name}")
    print("   top innermost functions: " + "; ".join(
        f"{f.split(' (')[0]} {c / max(1, total):.0%}" for f, c in funcs[:6]))
    if server:
        print("   server side (SLOWLOG, every command): " + "; ".join(
            f"{n} {c:,} x {u:.1f} us" for n, c, u in server[:5]))
    if latency:
        print(f"   LATENCY LATEST: {latency}")


def short_path(path: str) -> str:
    """An absolute file name as py-spy prints it (relative to its sys.path entry)."""
    for cut in ("site-packages/", "/src/", "python3.11/", "/cv-bench/", "/main/"):
        if cut in path:
            return path.split(cut, 1)[1]
    return path


def producer(url: str, phase: str, n: int) -> None:
    """Child mode: one phase of the Conveyor driver, run twice: clean (wall and CPU time
    per job), then under cProfile timed by CPU time (so time spent waiting for a core on a
    loaded machine is not counted) for the shares. Prints JSON."""
    import cProfile
    import pstats

    from bench.core import ConveyorDriver

    d = ConveyorDriver(url)

    def run() -> float:
        d.fresh()
        return d.single(n) if phase == "single" else d.bulk(n, 1000)

    cpu = time.process_time()
    took = run()
    cpu = time.process_time() - cpu
    prof = cProfile.Profile(time.process_time)
    prof.runcall(run)
    parts: collections.Counter[str] = collections.Counter()
    for (file, line, func), row in pstats.Stats(prof).stats.items():  # type: ignore[attr-defined]
        parts[part_of(f"{func} ({short_path(file)}:{line})")] += row[2]  # tottime
    print(json.dumps({"seconds": took, "cpu": cpu, "parts": parts.most_common(14)}))


def profile_producer(url: str, client: Any, shas: dict[str, str], phase: str, n: int,
                     tmp: Path) -> None:
    client.flushall()
    client.slowlog_reset()
    raw = tmp / f"{phase}.txt"
    done = subprocess.run([PYSPY, "record", "--rate", str(RATE), "--format", "raw",
                           "--nonblocking", "-o", str(raw), "--", sys.executable, __file__,
                           "--producer", phase, url, str(n)],
                          capture_output=True, text=True, check=False)
    line = next((x for x in done.stdout.splitlines() if x.startswith('{"seconds"')), None)
    if line is None:
        raise RuntimeError(f"the profiled producer failed: {done.stdout[-500:]}"
                           f"{done.stderr[-1500:]}")
    res = json.loads(line)
    report(f"{phase} enqueue ({n:,} jobs, producer process, py-spy)", res["seconds"] / n * 1e6,
           n, raw, server_side(client, shas), latency_events(client),
           must=f"{phase} (bench/core.py")
    total = sum(t for _, t in res["parts"]) or 1.0
    print(f"   clean run: {res['seconds'] / n * 1e6:,.1f} us wall, {res['cpu'] / n * 1e6:,.1f} "
          "us CPU per job; cProfile (CPU-time timer) shares of that CPU:")
    for name, t in res["parts"]:
        print(f"   {t / total:6.1%}  {t / total * res['cpu'] / n * 1e6:8.1f} us  {name}")


def profile_worker(url: str, client: Any, shas: dict[str, str], n: int, tmp: Path) -> None:
    from bench.core import ConveyorDriver

    d = ConveyorDriver(url)
    d.fresh()
    worker = d.start_worker(200)
    raw = tmp / "worker.txt"
    try:
        time.sleep(2)  # the worker starts
        d.runner.run(d.app.pause("bench"))  # the jobs wait until the profile starts
        d.enqueue_drain(n)
        spy = attach(worker.pid, raw)
        client.slowlog_reset()
        cpu = process_cpu(worker.pid)
        d.runner.run(d.app.resume("bench"))
        start, end = d.wait_stamp(60), d.wait_stamp(300)
        cpu = process_cpu(worker.pid) - cpu
        detach(spy)
    finally:
        stop(worker)
    wall = (end[1] - start[1]) / (n - 1) * 1e6 if start and end else float("nan")
    report(f"drain ({n:,} jobs, worker process, py-spy)", wall, n, raw,
           server_side(client, shas), latency_events(client))
    print(f"   worker process CPU (psutil): {cpu / n * 1e6:,.1f} us per job")


def profile_api(url: str, client: Any, shas: dict[str, str], seconds: float,
                tmp: Path) -> None:
    from bench.http_bench import api_server, bodies, wrk

    single, bulk = bodies(1000)
    with tempfile.TemporaryDirectory() as store, \
            api_server(url, f"sqlite:///{store}/h.db") as (base, key, pid):
        for name, path, body, per in [("single", "/api/jobs", single, 1),
                                      ("bulk", "/api/jobs/bulk", bulk, 1000)]:
            client.flushall()
            client.slowlog_reset()
            raw = tmp / f"api-{name}.txt"
            spy = attach(pid, raw)
            cpu = process_cpu(pid)
            res = wrk(base + path, key, seconds, 32, "POST", body)
            cpu = process_cpu(pid) - cpu
            detach(spy)
            jobs = res["requests"] * per
            report(f"HTTP {name} POST {path} ({res['rps'] * per:,.0f} jobs/s under the "
                   "profiler, API process, py-spy)", res["us"] / max(1, jobs), jobs, raw,
                   server_side(client, shas), latency_events(client))
            print(f"   API process CPU (psutil): {cpu / max(1, jobs) * 1e6:,.1f} us per job")


def process_cpu(pid: int) -> float:
    import psutil

    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def main(opts: argparse.Namespace) -> None:
    shas = script_names()
    with fresh_redis() as server, tempfile.TemporaryDirectory(prefix="cv-prof-") as tmp:
        import redis

        client = redis.Redis.from_url(server.url)
        client.config_set("slowlog-log-slower-than", 0)
        client.config_set("slowlog-max-len", 1_000_000)
        client.config_set("latency-monitor-threshold", 1)
        print(f"profile on {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
        phases = {
            "single": lambda: profile_producer(server.url, client, shas, "single",
                                               opts.single, Path(tmp)),
            "bulk": lambda: profile_producer(server.url, client, shas, "bulk", opts.jobs,
                                             Path(tmp)),
            "drain": lambda: profile_worker(server.url, client, shas, opts.jobs, Path(tmp)),
            "api": lambda: profile_api(server.url, client, shas, opts.seconds, Path(tmp))}
        for name in opts.phases:
            phases[name]()
        client.close()


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--producer":
        producer(sys.argv[3], sys.argv[2], int(sys.argv[4]))
    else:
        parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
        parser.add_argument("--jobs", type=int, default=20_000)
        parser.add_argument("--single", type=int, default=5_000)
        parser.add_argument("--seconds", type=float, default=5.0)
        parser.add_argument("--phases", nargs="+", default=["single", "bulk", "drain", "api"],
                            choices=["single", "bulk", "drain", "api"])
        main(parser.parse_args())
