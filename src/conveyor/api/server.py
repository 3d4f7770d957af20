"""Running the gateway with uvicorn inside the caller's event loop (``conveyor api`` runs it
alone; ``conveyor up`` next to a worker and the scheduler)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import socket
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

import uvicorn

from conveyor.api.connguard import ConnectionGuard, guard_config
from conveyor.api.factory import create_app
from conveyor.api.ratelimit import parse_networks
from conveyor.api.settings import ApiSettings
from conveyor.api.wsproto import MAX_MESSAGE

if TYPE_CHECKING:
    from fastapi import FastAPI

    from conveyor.app import Conveyor

log = logging.getLogger("conveyor.api")

# The cyclic collector's thresholds for a process that serves the API alone. A request
# allocates containers by the thousand (a 1,000-job bulk: its JSON, models, submission
# mappings and jobs), and at Python's default of a young collection every 700 of them the
# collector traversed the live requests' objects over and over: 40 % of the process's CPU
# per bulk job (59 -> 33 us in the issue 14 measurements). Only cyclic garbage waits longer.
GC_THRESHOLDS = (50_000, 20, 20)


def tune_gc() -> None:
    """Set ``GC_THRESHOLDS`` (for ``conveyor api``; a host process keeps its own)."""
    gc.set_threshold(*GC_THRESHOLDS)


class _Server(uvicorn.Server):
    """uvicorn's server that tells when it listens and leaves signals to its host when
    embedded (``conveyor up`` handles SIGTERM itself)."""

    def __init__(self, config: uvicorn.Config, handle_signals: bool) -> None:
        super().__init__(config)
        self.handle_signals = handle_signals
        self.ready = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        if not self.handle_signals:
            yield
            return
        with super().capture_signals():
            try:
                yield
            finally:
                # uvicorn re-raises the signal after a graceful stop (exit status 143);
                # a completed graceful shutdown is a success: exit 0, like the worker.
                self._captured_signals.clear()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.ready.set()


class ApiServer:
    """The gateway app served by uvicorn on ``host:port`` (port 0: any free port, see
    ``.port``). ``start`` returns once it listens; ``stop`` shuts down gracefully (WebSocket
    clients get close code 1012).

    Connections are guarded (``conveyor.api.connguard``) with the app's ``ApiSettings``:
    header deadline and size, connections per client IP; keep-alive is uvicorn's own."""

    def __init__(
        self, app: FastAPI, host: str = "127.0.0.1", port: int = 8000, *,
        log_level: str = "warning", handle_signals: bool = False, **uvicorn_options: Any,
    ) -> None:
        self.app = app
        self.host = host
        self.port = port
        gateway = getattr(app.state, "gateway", None)
        settings: ApiSettings = gateway.settings if gateway is not None else ApiSettings()
        options: dict[str, Any] = {
            "log_level": log_level, "proxy_headers": False, "server_header": False,
            "ws_max_size": MAX_MESSAGE, "lifespan": "on", "timeout_graceful_shutdown": 5,
            "http": "httptools", "timeout_keep_alive": settings.keepalive_timeout_seconds,
            **uvicorn_options}
        config = uvicorn.Config(app, host=host, port=port, **options)
        self.guard = ConnectionGuard(
            settings.header_timeout_seconds, settings.max_header_bytes,
            settings.max_connections_per_ip, parse_networks(settings.trusted_proxies))
        guard_config(config, self.guard)
        self.server = _Server(config, handle_signals)
        self.task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        sock = _bind(self.host, self.port)  # bind first: a busy port raises here, clearly
        self.port = int(sock.getsockname()[1])
        self.task = asyncio.create_task(self.server.serve(sockets=[sock]), name="conveyor-api")
        ready = asyncio.create_task(self.server.ready.wait())
        await asyncio.wait({self.task, ready}, return_when=asyncio.FIRST_COMPLETED)
        if not ready.done():
            ready.cancel()
            await self.task  # raises what made the server stop
            raise RuntimeError("the API server stopped during startup (see the log)")
        log.info("Conveyor API listening on %s", self.url)

    async def wait(self) -> None:
        """Until the server stops (a signal, when it handles them, or ``stop``)."""
        if self.task is not None:
            await self.task

    async def stop(self) -> None:
        self.server.should_exit = True
        if self.task is not None:
            await self.task


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted sockets only when the
    # listener says TCP, and without it every response waits 40 ms for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port}: {exc.strerror} (choose another "
                      "--port)") from exc
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


async def serve(
    conveyor: Conveyor, host: str = "127.0.0.1", port: int = 8000, *,
    admin_key: str | None = None, log_level: str = "info", handle_signals: bool = False,
    ready: asyncio.Event | None = None,
) -> None:
    """Serve the API until cancelled (then shut down gracefully) or, with
    ``handle_signals``, until SIGINT/SIGTERM. ``ready`` is set once it listens."""
    server = ApiServer(create_app(conveyor, admin_key=admin_key), host, port,
                       log_level=log_level, handle_signals=handle_signals)
    await server.start()
    if ready is not None:
        ready.set()
    try:
        await server.wait()
    except asyncio.CancelledError:
        await asyncio.shield(server.stop())
        raise
