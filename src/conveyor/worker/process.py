"""Run a sync handler in a child process that can be killed (timeouts, cancellation)."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Callable
from typing import Any

import orjson

from conveyor.errors import ConveyorError

KILL_GRACE_SECONDS = 2.0


class ChildFailed(ConveyorError):
    """The handler raised in its child process (type, message and traceback kept)."""

    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(f"{error.get('type', 'Error')}: {error.get('message', '')}")
        self.remote_traceback = str(error.get("traceback", ""))


def handler_ref(func: Callable[..., Any]) -> str:
    return f"{func.__module__}:{func.__qualname__}"


async def run_in_child(func: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
    """Call ``func(**kwargs)`` in a fresh interpreter; on cancellation, SIGTERM the child
    and SIGKILL it after a grace period."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "conveyor.worker.child",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    request = orjson.dumps({"handler": handler_ref(func), "kwargs": kwargs})
    try:
        out, _ = await proc.communicate(request)
    except asyncio.CancelledError:
        await _terminate(proc)
        raise
    if proc.returncode != 0 or not out:
        raise ChildFailed({"type": "ChildDied", "message": f"exit status {proc.returncode}"})
    reply = orjson.loads(out)
    if "error" in reply:
        raise ChildFailed(reply["error"])
    return reply["ok"]


async def _terminate(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        await asyncio.wait_for(proc.wait(), KILL_GRACE_SECONDS)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
