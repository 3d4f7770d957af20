"""CLI commands of the gateway, for ``conveyor.cli`` to mount:

    from conveyor.api.commands import api_command, keys_cli
    cli.command("api")(api_command)
    cli.add_typer(keys_cli, name="keys")

and, for ``conveyor up``, ``up_service(host, port)``: the admin key to print and the
coroutine to run next to the worker.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.table import Table

from conveyor.api.auth import ApiKeys, Role, new_key
from conveyor.api.ratelimit import parse_rate
from conveyor.api.server import serve, tune_gc
from conveyor.app import Conveyor
from conveyor.broker.keys import check_name
from conveyor.cli_support import app_or_exit, console, err, print_json, run, show

keys_cli = typer.Typer(help="Create, list and revoke API keys; rotate conveyor up's admin "
                       "key.", no_args_is_help=True)

AppOpt = Annotated[str | None, typer.Option("--app", help="module:attribute of your app "
                                            "(default: settings from CONVEYOR_*)")]


def api_command(
    app: Annotated[str, typer.Argument(help="Your app as module:attribute, e.g. myapp:app")],
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on")] = 8000,
    log_level: Annotated[str, typer.Option(help="uvicorn log level")] = "info",
) -> None:
    """Serve the REST API, the live-events WebSocket and /metrics (docs at /docs)."""
    the_app = app_or_exit(app)
    tune_gc()
    console.print(f"Conveyor API on http://{host}:{port}  (docs: /docs, metrics: /metrics)")
    try:
        run(_serve_until_signal(the_app, host, port, log_level))
    except OSError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None


async def _serve_until_signal(app: Conveyor, host: str, port: int, log_level: str) -> None:
    try:
        await serve(app, host, port, log_level=log_level, handle_signals=True)
    finally:
        await app.close()


def up_service(
    host: str, port: int
) -> tuple[str, Callable[[Conveyor], Awaitable[None]]]:
    """For ``conveyor up``: the admin key to print (``CONVEYOR_ADMIN_KEY``, else a fresh one
    valid while this process runs) and the coroutine factory serving the API with it."""
    key = os.environ.get("CONVEYOR_ADMIN_KEY") or new_key()[1]

    async def run(app: Conveyor) -> None:
        await serve(app, host, port, admin_key=key, log_level="warning")

    return key, run


# -- keys ----------------------------------------------------------------------------------

@keys_cli.command("create")
def keys_create(
    role: Annotated[Role, typer.Option(help="admin, producer (submit, read own jobs) or "
                                       "viewer (read)")],
    rate: Annotated[str | None, typer.Option(help="Rate limit, e.g. 100/s or 5000/m "
                                             "(default: CONVEYOR_API_RATE_LIMIT)")] = None,
    name: Annotated[str, typer.Option(help="A note to recognise the key by")] = "",
    tenant: Annotated[str | None, typer.Option(
        help="Producer keys of one tenant read each other's jobs (and share idempotency keys "
        "with CONVEYOR_API_IDEMPOTENCY_SCOPE=tenant)")] = None,
    app: AppOpt = None,
) -> None:
    """Create a key and print it (once: only its hash is stored)."""
    try:
        if rate is not None:
            parse_rate(rate)
        if tenant is not None:
            check_name("tenant", tenant)
    except ValueError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    the_app = app_or_exit(app)

    async def go() -> tuple[str, str]:
        try:
            key, record = await ApiKeys(the_app).create(role, name=name, rate=rate,
                                                        tenant=tenant)
            return key, record.id
        finally:
            await the_app.close()

    key, key_id = run(go())
    err.print(f"created {role.value} key {key_id}; store it now, it is not shown again:")
    console.print(key)


@keys_cli.command("list")
def keys_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
    app: AppOpt = None,
) -> None:
    """The keys (ids, roles, limits; never the keys themselves)."""
    the_app = app_or_exit(app)

    async def go() -> Any:
        try:
            return await ApiKeys(the_app).list()
        finally:
            await the_app.close()

    records = run(go())
    if as_json:
        print_json([r.model_dump(mode="json", exclude={"sha256"}) for r in records])
        return
    table = Table(title="API keys")
    for col in ("id", "role", "tenant", "rate", "name", "created"):
        table.add_column(col)
    for record in records:
        created = (datetime.fromtimestamp(record.created_ms / 1000, UTC)
                   .isoformat(timespec="seconds") if record.created_ms else "-")
        table.add_row(record.id, record.role.value, record.tenant or "-",
                      record.rate or "(default)", record.name, created)
    show(table)


@keys_cli.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (see `conveyor keys list`)")],
    app: AppOpt = None,
) -> None:
    """Revoke a key (other API processes stop accepting it within a second)."""
    the_app = app_or_exit(app)

    async def go() -> bool:
        try:
            return await ApiKeys(the_app).revoke(key_id)
        finally:
            await the_app.close()

    if not run(go()):
        err.print(f"[red]error:[/red] no key {key_id!r} (see `conveyor keys list`)")
        raise typer.Exit(1)
    console.print(f"revoked {key_id}")
