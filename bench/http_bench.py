"""HTTP table: `conveyor api` (the real command, uvicorn, auth on) driven by Debian's `wrk`,
with the same server's ``/healthz`` as the in-run ceiling.

    .venv/bin/python bench/http_bench.py [--reps 3] [--seconds 5] [--connections 32]

Each repetition runs /healthz, single ``POST /api/jobs`` and ``POST /api/jobs/bulk`` (1,000
jobs a request) in turn against one API process; Redis is emptied between phases. The key is
the bootstrap admin key (``CONVEYOR_ADMIN_KEY``) with ``CONVEYOR_API_RATE_LIMIT=unlimited``,
so every request still pays for the key check (/healthz is anonymous, its per-IP limit
off too). wrk shares the two cores with the server and
Redis, as any load generator on this machine would; the ratio to /healthz cancels that out.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, Table, fresh_redis, mark, median, show
from conveyor.embedded import free_port

DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\\nRESULT {"requests": %d, "us": %d, "non2xx": %d, "errors": %d, '
    .. '"p50": %d, "p95": %d, "p99": %d}\\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99)))
end
"""


def wrk(url: str, key: str, seconds: float, connections: int, method: str = "GET",
        body: bytes = b"", threads: int = 2) -> dict[str, Any]:
    """One wrk run; requests/s and latency percentiles (ms) from its Lua ``done`` hook."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(f'wrk.method = "{method}"\n')
        if body:
            script.write(f"wrk.body = [==[{body.decode()}]==]\n")
            script.write('wrk.headers["Content-Type"] = "application/json"\n')
        script.write(f'wrk.headers["Authorization"] = "Bearer {key}"\n{DONE}')
    try:
        out = subprocess.run(
            ["wrk", "-t", str(min(threads, connections)), "-c", str(connections),
             "-d", f"{seconds:g}s", "--timeout", "10s", "-s", script.name, url],
            capture_output=True, text=True, timeout=seconds + 60, check=False).stdout
    finally:
        os.unlink(script.name)
    line = next((x for x in out.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result:\n{out[-1000:]}")
    res: dict[str, Any] = json.loads(line[7:])
    if not res["requests"] or not res["us"]:
        raise RuntimeError(f"wrk completed no request on {url}:\n{out[-1000:]}")
    res["rps"] = res["requests"] / (res["us"] / 1e6)
    for p in ("p50", "p95", "p99"):
        res[p] /= 1000.0
    return res


def ensure_wrk() -> None:
    if shutil.which("wrk"):
        return
    if os.geteuid() == 0:
        subprocess.run(["apt-get", "update", "-q"], check=False)
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=True)
    else:
        raise SystemExit("wrk is missing: sudo apt-get install -y wrk")


@contextlib.contextmanager
def api_server(redis_url: str, store_url: str) -> Iterator[tuple[str, str, int]]:
    """``conveyor api bench.apps:app`` on a free port; yields (base url, admin key, pid)."""
    key, port = secrets.token_urlsafe(24), free_port()
    env = {**os.environ, "CONVEYOR_REDIS_URL": redis_url, "CONVEYOR_STORE_URL": store_url,
           "CONVEYOR_ADMIN_KEY": key, "CONVEYOR_API_RATE_LIMIT": "unlimited",
           "CONVEYOR_API_ANONYMOUS_RATE_LIMIT": "unlimited",
           "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "src")])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "conveyor", "api", "bench.apps:app", "--port", str(port),
         "--log-level", "warning"], env=env, cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(base + "/healthz", proc)
        yield base, key, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("conveyor api exited at start")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1) as r:
            if r.status == 200:
                return
        time.sleep(0.1)  # another process: poll its port
    raise TimeoutError(f"{url} did not answer in {timeout}s")


def settle(base: str, timeout: float = 120) -> None:
    """Until /healthz answers within 50 ms: when wrk stops, the server still works through
    the requests in flight (32 bulk requests take seconds), which the next phase must not
    inherit."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        start = time.monotonic()
        with contextlib.suppress(OSError), urllib.request.urlopen(base + "/healthz",
                                                                  timeout=10):
            if time.monotonic() - start < 0.05:
                return
        time.sleep(0.2)  # another process: poll it


