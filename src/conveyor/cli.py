"""The ``conveyor`` command line (typer + rich).

Exit status: 0 ok, 1 a runtime error (Redis unreachable, a job that failed...), 2 bad input
(also an unknown job id or schedule, and a destructive command without a terminal to confirm
on and without ``--yes``), 3 a wait that timed out (``enqueue --wait``). List commands take
``--json``; off a terminal their tables print whole, ids never cut.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
import typer
from rich.markup import escape
from rich.table import Table

from conveyor import inspect as views
from conveyor.cli_schedules import schedules_cli
from conveyor.cli_support import (
    EXIT_BAD_INPUT,
    EXIT_RUNTIME,
    EXIT_TIMEOUT,
    app_or_exit,
    confirm_or_exit,
    console,
    err,
    plain_help,
    print_json,
    run,
    set_redis_wait,
    show,
)
from conveyor.errors import ConveyorError, InvalidState, JobFailed, JobNotFound, ValidationError
from conveyor.job import JobInfo
from conveyor.logs import setup_logging

plain_help()
cli = typer.Typer(help="Conveyor: a distributed job scheduler on Redis.", no_args_is_help=True)
dlq_cli = typer.Typer(help="Inspect and steer a queue's dead-letter queue.", no_args_is_help=True)
cli.add_typer(dlq_cli, name="dlq")
cli.add_typer(schedules_cli, name="schedules")

AppArg = Annotated[str, typer.Argument(help="Your app as module:attribute, e.g. myapp:app")]
AppOpt = Annotated[str | None, typer.Option("--app", metavar="APP",
                                            help="module:attribute of your app")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON (full ids, every field)")]
IdArg = Annotated[str, typer.Argument(metavar="ID", help="The job's id")]

# Seconds a command keeps trying to reach Redis before it exits 1 (cli_support): a long-lived
# process rides out a server that is still starting; once running it survives outages.
# ``up`` brings its own server: no check.
REDIS_WAIT: dict[str, float | None] = {"worker": 6.0, "scheduler": 6.0, "recorder": 6.0,
                                      "api": 6.0, "demo": 6.0, "up": None}


def _version(value: bool) -> None:
    if value:
        console.print(f"conveyor {package_version()}")
        raise typer.Exit()


def package_version() -> str:
    """The installed distribution's version (the package's own when run from a checkout)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("conveyor")
    except PackageNotFoundError:
        from conveyor import __version__

        return __version__


@cli.callback()
def _command(
    ctx: typer.Context,
    _: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                    help="Print the version and exit")] = False,
) -> None:
    set_redis_wait(REDIS_WAIT.get(ctx.invoked_subcommand or "", 0.0))


def _mount_gateway_commands() -> None:
    from conveyor.api.commands import api_command, keys_cli
    from conveyor.up import rotate_admin_command

    cli.command("api")(api_command)
    keys_cli.command("rotate-admin")(rotate_admin_command)
    cli.add_typer(keys_cli, name="keys")


def main() -> None:
    _mount_gateway_commands()
    setup_logging()
    cli()


def _fail(exc: Exception) -> typer.Exit:
    """Print a command's error; the exit to raise: 2 for bad input (an unknown id too), 1
    for what went wrong at run time (a job in the wrong state, a job that failed)."""
    field = f" ({exc.field})" if isinstance(exc, ValidationError) else ""
    err.print(f"[red]error{field}:[/red] {escape(str(exc))}")
    runtime = isinstance(exc, InvalidState | JobFailed)
    return typer.Exit(EXIT_RUNTIME if runtime else EXIT_BAD_INPUT)


@cli.command()
def worker(
    app: AppArg,
    queues: Annotated[str | None, typer.Option(help="Comma-separated queues (default: the "
                                               "queues of the app's job types)")] = None,
    concurrency: Annotated[int, typer.Option(min=1, max=10_000, help="Jobs at once")] = 10,
    grace: Annotated[float | None, typer.Option(help="Seconds to finish jobs on SIGTERM")] = None,
) -> None:
    """Run jobs from the app's queues until SIGTERM (graceful) or a second signal (at once)."""
    from conveyor.worker.worker import Worker

    the_app = app_or_exit(app)
    names = [q.strip() for q in queues.split(",") if q.strip()] if queues else None

    async def go() -> None:
        w = Worker(the_app, names, concurrency, grace=grace)
        w.install_signal_handlers()
        await w.run()
        await the_app.close()

    try:
        run(go())
    except ConveyorError as exc:
        raise _fail(exc) from None
    # Every lease is settled. A sync handler past its grace period may still be running in
    # a thread (threads cannot be killed); its job was released, so exit without waiting.
    logging.shutdown()
    sys.stdout.flush()
    os._exit(0)


