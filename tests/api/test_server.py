"""``serve``/``ApiServer`` in the caller's event loop, the ``conveyor api`` command, and what
``conveyor up`` gets from ``up_service``."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import subprocess
import sys

import httpx
import pytest

from conveyor import Conveyor
from conveyor.api import serve
from conveyor.api.commands import up_service
from conveyor.api.server import GC_THRESHOLDS, tune_gc
from conveyor.embedded import RedisServer, free_port
from tests.procs import ROOT, worker_env

LAUNCH = ("import typer; from conveyor.api.commands import api_command; "
          "cli = typer.Typer(); cli.command('api')(api_command); cli.command('x')(lambda: 0); "
          "cli()")


async def test_serve_until_cancelled(conveyor: Conveyor) -> None:
    port = free_port()
    ready = asyncio.Event()
    task = asyncio.create_task(serve(conveyor, "127.0.0.1", port, admin_key="k" * 20,
                                     log_level="warning", ready=ready))
    await ready.wait()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as c:
        r = await c.get("/api/types", headers={"Authorization": "Bearer " + "k" * 20})
        assert r.status_code == 200
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_busy_port_is_a_clear_error(conveyor: Conveyor) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match="choose another --port"):
            await serve(conveyor, "127.0.0.1", port)


def test_up_service_prints_the_key_it_serves_with(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONVEYOR_ADMIN_KEY", raising=False)
    fresh, _ = up_service("127.0.0.1", 8000)
    assert fresh.startswith("cv_") and fresh != up_service("127.0.0.1", 8000)[0]
    monkeypatch.setenv("CONVEYOR_ADMIN_KEY", "from-the-environment-0123")
    assert up_service("127.0.0.1", 8000)[0] == "from-the-environment-0123"


def test_tune_gc_sets_the_api_process_thresholds() -> None:
    before = gc.get_threshold()
    try:
        tune_gc()
        assert gc.get_threshold() == GC_THRESHOLDS
        assert GC_THRESHOLDS[0] > 10 * before[0]  # young collections far rarer than default
    finally:
        gc.set_threshold(*before)


def test_conveyor_api_command(any_redis: RedisServer) -> None:
    port = free_port()
    env = {**worker_env(any_redis.url), "CONVEYOR_ADMIN_KEY": "the-admin-key-0123456"}
    proc = subprocess.Popen(
        [sys.executable, "-c", LAUNCH, "api", "tests.apps.basic:app", "--port", str(port),
         "--log-level", "warning"], env=env, cwd=ROOT, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        banner = proc.stdout.readline().decode()  # printed before it listens
        assert f"http://127.0.0.1:{port}" in banner
        with httpx.Client(base_url=f"http://127.0.0.1:{port}",
                          headers={"Authorization": "Bearer the-admin-key-0123456"}) as c:
            r = _get_when_up(c, "/api/types")
            assert {t["name"] for t in r.json()} >= {"record", "record_sync"}
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(20) == 0, proc.stderr.read().decode() if proc.stderr else ""


def _get_when_up(client: httpx.Client, path: str) -> httpx.Response:
    """The child process listens a moment after its banner; no event crosses processes."""
    import time

    deadline = time.monotonic() + 20
    while True:
        try:
            return client.get(path)
        except httpx.ConnectError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
