"""Starting real ``conveyor worker`` processes for tests that kill, stop and signal them."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from conveyor.broker.keys import Keys
from tests.conftest import FAST

ROOT = Path(__file__).resolve().parent.parent


def worker_env(redis_url: str, **overrides: float | str) -> dict[str, str]:
    env = dict(os.environ)
    env["CONVEYOR_REDIS_URL"] = redis_url
    env["PYTHONPATH"] = str(ROOT)
    for name, value in {**FAST, **overrides}.items():
        env[f"CONVEYOR_{name.upper()}"] = str(value)
    return env


def start_worker(
    redis_url: str, *args: str, app: str = "tests.apps.basic:app", **overrides: float | str
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "conveyor", "worker", app, *args],
        env=worker_env(redis_url, **overrides), cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )


def wait_for(condition: Callable[[], object], timeout: float, what: str) -> object:
    """Poll a condition observed in another process (no event crosses the boundary)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def spawn_worker(
    redis_url: str, log: Path, *args: str, app: str = "tests.apps.basic:app",
    **overrides: float | str,
) -> subprocess.Popen[bytes]:
    """Like ``start_worker``, with stderr (the worker's warnings) appended to ``log``: a file
    never fills up and blocks the worker the way an unread pipe can."""
    with log.open("ab") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "conveyor", "worker", app, *args],
            env=worker_env(redis_url, **overrides), cwd=ROOT,
            stdout=subprocess.DEVNULL, stderr=sink,
        )


def worker_id(r: redis.Redis, pid: int, timeout: float = 20.0) -> str:
    """The id of the live worker process ``pid``, once its first heartbeat is in Redis."""
    glob = Keys("cv").glob

    def find() -> str | None:
        for wid in r.zrange(glob.workers, 0, -1):
            if r.hget(glob.worker(wid), "pid") == str(pid):
                return str(wid)
        return None

    return str(wait_for(find, timeout, f"worker pid {pid} to register"))


def redis_ms(r: redis.Redis) -> int:
    """The server's clock in ms: the clock every lease, deadline and event id uses."""
    seconds, micros = r.time()
    return int(seconds) * 1000 + int(micros) // 1000


def submit(redis_url: str, specs: list[dict[str, Any]]) -> list[str]:
    """Enqueue jobs of ``tests.apps.basic`` (all in one call) and return their ids."""
    from conveyor import Conveyor
    from tests.apps import basic

    async def go() -> list[str]:
        app = Conveyor(redis_url=redis_url, **FAST)
        app.registry.update(basic.app.registry)
        try:
            return [h.id for h in await app.enqueue_many(specs)]
        finally:
            await app.close()

    return asyncio.run(go())
