"""API gateway benchmark: single submissions per second over HTTP, and jobs per second
through the bulk route.

    .venv/bin/python bench/api_bench.py [--seconds 10] [--concurrency 64] [--batch 1000]

Starts a private Redis-compatible server (AOF on, fsync every second, as ``conveyor up``
does), the API in its own process (uvicorn, uvloop, httptools: one event loop, as in
production), and concurrent httpx clients in this process. Auth and rate limiting stay on:
the client uses a producer key with a limit too high to bite, so every request pays for the
key check and the GCRA script. Prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI, Request, Response

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from conveyor import Conveyor  # noqa: E402
from conveyor.api import ApiServer, ApiSettings, create_app  # noqa: E402
from conveyor.api.auth import ApiKeys  # noqa: E402
from conveyor.embedded import RedisServer, find_server, free_port  # noqa: E402

BASELINE = "baseline: bare FastAPI"
SINGLE = "single POST /api/jobs"
BULK = "bulk POST /api/jobs/bulk"


def bench_app(redis_url: str) -> Conveyor:
    app = Conveyor(redis_url=redis_url, store_url="sqlite:///unused.db")

    @app.job(queue="bench")
    async def noop(n: int, label: str = "") -> int:
        return n

    return app


def baseline_app() -> Any:
    """The machine's yardstick: FastAPI on the same uvicorn, a handler that reads the body
    and answers 201, no auth, no Redis. No gateway can be faster on this machine."""
    app = FastAPI()

    @app.post("/api/jobs", status_code=201)
    async def submit(request: Request) -> Response:
        await request.body()
        return Response(b'{"id": "x"}', status_code=201, media_type="application/json")

    return app


def serve_process(redis_url: str, port: int, ready: Any, baseline: bool = False) -> None:
    """The API server, alone in a process (so the client does not share its core)."""
    import uvloop

    async def main() -> None:
        app = (baseline_app() if baseline else
               create_app(bench_app(redis_url), open_store=False, settings=ApiSettings()))
        server = ApiServer(app, "127.0.0.1", port, log_level="error", access_log=False)
        await server.start()
        ready.set()
        await server.wait()

    uvloop.run(main())


@dataclass
class Result:
    name: str
    requests: int
    jobs: int
    seconds: float
    errors: int
    server_cpu: float = 0.0  # seconds of CPU the API process used during the phase
    redis_cpu: float = 0.0
    client_cpu: float = 0.0

    @property
    def jobs_per_second(self) -> float:
        return self.jobs / self.seconds

    def per_job_us(self, cpu: float) -> float:
        return cpu / max(1, self.jobs) * 1e6


async def _loop_requests(
    client: httpx.AsyncClient, path: str, body: bytes, per_request: int, deadline: float,
    counts: list[int],
) -> None:
    headers = {"content-type": "application/json"}
    while time.perf_counter() < deadline:
        response = await client.post(path, content=body, headers=headers)
        if response.status_code == 201:
            counts[0] += 1
            counts[1] += per_request
        else:
            counts[2] += 1
            if counts[2] <= 3:
                print(f"  {response.status_code}: {response.text[:200]}", file=sys.stderr)


async def run_phase(
    name: str, base_url: str, key: str, path: str, body: bytes, per_request: int,
    concurrency: int, seconds: float,
) -> Result:
    """``concurrency`` requests in flight, each on its own httpx client of one connection:
    httpcore's pool checks every pooled connection's socket on every request, so one client
    with many connections spends its CPU on bookkeeping (O(connections) per request)."""
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    clients = [httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30.0,
                                 headers={"Authorization": f"Bearer {key}"})
               for _ in range(concurrency)]
    try:
        await clients[0].post(path, content=body, headers={"content-type": "application/json"})
        counts = [0, 0, 0]
        start, cpu = time.perf_counter(), time.process_time()
        deadline = start + seconds
        await asyncio.gather(*(_loop_requests(c, path, body, per_request, deadline, counts)
                               for c in clients))
        elapsed = time.perf_counter() - start
    finally:
        for client in clients:
            await client.aclose()
    return Result(name, counts[0], counts[1], elapsed, counts[2],
                  client_cpu=time.process_time() - cpu)


def client_process(args: dict[str, Any], out: Any) -> None:
    # httpcore runs `import sniffio` on every request; when sniffio is not installed each
    # failed import walks sys.path with stat calls. None in sys.modules fails it at once.
    sys.modules.setdefault("sniffio", None)  # type: ignore[arg-type]
    import uvloop

    result = uvloop.run(run_phase(**args))
    out.put(result)


def run_clients(processes: int, args: dict[str, Any], watch: list[int]) -> Result:
    """The phase run by ``processes`` client processes at once, summed; with the CPU time
    the API process and Redis (pids in ``watch``) spent meanwhile."""
    before = [_cpu(pid) for pid in watch]
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=client_process, args=(args, out)) for _ in range(processes)]
    for p in procs:
        p.start()
    results = [out.get() for _ in procs]
    for p in procs:
        p.join()
    seconds = max(r.seconds for r in results)
    used = [_cpu(pid) - b for pid, b in zip(watch, before, strict=True)]
    return Result(args["name"], sum(r.requests for r in results), sum(r.jobs for r in results),
                  seconds, sum(r.errors for r in results), *used,
                  client_cpu=sum(r.client_cpu for r in results))


def _cpu(pid: int) -> float:
    import psutil

    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


async def make_key(redis_url: str) -> str:
    app = bench_app(redis_url)
    key, _ = await ApiKeys(app).create("producer", name="bench", rate="1000000/s")
    await app.close()
    return key


def table(results: list[Result], bars: dict[str, float]) -> str:
    lines = [f"{'phase':<26}{'requests':>9}{'jobs':>8}{'seconds':>8}{'jobs/s':>8}{'bar':>13}"
             f"{'API cpu/job':>13}{'Redis cpu/job':>15}{'client cpu/job':>16}{'errors':>7}",
             "-" * 123]
    for r in results:
        bar = bars.get(r.name, 0)
        mark = "" if not bar else "ok" if r.jobs_per_second >= bar else "below"
        lines.append(f"{r.name:<26}{r.requests:>9}{r.jobs:>8}{r.seconds:>8.2f}"
                     f"{r.jobs_per_second:>8.0f}{bar:>7.0f} {mark:<5}"
                     f"{r.per_job_us(r.server_cpu):>10.0f} us{r.per_job_us(r.redis_cpu):>12.0f} us"
                     f"{r.per_job_us(r.client_cpu):>13.0f} us{r.errors:>7}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=64, help="requests in flight")
    parser.add_argument("--clients", type=int, default=2, help="client processes")
    parser.add_argument("--batch", type=int, default=1000, help="jobs per bulk request")
    opts = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(find_server(), Path(tmp) / "redis").start()
        try:
            results = [run_server(opts, server, baseline=True)[0],
                       *run_server(opts, server, baseline=False)]
        finally:
            server.kill()
    print()
    load = os.getloadavg()[0]
    print(f"API gateway benchmark on {os.cpu_count()} cores, load average {load:.1f} "
          f"({opts.clients} client processes, {opts.concurrency} requests in flight each)")
    print(table(results, {SINGLE: 3000, BULK: 30000}))


def run_server(opts: argparse.Namespace, redis: RedisServer, baseline: bool) -> list[Result]:
    """Start the API (or the baseline app) in its own process and run the phases on it."""
    ctx = mp.get_context("spawn")
    ready = ctx.Event()
    port = free_port()
    api = ctx.Process(target=serve_process, args=(redis.url, port, ready, baseline),
                      daemon=True)
    api.start()
    try:
        if not ready.wait(30):
            raise SystemExit("the API server did not start")
        key = asyncio.run(make_key(redis.url))
        assert api.pid is not None and redis.proc is not None
        return run_phases(opts, f"http://127.0.0.1:{port}", key, [api.pid, redis.proc.pid],
                          baseline)
    finally:
        api.terminate()
        api.join(10)


def run_phases(
    opts: argparse.Namespace, base_url: str, key: str, watch: list[int], baseline: bool
) -> list[Result]:
    import orjson

    single = orjson.dumps({"type": "noop", "args": {"n": 1, "label": "x"}})
    common = {"base_url": base_url, "key": key, "seconds": opts.seconds}
    name = BASELINE if baseline else SINGLE
    results = [run_clients(opts.clients, {
        **common, "name": name, "path": "/api/jobs", "body": single,
        "per_request": 1, "concurrency": opts.concurrency}, watch)]
    if not baseline:
        bulk = orjson.dumps({"jobs": [{"type": "noop", "args": {"n": i, "label": "x"}}
                                      for i in range(opts.batch)]})
        results.append(run_clients(opts.clients, {
            **common, "name": BULK, "path": "/api/jobs/bulk", "body": bulk,
            "per_request": opts.batch, "concurrency": 4}, watch))
    return results


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