def bodies(batch: int) -> tuple[bytes, bytes]:
    one = {"type": "small", "args": {"n": 1}}
    return orjson.dumps(one), orjson.dumps({"jobs": [one] * batch})


def measure(opts: argparse.Namespace) -> dict[str, list[dict[str, Any]]]:
    single, bulk = bodies(opts.batch)
    runs: dict[str, list[dict[str, Any]]] = {"healthz": [], "single": [], "bulk": []}
    with fresh_redis() as redis, tempfile.TemporaryDirectory() as tmp, \
            api_server(redis.url, f"sqlite:///{tmp}/history.db") as (base, key, _pid):
        import redis as redis_py

        client = redis_py.Redis.from_url(redis.url)
        wrk(base + "/healthz", key, 1, opts.connections)  # warm-up
        for rep in range(opts.reps):
            for name, path, method, body in [("healthz", "/healthz", "GET", b""),
                                             ("single", "/api/jobs", "POST", single),
                                             ("bulk", "/api/jobs/bulk", "POST", bulk)]:
                runs[name].append(wrk(base + path, key, opts.seconds, opts.connections,
                                      method, body))
                settle(base)
                client.flushall()
            print(f"  http rep {rep + 1}/{opts.reps} done", file=sys.stderr, flush=True)
        client.close()
    return runs


def http_table(runs: dict[str, list[dict[str, Any]]], opts: argparse.Namespace) -> Table:
    def m(name: str, key: str) -> float:
        return median([r[key] for r in runs[name]])

    health, single = m("healthz", "rps"), m("single", "rps")
    # Per repetition, single / healthz of that repetition: load swings between them cancel.
    ratio = median([s["rps"] / h["rps"] for s, h in zip(runs["single"], runs["healthz"],
                                                          strict=True)])
    bulk_jobs = m("bulk", "rps") * opts.batch
    table = Table(f"HTTP: wrk, {opts.connections} connections, {opts.seconds:g} s a phase, "
                  f"median of {opts.reps}, `conveyor api` (uvicorn), admin key",
                  ["route", "requests/s", "jobs/s", "p50 ms", "p99 ms", "non-2xx",
                   "vs /healthz", "goal", "mark"])
    table.add("GET /healthz (ceiling)", f"{health:,.0f}", "-", f"{m('healthz', 'p50'):.1f}",
              f"{m('healthz', 'p99'):.1f}", sum(r["non2xx"] for r in runs["healthz"]),
              "100 %", "-", "-")
    table.add("POST /api/jobs (single)", f"{single:,.0f}", f"{single:,.0f}",
              f"{m('single', 'p50'):.1f}", f"{m('single', 'p99'):.1f}",
              sum(r["non2xx"] for r in runs["single"]), f"{ratio:.0%}",
              ">= 80 % of /healthz", mark(ratio >= 0.8))
    table.add(f"POST /api/jobs/bulk ({opts.batch:,}/request)", f"{m('bulk', 'rps'):,.1f}",
              f"{bulk_jobs:,.0f}", f"{m('bulk', 'p50'):.0f}", f"{m('bulk', 'p99'):.0f}",
              sum(r["non2xx"] for r in runs["bulk"]), "-", ">= 40,000 jobs/s",
              mark(bulk_jobs >= 40_000))
    table.notes.append('body {"type": "small", "args": {"n": 1}}; wrk -t 2 on the same 2 '
                       "cores as the server and Redis; vs /healthz: median of the "
                       "per-repetition ratios.")
    return table


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--batch", type=int, default=1000)


def main(opts: argparse.Namespace, markdown: Path | None = None) -> None:
    ensure_wrk()
    show(http_table(measure(opts), opts), markdown)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_args(parser)
    main(parser.parse_args())