@cli.command()
def up(
    app: Annotated[str | None, typer.Argument(metavar="APP", help="module:attribute "
                                              "(default: the demo jobs)")] = None,
    port: Annotated[int, typer.Option(help="API and dashboard port")] = 8000,
    host: Annotated[str, typer.Option(help="API bind address")] = "127.0.0.1",
    concurrency: Annotated[int, typer.Option(min=1, help="Worker concurrency")] = 20,
    demo_rate: Annotated[float, typer.Option(
        min=0, help="Without an APP: demo rounds (about 5 jobs, some retried, some dead) "
        "submitted per second, after a first burst; 0: the burst only")] = 1.0,
    grace: Annotated[float | None, typer.Option(
        min=0, help="Seconds the worker gets to finish its jobs on SIGTERM or Ctrl-C "
        "(default: CONVEYOR_GRACE_SECONDS); everything is stopped a few seconds later")] = None,
    rotate_admin_key: Annotated[bool, typer.Option(
        "--rotate-admin-key", help="Make a new admin key (kept in .conveyor/admin.key)")] = False,
) -> None:
    """Run everything on embedded defaults, supervised, with demo jobs when no APP is given.

    A private Redis (with a password), then the API, a worker and the scheduler as processes
    of their own (restarted if they die), and, without an APP, a steady flow of demo jobs.
    SIGTERM or Ctrl-C stops them all within the grace period; a second one at once."""
    from conveyor.up import UpOptions, run_up

    code = run(run_up(UpOptions(app=app, host=host, port=port, concurrency=concurrency,
                                demo_rate=demo_rate, grace=grace,
                                rotate_admin_key=rotate_admin_key)))
    raise typer.Exit(code)


@cli.command(hidden=True)
def demo(
    rate: Annotated[float, typer.Option(min=0, help="Rounds per second after the burst")] = 1.0,
    burst: Annotated[int, typer.Option(min=0, help="Rounds submitted at once first")] = 20,
) -> None:
    """Submit demo jobs (``conveyor up`` runs this when no APP is given)."""
    from conveyor import demo as demo_jobs

    the_app = app_or_exit("conveyor.demo:app")

    async def go() -> None:
        try:
            await demo_jobs.produce(the_app, rate=0, rounds=burst)
            if rate > 0:
                await demo_jobs.produce(the_app, rate=rate, start=burst)
        finally:
            await the_app.close()

    with contextlib.suppress(KeyboardInterrupt):
        run(go())


@cli.command()
def enqueue(
    type: Annotated[str, typer.Argument(help="Job type name")],
    args: Annotated[str, typer.Option("--args", help="Arguments as a JSON object")] = "{}",
    queue: Annotated[str | None, typer.Option(help="Queue (default: the type's)")] = None,
    priority: Annotated[str | None, typer.Option(help="high, normal or low")] = None,
    delay: Annotated[float | None, typer.Option(help="Seconds to wait before running")] = None,
    max_attempts: Annotated[int | None, typer.Option(help="Attempts before the DLQ")] = None,
    idempotency_key: Annotated[str | None, typer.Option(help="Return the existing job for "
                                                         "this key while it lives")] = None,
    wait: Annotated[float | None, typer.Option(help="Seconds to wait for the result")] = None,
    app: AppOpt = None,
) -> None:
    """Submit one job and print its id (and its result with --wait)."""
    try:
        parsed = orjson.loads(args)
    except orjson.JSONDecodeError as exc:
        err.print(f"[red]error (args):[/red] --args is not valid JSON: {exc}")
        raise typer.Exit(2) from None
    the_app = app_or_exit(app)

    async def go() -> None:
        try:
            handle = await the_app.enqueue(
                type, parsed, queue=queue, priority=priority, delay=delay,
                max_attempts=max_attempts, idempotency_key=idempotency_key)
            console.print(handle.id if handle.created else f"{handle.id} (existing)")
            if wait is not None:
                console.print_json(orjson.dumps(await handle.result(timeout=wait)).decode())
        finally:
            await the_app.close()

    try:
        run(go())
    except TimeoutError:
        err.print(f"[yellow]timed out:[/yellow] no result within {wait}s; the job goes on "
                  "(see `conveyor job ID`)")
        raise typer.Exit(EXIT_TIMEOUT) from None
    except ConveyorError as exc:
        raise _fail(exc) from None


