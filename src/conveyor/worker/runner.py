"""Runs one claimed job's handler and turns what happened into an ``Outcome``."""

from __future__ import annotations

import asyncio
import functools
import time
import traceback
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import orjson

from conveyor import serde
from conveyor.errors import ConveyorError, NonRetryable, NotJSON, Retry
from conveyor.job import ClaimedJob
from conveyor.registry import JobType
from conveyor.worker.context import Context
from conveyor.worker.process import ChildFailed, run_in_child


@dataclass(frozen=True, slots=True)
class Outcome:
    """``ok`` with ``result_json``, or an error with how to go on: ``retry_delay`` is None for
    backoff, a number of seconds for ``Retry(delay=...)``, and ``retryable`` False for the DLQ."""

    ok: bool
    result_json: str = "null"
    error: dict[str, Any] | None = None
    retryable: bool = True
    retry_delay: float | None = None


class HandlerTimeout(ConveyorError):
    """The handler ran past its timeout and was stopped (a sync one is told via ctx)."""


def error_dict(exc: BaseException, job: ClaimedJob, worker_id: str) -> dict[str, Any]:
    remote = exc.remote_traceback if isinstance(exc, ChildFailed) else ""
    return {
        "type": type(exc).__name__,
        "message": str(exc) or type(exc).__name__,
        "traceback": remote or "".join(traceback.format_exception(exc)),
        "worker": worker_id,
        "attempt": job.attempt,
        "started": job.started,
        "finished": time.time(),
    }


async def run_handler(
    jt: JobType, job: ClaimedJob, ctx: Context, executor: Executor
) -> Any:
    """Validate arguments and call the handler; sync handlers run in the thread pool.

    The worker enforces the timeout (one timer per job, cheaper than a context manager)."""
    if jt.in_process:
        # JSON in, JSON out: the child validates nothing the worker has not validated.
        jt.validate_json(job.args_json)
        return await run_in_child(jt.func, orjson.loads(job.args_json))
    kwargs = jt.call_kwargs(jt.validate_json(job.args_json))
    if jt.ctx_param:
        kwargs[jt.ctx_param] = ctx
    if jt.is_async:
        return await jt.func(**kwargs)
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(executor, functools.partial(jt.func, **kwargs))


async def execute(
    jt: JobType | None, job: ClaimedJob, ctx: Context, executor: Executor, worker_id: str
) -> Outcome:
    """Run the job; every exception becomes an outcome. Cancellation propagates."""
    if jt is None:
        exc = LookupError(f"no handler for job type {job.type!r} on worker {worker_id}")
        return Outcome(False, error=error_dict(exc, job, worker_id))
    try:
        value = await run_handler(jt, job, ctx, executor)
        serde.check_json(value, "result")
        return Outcome(True, result_json=serde.dumps(value))
    except Retry as exc:
        return Outcome(False, error=error_dict(exc, job, worker_id), retry_delay=exc.delay)
    except (NonRetryable, NotJSON) as exc:
        return Outcome(False, error=error_dict(exc, job, worker_id), retryable=False)
    except ConveyorError as exc:
        retryable = not isinstance(exc, ValueError)  # bad arguments will not get better
        return Outcome(False, error=error_dict(exc, job, worker_id), retryable=retryable)
    except Exception as exc:
        return Outcome(False, error=error_dict(exc, job, worker_id))
