"""The job type the chaos workers run. Every execution writes to the LEDGER, a separate Redis
server that no fault ever touches (``CHAOS_LEDGER_URL``):

- at its start, ``chaos:starts`` gets ``<job id> <n> <attempt> <pid> <start time>``;
- at its end, ``chaos:ends`` gets ``<job id> <attempt> <pid> <start> <end> <ok|err>``.

Times are ``time.time()`` of this host (every process of a chaos run shares it). An ``end``
only says the handler returned: whether Redis took the result is the job hash's business.
"""

from __future__ import annotations

import asyncio
import os
import time

from redis.asyncio import Redis

from conveyor import Context, Conveyor

QUEUE = "chaos"
JOB_TYPE = "chaos_work"
STARTS = "chaos:starts"
ENDS = "chaos:ends"
LEDGER_ENV = "CHAOS_LEDGER_URL"
MAX_ATTEMPTS = 25  # faults re-run jobs without counting failures; only `fail` jobs use these
TIMEOUT = 120.0  # far above any job: a handler timeout would be a failure the run did not cause

app = Conveyor()
_ledger: Redis | None = None


class DeliberateFailure(Exception):
    """Raised by jobs submitted with ``fail=True``: they retry, then end in the DLQ."""


def ledger() -> Redis:
    """This process's client of the ledger server (one event loop per worker process)."""
    global _ledger  # noqa: PLW0603 - one client per worker process
    if _ledger is None:
        _ledger = Redis.from_url(os.environ[LEDGER_ENV], decode_responses=True,
                                 socket_timeout=10, socket_connect_timeout=5)
    return _ledger


@app.job(JOB_TYPE, queue=QUEUE, max_attempts=MAX_ATTEMPTS, timeout=TIMEOUT)
async def chaos_work(n: int, ms: int, fail: bool = False, ctx: Context | None = None) -> int:
    """Records its start, sleeps ``ms`` milliseconds, records its end; ``fail`` raises."""
    assert ctx is not None
    pid = os.getpid()
    started = time.time()
    await ledger().rpush(STARTS, f"{ctx.job_id} {n} {ctx.attempt} {pid} {started:.6f}")
    await asyncio.sleep(ms / 1000)
    outcome = "err" if fail else "ok"
    await ledger().rpush(
        ENDS, f"{ctx.job_id} {ctx.attempt} {pid} {started:.6f} {time.time():.6f} {outcome}")
    if fail:
        raise DeliberateFailure(f"job {n} fails by design (attempt {ctx.attempt})")
    return n


# -- jobs of the production-fault run (chaos.prodfaults) and tests/faults -------------------

CRON_QUEUE = "chaos-cron"
CRON_TYPE = "chaos_tick"
TICKS = "chaos:ticks"  # <job id> <pid> <start time>, one per execution of a cron job
STALL_QUEUE = "chaos-stall"
STALL_TYPE = "chaos_stall"
STALLS = "chaos:stalls"  # <job id> <attempt> <pid> <start> <end>


@app.job(CRON_TYPE, queue=CRON_QUEUE, cron="* * * * * *", misfire="once",
         max_attempts=MAX_ATTEMPTS, timeout=TIMEOUT)
async def chaos_tick(ctx: Context | None = None) -> None:
    """Fired by the scheduler every second; the tick it stands for is in the job's meta."""
    assert ctx is not None
    await ledger().rpush(TICKS, f"{ctx.job_id} {os.getpid()} {time.time():.6f}")


@app.job(STALL_TYPE, queue=STALL_QUEUE, max_attempts=MAX_ATTEMPTS, timeout=TIMEOUT)
async def chaos_stall(seconds: float, ctx: Context | None = None) -> None:
    """Blocks its worker's event loop for ``seconds`` (a sync sleep in an async handler, the
    commonest user mistake): nothing else of that worker runs meanwhile."""
    assert ctx is not None
    started = time.time()
    time.sleep(seconds)  # noqa: ASYNC251 - the fault: a handler that blocks the event loop
    await ledger().rpush(STALLS, f"{ctx.job_id} {ctx.attempt} {os.getpid()} {started:.6f} "
                                 f"{time.time():.6f}")