@cli.command()
def job(job_id: IdArg, as_json: JsonOpt = False, app: AppOpt = None) -> None:
    """A job's status, its attempts with their errors, and its result."""
    the_app = app_or_exit(app)

    async def go() -> JobInfo | None:
        try:
            return await the_app.get_job(job_id)
        finally:
            await the_app.close()

    info = run(go())
    if info is None:
        raise _fail(JobNotFound(job_id))
    if as_json:
        print_json(info.model_dump(mode="json"))
        return
    _print_job(info)


def _print_job(info: JobInfo) -> None:
    lines = [f"job      {info.id}", f"type     {info.type}  (queue {info.queue}, priority "
             f"{info.priority})", f"status   {info.status}  (attempt {info.attempt} of "
             f"{info.max_attempts})"]
    for name, ms in (("created", info.created_ms), ("started", info.started_ms),
                     ("finished", info.finished_ms)):
        if ms:
            lines.append(f"{name:<8} {datetime.fromtimestamp(ms / 1000, UTC).isoformat()}")
    if info.progress is not None and info.status == "active":
        lines.append(f"progress {info.progress:.0%} {info.progress_message or ''}".rstrip())
    lines += [f"attempt {e.attempt}: {e.type}: {e.message}".rstrip(": ") for e in info.errors]
    if info.status == "completed":
        lines.append(f"result   {orjson.dumps(info.result).decode()}")
    elif info.error and not info.errors:
        lines.append(f"error    {info.error}")
    for line in lines:
        console.print(line, markup=False, highlight=False)


@cli.command()
def cancel(job_id: IdArg, app: AppOpt = None) -> None:
    """Cancel a job: at once if it waits, on its worker within moments if it runs."""
    the_app = app_or_exit(app)

    async def go() -> str:
        try:
            return await the_app.cancel(job_id)
        finally:
            await the_app.close()

    try:
        outcome = run(go())
    except ConveyorError as exc:
        raise _fail(exc) from None
    console.print(f"{job_id} {outcome.replace('_', ' ')}")


@cli.command()
def retry(job_id: IdArg, app: AppOpt = None) -> None:
    """Queue a dead or canceled job again, with a fresh attempt budget."""
    the_app = app_or_exit(app)

    async def go() -> None:
        try:
            await the_app.retry(job_id)
        finally:
            await the_app.close()

    try:
        run(go())
    except ConveyorError as exc:
        raise _fail(exc) from None
    console.print(f"{job_id} queued again")


@cli.command()
def status(as_json: JsonOpt = False, app: AppOpt = None) -> None:
    """Queue depths; workers with the health of their loops; schedulers (which one leads);
    jobs that no live worker can run."""
    the_app = app_or_exit(app)

    async def go() -> Overview:
        try:
            return Overview(await views.queue_stats(the_app), await views.workers(the_app),
                            await views.schedulers(the_app), await views.unrunnable(the_app))
        finally:
            await the_app.close()

    overview = run(go())
    if as_json:
        print_json(overview.as_json())
        return
    show(_queue_table(overview.queues))
    show(_worker_table(overview.workers))
    show(_scheduler_table(overview.schedulers))
    if overview.unrunnable:
        show(_unrunnable_table(overview.unrunnable))


