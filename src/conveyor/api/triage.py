"""Dead-letter triage runs: retry or purge every dead job that matched, a chunk at a time, in
a background task of the API process, while the dashboard polls its progress by id.

Responsibilities: start a run over ids already matched, keep its progress (matched, done,
changed, state, error), yield to the event loop between chunks so other requests go on, and
forget finished runs after ``KEEP_SECONDS``. Runs live in the process that started them: with
several API processes behind a balancer, poll the one that answered the POST (its id is
unknown to the others, which answer 404).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from conveyor import triage

if TYPE_CHECKING:
    from conveyor.app import Conveyor

log = logging.getLogger("conveyor.api")
Action = Literal["retry", "purge"]
State = Literal["running", "done", "failed"]
KEEP_SECONDS = 600.0
MAX_RUNS = 100


@dataclass
class Run:
    """One triage run and its progress."""

    id: str
    queue: str
    action: Action
    matched: int
    done: int = 0
    changed: int = 0
    state: State = "running"
    error: str | None = None
    started: float = field(default_factory=time.monotonic)
    ended: float | None = None


class TriageRuns:
    """The runs of one API process."""

    def __init__(self) -> None:
        self._runs: dict[str, Run] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def get(self, run_id: str) -> Run | None:
        return self._runs.get(run_id)

    def start(self, app: Conveyor, queue: str, action: Action, ids: Sequence[str]) -> Run:
        self._forget_old()
        run = Run(id=secrets.token_hex(8), queue=queue, action=action, matched=len(ids))
        self._runs[run.id] = run
        task = asyncio.create_task(self._work(app, run, list(ids)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return run

    async def _work(self, app: Conveyor, run: Run, ids: list[str]) -> None:
        step = triage.retry_chunk if run.action == "retry" else triage.purge_chunk
        try:
            for start in range(0, len(ids), triage.CHUNK):
                part = ids[start:start + triage.CHUNK]
                run.changed += await step(app, run.queue, part)
                run.done += len(part)
                await asyncio.sleep(0)  # let other requests in between chunks
            run.state = "done"
        except Exception as exc:  # kept on the run for the page to show, and logged
            log.exception("DLQ %s of %s stopped after %d jobs", run.action, run.queue, run.done)
            run.state, run.error = "failed", f"{type(exc).__name__}: {exc}"
        finally:
            run.ended = time.monotonic()

    def _forget_old(self) -> None:
        now = time.monotonic()
        old = [r.id for r in self._runs.values()
               if r.ended is not None and now - r.ended > KEEP_SECONDS]
        for run_id in old:
            del self._runs[run_id]
        while len(self._runs) >= MAX_RUNS:  # oldest first; a dict keeps insertion order
            del self._runs[next(iter(self._runs))]

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
