"""``conveyor up``: every role in one process, on embedded defaults.

Starts a private Redis-compatible server (unless ``CONVEYOR_REDIS_URL`` is set) with its data
and AOF under ``.conveyor/``, then a worker, the scheduler services and the API, and, without
an app, the demo jobs. Stops everything it started on exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.panel import Panel

from conveyor import demo
from conveyor.app import Conveyor
from conveyor.embedded import RedisServer, find_server
from conveyor.loader import STATE_DIR, URL_FILE, load_app
from conveyor.scheduler.service import Scheduler
from conveyor.worker.worker import Worker

console = Console()


@dataclass
class UpOptions:
    app: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    concurrency: int = 20
    demo_rate: float = 0.0
    extras: list[Callable[[Conveyor], Coroutine[Any, Any, None]]] = field(default_factory=list)


def start_private_server() -> RedisServer:
    server = RedisServer(find_server(), STATE_DIR / "redis", port=_saved_port()).start()
    URL_FILE.write_text(server.url)
    return server


def _saved_port() -> int:
    # Reuse the last port so clients that remember the URL find the server again.
    if URL_FILE.exists():
        with contextlib.suppress(ValueError):
            port = int(URL_FILE.read_text().rsplit(":", 1)[1].split("/")[0])
            from conveyor.embedded import port_is_free

            return port if port_is_free(port) else 0
    return 0


async def run_up(opts: UpOptions) -> None:
    server = None if "CONVEYOR_REDIS_URL" in os.environ else start_private_server()
    try:
        app = load_app(opts.app) if opts.app else demo.app
        if server is not None and not app._conns:
            app.configure(redis_url=server.url)
        await _serve(app, opts, server)
    finally:
        if server is not None:
            server.stop()
            URL_FILE.unlink(missing_ok=True)


async def _serve(app: Conveyor, opts: UpOptions, server: RedisServer | None) -> None:
    from conveyor.api.factory import create_app
    from conveyor.api.server import ApiServer

    admin_key = app.settings.admin_key or secrets.token_urlsafe(32)
    api = ApiServer(create_app(app, admin_key=admin_key), opts.host, opts.port)
    await api.start()
    worker = Worker(app, concurrency=opts.concurrency)
    scheduler = Scheduler(app)
    tasks = [asyncio.create_task(worker.run(), name="worker"),
             asyncio.create_task(scheduler.run(), name="scheduler")]
    if opts.app is None:
        tasks.append(asyncio.create_task(_demo(app, opts.demo_rate), name="demo"))
    tasks += [asyncio.create_task(extra(app)) for extra in opts.extras]
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.stop)
    _banner(app, api.url, admin_key, server)
    await tasks[0]
    scheduler.stop()
    await tasks[1]
    await api.stop()
    for task in tasks[2:]:
        task.cancel()
    await asyncio.gather(*tasks[2:], return_exceptions=True)
    await app.close()


async def _demo(app: Conveyor, rate: float) -> None:
    await demo.produce(app, rate=0, rounds=20)  # a first burst so there is something to see
    if rate > 0:
        await demo.produce(app, rate=rate)


def _banner(app: Conveyor, url: str, admin_key: str, server: RedisServer | None) -> None:
    where = f"private server {server.binary} (data in {server.data_dir})" if server else "external"
    lines = [
        f"Dashboard: {url}/    API docs: {url}/docs",
        f"Admin key: {admin_key}",
        f"Redis:   {app.settings.redis_url}  [{where}]",
        f"History: {app.settings.store_url}",
        f"Jobs:    {', '.join(sorted(app.registry)) or '(none registered)'}",
        "Status:  conveyor status   (in another shell, from this folder)",
        "Stop:    Ctrl+C",
    ]
    console.print(Panel("\n".join(lines), title="Conveyor is up", expand=False))