@dataclass
class Overview:
    queues: list[views.QueueStats]
    workers: list[views.WorkerInfo]
    schedulers: list[views.SchedulerInfo]
    unrunnable: list[views.Unrunnable]

    def as_json(self) -> dict[str, Any]:
        return {
            "queues": [q.model_dump() for q in self.queues],
            "workers": [w.model_dump() | {"stuck_loops": w.stuck_loops} for w in self.workers],
            "schedulers": [s.model_dump() | {"stuck_loops": s.stuck_loops}
                           for s in self.schedulers],
            "unrunnable": [u.model_dump() for u in self.unrunnable],
        }


def _queue_table(queues: list[views.QueueStats]) -> Table:
    table = Table(title="Queues")
    for col in ("queue", "high", "normal", "low", "delayed", "active", "dead", "oldest wait"):
        table.add_column(col, justify="left" if col == "queue" else "right")
    for q in queues:
        age = "-" if q.oldest_waiting_seconds is None else f"{q.oldest_waiting_seconds:.1f}s"
        name = f"{q.name} (paused)" if q.paused else q.name
        table.add_row(name, *(str(v) for v in (q.high, q.normal, q.low, q.delayed, q.active,
                                               q.dead)), age)
    return table


def _worker_table(workers: list[views.WorkerInfo]) -> Table:
    table = Table(title="Workers")
    for col in ("worker", "queues", "running", "processed", "failed", "stalls", "loops",
                "alive"):
        table.add_column(col)
    for w in workers:
        table.add_row(w.id, ",".join(w.queues), f"{len(w.current)}/{w.concurrency}",
                      str(w.processed), str(w.failed), str(w.stalls), _loops(w),
                      "yes" if w.alive else "[red]no[/red]")
    return table


def _loops(process: views.WorkerInfo | views.SchedulerInfo) -> str:
    if process.stuck_loops:
        return f"[red]stuck: {', '.join(process.stuck_loops)}[/red]"
    return f"{len(process.loops)} ok" if process.loops else "-"


def _scheduler_table(schedulers: list[views.SchedulerInfo]) -> Table:
    table = Table(title="Schedulers")
    for col in ("scheduler", "leader", "token", "loops"):
        table.add_column(col)
    for s in schedulers:
        table.add_row(s.owner, "[green]yes[/green]" if s.leading else "no", str(s.token),
                      _loops(s))
    return table


def _unrunnable_table(rows: list[views.Unrunnable]) -> Table:
    table = Table(title="Jobs no live worker can run")
    for col in ("queue", "type", "waiting", "why"):
        table.add_column(col)
    for u in rows:
        why = ("no live worker serves the queue" if not u.workers else
               f"none of the {u.workers} live worker(s) of the queue has this type"
               if u.in_catalog else "no worker ever registered this type (a typo?)")
        table.add_row(u.queue, u.type, str(u.waiting), why)
    return table


@dlq_cli.command("list")
def dlq_list(
    queue: Annotated[str, typer.Argument(help="Queue name")],
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="Most jobs shown")] = 50,
    as_json: JsonOpt = False,
    app: AppOpt = None,
) -> None:
    """The newest dead jobs of a queue with their last error."""
    the_app = app_or_exit(app)

    async def go() -> list[Any]:
        try:
            return await views.dead_letters(the_app, queue, 0, limit)
        finally:
            await the_app.close()

    try:
        jobs = run(go())
    except ConveyorError as exc:
        raise _fail(exc) from None
    if as_json:
        print_json([job.model_dump(mode="json") for job in jobs])
        return
    table = Table(title=f"Dead letters of {queue}")
    table.add_column("id", no_wrap=True)
    for col in ("type", "attempts", "error"):
        table.add_column(col)
    for job in jobs:
        table.add_row(job.id, job.type, str(job.attempt), escape((job.error or "")[:100]))
    show(table)


@dlq_cli.command("retry")
def dlq_retry(
    queue: Annotated[str, typer.Argument(help="Queue name")],
    ids: Annotated[list[str] | None, typer.Option("--id", metavar="ID", help="Only these "
                                                  "jobs (repeat --id for more)")] = None,
    app: AppOpt = None,
) -> None:
    """Queue dead jobs again (all, or those given with --id)."""
    _dlq_action(app, queue, ids, retry=True)


