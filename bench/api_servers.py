"""The gateway under four ASGI servers, measured with ``wrk`` (Debian's package): uvicorn as
``conveyor api`` ran it before the connection guard, uvicorn with the guard
(``conveyor.api.connguard``: what ``conveyor api`` runs now), hypercorn and granian.

    .venv/bin/python bench/api_servers.py [--seconds 10] [--connections 32] [--rounds 2] \\
        [--peers-python /path/to/venv-with-hypercorn-and-granian/bin/python]

Each server runs alone in its own process, one worker, uvloop, with the same app: a private
redis-server, rate limits off, no history store. ``wrk`` (one thread) drives ``GET /healthz``
and ``POST /api/jobs`` (a producer-sized job, a bearer key). Rounds alternate the servers
so a busy neighbour on a shared machine hurts every server alike; the table shows the best
round of each (requests/s, p50 and p99 latency).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from conveyor.embedded import RedisServer, find_server, free_port  # noqa: E402

KEY = "bench-admin-key-0123456789"
SERVERS = ("uvicorn", "uvicorn+guard", "hypercorn", "granian")
POST_LUA = f"""wrk.method = "POST"
wrk.body = '{{"type": "resize", "args": {{"image_id": "a1", "width": 640}}}}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {KEY}"
"""


def app():  # type: ignore[no-untyped-def]
    """The ASGI app every server serves (``bench.api_servers:app()`` for hypercorn/granian)."""
    from conveyor import Conveyor
    from conveyor.api import ApiSettings, create_app

    conveyor = Conveyor(redis_url=os.environ["BENCH_REDIS_URL"])

    @conveyor.job(queue="media")
    async def resize(image_id: str, width: int) -> None: ...

    settings = ApiSettings(rate_limit="unlimited", anonymous_rate_limit="unlimited",
                           static_rate_limit="unlimited")
    return create_app(conveyor, settings=settings, admin_key=KEY, open_store=False)


def _uvicorn(port: int, guarded: bool) -> None:

    import uvicorn

    from conveyor.api import ApiServer

    async def main() -> None:
        if guarded:
            server = ApiServer(app(), "127.0.0.1", port, handle_signals=True)
            await server.start()
            await server.wait()
        else:
            config = uvicorn.Config(app(), host="127.0.0.1", port=port, log_level="warning",
                                    http="httptools", loop="uvloop", proxy_headers=False)
            await uvicorn.Server(config).serve()

    import uvloop
    uvloop.run(main())


def command(name: str, port: int, peers: str) -> list[str]:
    if name in ("uvicorn", "uvicorn+guard"):
        return [sys.executable, __file__, "--serve", name, "--port", str(port)]
    factory = "bench.api_servers:app"
    if name == "hypercorn":
        return [peers, "-m", "hypercorn", "--bind", f"127.0.0.1:{port}", "--workers", "1",
                "--worker-class", "uvloop", "--log-level", "warning", f"{factory}()"]
    return [peers, "-m", "granian", "--interface", "asgi", "--host", "127.0.0.1", "--port",
            str(port), "--workers", "1", "--loop", "uvloop", "--log-level", "warning",
            "--factory", factory]


def wrk(url: str, seconds: int, connections: int, script: str | None) -> tuple[float, str, str]:
    args = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url]
    if script:
        args[1:1] = ["-s", script]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = re.search(r"50%\s+(\S+)", out).group(1)  # type: ignore[union-attr]
    p99 = re.search(r"99%\s+(\S+)", out).group(1)  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        p99 += f" ({non2xx.group(1)} non-2xx)"
    return rps, p50, p99


def measure(name: str, args: argparse.Namespace, redis_url: str, lua: str) -> dict[str, tuple]:
    port = free_port()
    env = {**os.environ, "BENCH_REDIS_URL": redis_url,
           "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "src"), *_site()])}
    proc = subprocess.Popen(command(name, port, args.peers_python), env=env, cwd=ROOT)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                if httpx.get(url + "/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        return {"GET /healthz": wrk(url + "/healthz", args.seconds, args.connections, None),
                "POST /api/jobs": wrk(url + "/api/jobs", args.seconds, args.connections, lua)}
    finally:
        proc.terminate()
        proc.wait(10)


def _site() -> list[str]:
    """This interpreter's site-packages, for the peers' interpreter to import conveyor's
    dependencies from (the peers' venv adds only the servers)."""
    return [p for p in sys.path if p.endswith("site-packages")]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--peers-python", default="/tmp/benchvenv/bin/python")
    parser.add_argument("--servers", default=",".join(SERVERS))
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        _uvicorn(args.port, args.serve == "uvicorn+guard")
        return
    names = args.servers.split(",")
    best: dict[tuple[str, str], tuple] = {}
    with tempfile.TemporaryDirectory() as tmp:
        redis = RedisServer(find_server("redis"), Path(tmp), aof=False).start()
        lua = str(Path(tmp) / "post.lua")
        Path(lua).write_text(POST_LUA)
        try:
            for _ in range(args.rounds):
                for name in names:
                    for route, figures in measure(name, args, redis.url, lua).items():
                        if figures[0] > best.get((name, route), (0.0,))[0]:
                            best[name, route] = figures
        finally:
            redis.stop()
    print(f"| server | route | requests/s | p50 | p99 |  (wrk -t1 -c{args.connections} "
          f"-d{args.seconds}s, best of {args.rounds})")
    print("|---|---|---|---|---|")
    for (name, route), (rps, p50, p99) in sorted(best.items(), key=lambda kv: kv[0][1]):
        print(f"| {name} | `{route}` | {rps:,.0f} | {p50} | {p99} |")


if __name__ == "__main__":
    if shutil.which("wrk") is None:
        sys.exit("wrk is missing: apt-get install -y wrk")
    main()
