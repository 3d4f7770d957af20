"""The ``conveyor`` command line (typer + rich)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable
from typing import Annotated, Any

import orjson
import typer
from rich.table import Table

from conveyor import inspect as views
from conveyor.cli_support import app_or_exit, console, err, run, set_redis_wait
from conveyor.errors import ConveyorError, ValidationError
from conveyor.logs import setup_logging

cli = typer.Typer(help="Conveyor: a distributed job scheduler on Redis.", no_args_is_help=True)
dlq_cli = typer.Typer(help="Inspect and steer a queue's dead-letter queue.", no_args_is_help=True)
cli.add_typer(dlq_cli, name="dlq")

AppArg = Annotated[str, typer.Argument(help="Your app as module:attribute, e.g. myapp:app")]
AppOpt = Annotated[str | None, typer.Option("--app", help="module:attribute of your app")]

# Seconds a command keeps trying to reach Redis before it exits 1 (cli_support): a long-lived
# process rides out a server that is still starting; once running it survives outages.
# ``up`` brings its own server and ``api`` reports Redis on /readyz: no check.
REDIS_WAIT: dict[str, float | None] = {"worker": 6.0, "scheduler": 6.0, "recorder": 6.0,
                                      "up": None, "api": None}


@cli.callback()
def _command(ctx: typer.Context) -> None:
    set_redis_wait(REDIS_WAIT.get(ctx.invoked_subcommand or "", 0.0))


def _mount_gateway_commands() -> None:
    from conveyor.api.commands import api_command, keys_cli

    cli.command("api")(api_command)
    cli.add_typer(keys_cli, name="keys")


def main() -> None:
    _mount_gateway_commands()
    setup_logging()
    cli()


def _fail(exc: Exception) -> typer.Exit:
    field = f" ({exc.field})" if isinstance(exc, ValidationError) else ""
    err.print(f"[red]error{field}:[/red] {exc}")
    return typer.Exit(2)


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
    app: Annotated[str | None, typer.Argument(help="module:attribute (default: demo jobs)")] = None,
    port: Annotated[int, typer.Option(help="API and dashboard port")] = 8000,
    host: Annotated[str, typer.Option(help="API bind address")] = "127.0.0.1",
    concurrency: Annotated[int, typer.Option(min=1, help="Worker concurrency")] = 20,
    demo_rate: Annotated[float, typer.Option(help="Demo rounds submitted per second")] = 0.0,
) -> None:
    """Run everything in one process on embedded defaults (private Redis, SQLite history)."""
    from conveyor.up import UpOptions, run_up

    run(run_up(UpOptions(app=app, host=host, port=port, concurrency=concurrency,
                          demo_rate=demo_rate)))


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
        handle = await the_app.enqueue(
            type, parsed, queue=queue, priority=priority, delay=delay,
            max_attempts=max_attempts, idempotency_key=idempotency_key)
        console.print(handle.id if handle.created else f"{handle.id} (existing)")
        if wait is not None:
            console.print_json(orjson.dumps(await handle.result(timeout=wait)).decode())
        await the_app.close()

    try:
        run(go())
    except (ConveyorError, TimeoutError) as exc:
        raise _fail(exc) from None


@cli.command()
def status(app: AppOpt = None) -> None:
    """Queue depths per priority, delayed, active and dead; live workers."""
    the_app = app_or_exit(app)

    async def go() -> tuple[list[views.QueueStats], list[views.WorkerInfo]]:
        try:
            return await views.queue_stats(the_app), await views.workers(the_app)
        finally:
            await the_app.close()

    queues, workers = run(go())
    console.print(_queue_table(queues))
    console.print(_worker_table(workers))


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
    for col in ("worker", "queues", "running", "processed", "failed", "alive"):
        table.add_column(col)
    for w in workers:
        table.add_row(w.id, ",".join(w.queues), f"{len(w.current)}/{w.concurrency}",
                      str(w.processed), str(w.failed), "yes" if w.alive else "[red]no[/red]")
    return table


@dlq_cli.command("list")
def dlq_list(
    queue: Annotated[str, typer.Argument(help="Queue name")],
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 50,
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
    table = Table(title=f"Dead letters of {queue}")
    for col in ("id", "type", "attempts", "error"):
        table.add_column(col)
    for job in jobs:
        table.add_row(job.id, job.type, str(job.attempt), (job.error or "")[:100])
    console.print(table)


@dlq_cli.command("retry")
def dlq_retry(
    queue: Annotated[str, typer.Argument(help="Queue name")],
    ids: Annotated[list[str] | None, typer.Option("--id", help="Only these jobs")] = None,
    app: AppOpt = None,
) -> None:
    """Queue dead jobs again (all, or those given with --id)."""
    _dlq_action(app, queue, ids, retry=True)


@dlq_cli.command("purge")
def dlq_purge(
    queue: Annotated[str, typer.Argument(help="Queue name")],
    ids: Annotated[list[str] | None, typer.Option("--id", help="Only these jobs")] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask")] = False,
    app: AppOpt = None,
) -> None:
    """Delete dead jobs (all, or those given with --id)."""
    if not yes and not ids and sys.stdin.isatty():
        typer.confirm(f"Delete every dead job of {queue}?", abort=True)
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
        raise typer.Exit(2) from None
    ready = [p for p in plans if p.held_back is None]
    held = [p for p in plans if p.held_back is not None]
    console.print(_plan_table(("Re-enqueued" if apply else "Would re-enqueue (dry run; "
                               "--apply to do it)") + f": {len(ready)} job(s)", ready))
    if held:
        console.print(_plan_table(f"Not re-enqueued, unknown: history has a gap: {len(held)} "
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
