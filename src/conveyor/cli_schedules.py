"""``conveyor schedules``: list, show (with the next five fire times), pause, resume, run-now
and delete the cron schedules stored in Redis (``app.schedules``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any, TypeVar
from zoneinfo import ZoneInfo

import typer
from rich.markup import escape
from rich.table import Table

from conveyor.app import Conveyor
from conveyor.cli_support import (
    EXIT_BAD_INPUT,
    app_or_exit,
    confirm_or_exit,
    console,
    err,
    print_json,
    run,
    show,
)
from conveyor.connect import server_ms
from conveyor.errors import ConveyorError

T = TypeVar("T")
NEXT_RUNS = 5

schedules_cli = typer.Typer(help="List, show, pause, resume, run now and delete cron schedules.",
                            no_args_is_help=True)
NameArg = Annotated[str, typer.Argument(metavar="NAME", help="The schedule's name")]
AppOpt = Annotated[str | None, typer.Option("--app", metavar="APP",
                                            help="module:attribute of your app")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON")]


def _with_app(spec: str | None, action: Callable[[Conveyor], Awaitable[T]]) -> T:
    """Run ``action`` on the app; an unknown schedule or bad input exits 2 with its message."""
    the_app = app_or_exit(spec)

    async def go() -> T:
        try:
            return await action(the_app)
        finally:
            await the_app.close()

    try:
        return run(go())
    except ConveyorError as exc:  # ScheduleNotFound, a job type that no longer validates
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(EXIT_BAD_INPUT) from None


async def _details(app: Conveyor, names: list[str] | None) -> list[dict[str, Any]]:
    book = app.schedules
    schedules = [await book.get(n) for n in names] if names else await book.all()
    now = server_ms(await app.redis.time())
    ticks, errors, runs = await book.last_ticks(), await book.last_errors(), await book.last_runs()
    return [{**s.model_dump(), "next_runs_ms": s.next_runs_ms(now, NEXT_RUNS),
             "last_tick_ms": ticks.get(s.name), "last_error": errors.get(s.name),
             "last_job": runs.get(s.name)} for s in schedules]


def _when(ms: int | None, tz: str = "UTC") -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, ZoneInfo(tz)).isoformat(timespec="seconds")


@schedules_cli.command("list")
def list_schedules(as_json: JsonOpt = False, app: AppOpt = None) -> None:
    """Every schedule: its cron, job type, state and next fire time."""
    rows = _with_app(app, lambda a: _details(a, None))
    if as_json:
        print_json(rows)
        return
    table = Table(title="Schedules")
    for col in ("name", "cron", "tz", "type", "state", "next run", "last error"):
        table.add_column(col, no_wrap=col == "name")
    for row in rows:
        error = (row["last_error"] or {}).get("error") or ""
        table.add_row(row["name"], row["cron"], row["tz"], row["type"],
                      "paused" if row["paused"] else "active",
                      _when(row["next_runs_ms"][0], row["tz"]), escape(error[:80]))
    show(table)


@schedules_cli.command("show")
def show_schedule(name: NameArg, as_json: JsonOpt = False, app: AppOpt = None) -> None:
    """One schedule: its definition, last tick, last job, last error and next five fire
    times (in its time zone)."""
    (row,) = _with_app(app, lambda a: _details(a, [name]))
    if as_json:
        print_json(row)
        return
    tz = row["tz"]
    lines = [f"name      {row['name']}{'  (paused)' if row['paused'] else ''}",
             f"cron      {row['cron']}  ({tz})",
             f"job       {row['type']} {row['args']}  queue {row['queue'] or '(its type)'}, "
             f"priority {row['priority'] or '(its type)'}, misfire {row['misfire']}",
             f"last tick {_when(row['last_tick_ms'], tz)}",
             f"last job  {row['last_job'] or '-'}"]
    if row["last_error"]:
        lines.append(f"error     {row['last_error'].get('error')} (since "
                     f"{_when(row['last_error'].get('since_ms'), tz)})")
    lines.append("next runs " + "\n          ".join(_when(ms, tz) for ms in row["next_runs_ms"]))
    for line in lines:
        console.print(line, markup=False, highlight=False)


@schedules_cli.command("pause")
def pause(name: NameArg, app: AppOpt = None) -> None:
    """Stop firing a schedule; on resume, the ticks it missed follow its misfire policy."""
    _with_app(app, lambda a: a.schedules.set_paused(name, True))
    console.print(f"paused {name}")


@schedules_cli.command("resume")
def resume(name: NameArg, app: AppOpt = None) -> None:
    """Fire a paused schedule again."""
    _with_app(app, lambda a: a.schedules.set_paused(name, False))
    console.print(f"resumed {name}")


@schedules_cli.command("run-now")
def run_now(name: NameArg, app: AppOpt = None) -> None:
    """Submit the schedule's job now (its ticks are not changed); prints the job id."""
    job_id = _with_app(app, lambda a: a.schedules.run_now(name))
    console.print(job_id)


@schedules_cli.command("delete")
def delete(
    name: NameArg,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation "
                                      "(needed without a terminal)")] = False,
    app: AppOpt = None,
) -> None:
    """Delete a schedule (one declared with ``@app.job(cron=...)`` comes back when a
    scheduler of that app starts); asks first."""
    confirm_or_exit(f"Delete the schedule {name}?", yes)
    _with_app(app, lambda a: a.schedules.delete(name))
    console.print(f"deleted {name}")