@dlq_cli.command("purge")
def dlq_purge(
    queue: Annotated[str, typer.Argument(help="Queue name")],
    ids: Annotated[list[str] | None, typer.Option("--id", metavar="ID", help="Only these "
                                                  "jobs (repeat --id for more)")] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation "
                                      "(needed without a terminal)")] = False,
    app: AppOpt = None,
) -> None:
    """Delete dead jobs for good (all, or those given with --id); asks first."""
    what = f"{len(ids)} dead job(s)" if ids else "EVERY dead job"
    confirm_or_exit(f"Delete {what} of {queue}?", yes)
    _dlq_action(app, queue, ids, retry=False)


def _dlq_action(spec: str | None, queue: str, ids: list[str] | None, *, retry: bool) -> None:
    the_app = app_or_exit(spec)

    async def go() -> int:
        try:
            if retry:
                return await the_app.retry_dead(queue, ids)
            return await the_app.purge_dead(queue, ids)
        finally:
            await the_app.close()

    try:
        count = run(go())
    except ConveyorError as exc:
        raise _fail(exc) from None
    console.print(f"{'requeued' if retry else 'deleted'} {count} job(s) of {queue}")


@cli.command()
def scheduler(
    app: AppArg,
    history: Annotated[bool, typer.Option(help="Also run the history recorder")] = True,
) -> None:
    """Cron (leader-elected), the reaper and the history recorder."""
    from conveyor.scheduler.service import Scheduler

    the_app = app_or_exit(app)

    async def go() -> None:
        service = Scheduler(the_app, record_history=history)
        _on_signals(service.stop)
        await service.run()
        await the_app.close()

    run(go())


@cli.command()
def recorder(app: AppArg) -> None:
    """Only the history recorder: every queue's events into the store (CONVEYOR_STORE_URL)."""
    from conveyor.scheduler.history import run_recorder
    from conveyor.supervise import LoopHealth, Supervisor

    the_app = app_or_exit(app)

    async def go() -> None:
        supervisor = Supervisor("recorder")

        async def body(health: LoopHealth) -> None:
            await run_recorder(the_app, health=health)

        task = supervisor.spawn("recorder", body)
        _on_signals(task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await supervisor.stop()

    run(go())


@cli.command()
def recover(
    apply: Annotated[bool, typer.Option("--apply", help="Re-enqueue (default: dry run)")] = False,
    queue: Annotated[str | None, typer.Option(help="Only this queue")] = None,
    include_gaps: Annotated[bool, typer.Option(
        "--include-gaps", help="Also re-enqueue jobs whose history has a gap (their end "
        "may have been lost: they may have completed already)")] = False,
    app: AppOpt = None,
) -> None:
    """Re-enqueue jobs the history holds as unfinished but Redis no longer knows."""
    from conveyor.recovery import RecorderBehind
    from conveyor.recovery import recover as run_recovery
    from conveyor.store import open_store

    the_app = app_or_exit(app)

    async def go() -> list[Any]:
        store = await open_store(the_app.settings.store_url)
        try:
            return await run_recovery(the_app.redis, the_app.keys, store, the_app.broker,
                                      dry_run=not apply, queue=queue,
                                      include_gaps=include_gaps)
        finally:
            await store.close()
            await the_app.close()

    try:
        plans = run(go())
    except RecorderBehind as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(EXIT_BAD_INPUT) from None
    ready = [p for p in plans if p.held_back is None]
    held = [p for p in plans if p.held_back is not None]
    show(_plan_table(("Re-enqueued" if apply else "Would re-enqueue (dry run; "
                               "--apply to do it)") + f": {len(ready)} job(s)", ready))
    if held:
        show(_plan_table(f"Not re-enqueued, unknown: history has a gap: {len(held)} "
                                  "job(s) (--include-gaps to re-enqueue them)", held))
        err.print(f"[yellow]{held[0].held_back}[/yellow]")


def _plan_table(title: str, plans: list[Any]) -> Table:
    table = Table(title=title)
    for col in ("id", "queue", "type", "was"):
        table.add_column(col)
    for plan in plans:
        table.add_row(plan.job_id, plan.queue, plan.type, plan.status)
    return table


def _on_signals(callback: Callable[[], object]) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, callback)
