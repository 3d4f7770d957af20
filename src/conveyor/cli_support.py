"""What every CLI module shares: the event loop runner, loading the app or exiting, and
checking that Redis answers before a command starts.

Exit status: 0 done, 1 a runtime error (Redis unreachable, a job that failed, ...), 2 bad
input (a malformed argument, an unknown job id or schedule), 3 a wait that timed out
(``enqueue --wait``). A command
that needs Redis first pings it with short socket timeouts (``set_redis_wait`` says how
long to keep trying: a one-shot command tries once, a worker or scheduler a few seconds),
so an unreachable server, refused or silent, ends the command within seconds with one
message naming the URL (password hidden) and the fix, never a traceback.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

import orjson
import typer
import typer.core
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, ResponseError
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from conveyor.app import Conveyor
from conveyor.connect import make_redis, redact, set_client_defaults
from conveyor.loader import AppNotFound, load_app
from conveyor.supervise import describe, is_transient

T = TypeVar("T")
# Off a terminal (a file, a pipe, a container log) a message is one line, never wrapped at
# 80 columns nor padded with spaces.
console = Console(soft_wrap=not sys.stdout.isatty())
err = Console(stderr=True, soft_wrap=not sys.stderr.isatty())

EXIT_RUNTIME = 1
EXIT_BAD_INPUT = 2
EXIT_TIMEOUT = 3
ATTEMPT_TIMEOUT = 3.0  # connect and read timeout of one check: a silent server fails too
# The clients of a one-shot command: a server that goes silent mid-command fails it within
# seconds (no command blocks longer than 5 s: ``JobHandle.result`` reads in 5 s slices).
ONE_SHOT_CLIENT = {"socket_connect_timeout": 3.0, "socket_timeout": 8.0}
_policy: dict[str, float | None] = {"wait": 0.0}  # see set_redis_wait
_target: dict[str, str] = {}  # the Redis URL the command uses, for the message


def set_redis_wait(seconds: float | None) -> None:
    """How long ``app_or_exit`` keeps trying to reach Redis (0: once; None: no check, for
    commands that bring their own Redis or report it themselves)."""
    _policy["wait"] = seconds


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on uvloop when it is installed (it is, with uvicorn[standard]).
    Redis becoming unreachable mid-command exits 1 with the message, not a traceback."""
    try:
        return _run(coro)
    except Exception as exc:
        if not (isinstance(exc, RedisError) and is_transient(exc)):
            raise  # (a builtin TimeoutError is a command's own, e.g. enqueue --wait)
        raise unreachable(_target.get("url", "(unknown)"), exc) from None


def _run(coro: Coroutine[Any, Any, T]) -> T:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def app_or_exit(spec: str | None) -> Conveyor:
    """The app ``module:attribute`` names (or the default app), once Redis answers; exit 2
    with the reason if there is no such app, 1 if Redis cannot be reached."""
    try:
        app = load_app(spec)
    except AppNotFound as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(EXIT_BAD_INPUT) from None
    _target["url"] = app.settings.redis_url
    wait = _policy["wait"]
    if wait is not None:
        require_redis(app.settings.redis_url, wait)
    if wait == 0.0:  # a one-shot command: its clients fail fast too
        set_client_defaults(**ONE_SHOT_CLIENT, retry=Retry(NoBackoff(), 0))
    return app


def require_redis(url: str, wait: float = 0.0) -> None:
    """Return once Redis at ``url`` answers a PING; exit 1 with the message if it has not
    within ``wait`` seconds (each try bounded by ``ATTEMPT_TIMEOUT``)."""
    try:
        _run(_ping_until(url, wait))
    except ValueError as exc:  # the URL itself
        err.print(f"[red]error (CONVEYOR_REDIS_URL):[/red] {escape(str(exc))}")
        raise typer.Exit(EXIT_BAD_INPUT) from None
    except RedisError as exc:
        raise unreachable(url, exc) from None


async def _ping_until(url: str, wait: float) -> None:
    deadline = time.monotonic() + wait
    timeout = ATTEMPT_TIMEOUT  # the first try gets it whole; later ones end by the deadline
    while True:
        client = make_redis(url, socket_connect_timeout=timeout, socket_timeout=timeout,
                            retry=Retry(NoBackoff(), 0))
        try:
            await client.ping()
            return
        except RedisError as exc:
            if not is_transient(exc) or time.monotonic() + 0.5 > deadline:
                raise
        finally:
            await client.aclose()
        await asyncio.sleep(0.5)  # a pause between tries of another process: no event
        timeout = max(0.5, min(ATTEMPT_TIMEOUT, deadline - time.monotonic()))


def unreachable(url: str, exc: BaseException) -> typer.Exit:
    """Print why Redis cannot be used and how to fix it; the exit to raise."""
    reason = describe(exc).rstrip(".")
    if isinstance(exc, ResponseError):  # it answers, with an error reply
        if is_transient(exc):
            what = "Redis refuses commands for now"
            hint = ("Retry shortly: this passes by itself. The Redis log says why (memory at "
                    "maxmemory, a failed snapshot or a full disk, a fail-over, a load); "
                    "CONVEYOR_REDIS_URL names the server.")
        else:
            what = "Redis refused the command"
            hint = ("Check the ACL user's permissions (docs/operations.md) and that the "
                    "server is Redis 6.2+ or Valkey; CONVEYOR_REDIS_URL names the server.")
    else:
        what = "cannot reach Redis"
        hint = "Start Redis (or `conveyor up`), or set CONVEYOR_REDIS_URL to where it runs."
    err.print(f"[red]error:[/red] {what} at {escape(redact(url))} ({escape(reason)}).",
              soft_wrap=True)
    err.print(hint, soft_wrap=True)
    return typer.Exit(EXIT_RUNTIME)


def show(table: Table) -> None:
    """Print a table: fitted to a terminal, or whole off one (no id or value cut short)."""
    if console.is_terminal:
        console.print(table)
    else:
        Console(file=sys.stdout, width=100_000, soft_wrap=True).print(table, crop=False)


def print_json(data: Any) -> None:
    """One JSON document on stdout (for ``--json``): plain, never wrapped or coloured."""
    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")
    sys.stdout.flush()


def confirm_or_exit(question: str, yes: bool) -> None:
    """Ask on a terminal; without one, a destructive command needs ``--yes`` (exit 2)."""
    if yes:
        return
    if not sys.stdin.isatty():
        err.print(f"error: {question} Not asked without a terminal: add --yes to confirm.")
        raise typer.Exit(EXIT_BAD_INPUT)
    typer.confirm(question, abort=True)


def plain_help() -> None:
    """Help that reads like every other CLI's (``--id TEXT``, ``QUEUE``), not typer's
    ``<list[str]>`` / ``{queue}`` placeholders, which read as code to type."""
    typer.core.TyperArgument.display_name_raw = property(  # type: ignore[method-assign,assignment]
        lambda self: self.metavar or (self.name or "").upper())
    typer.core.TyperArgument.display_type = lambda self, ctx: ""  # type: ignore[method-assign]
    typer.core.TyperOption.display_type = _option_type  # type: ignore[method-assign,assignment]

    def usage_name(self: typer.core.TyperArgument) -> str:
        name = str(self.display_name_raw) + ("..." if self.nargs != 1 else "")
        return name if self.required else f"[{name}]"

    typer.core.TyperArgument._usage_display_name = usage_name  # type: ignore[method-assign]


_TYPE_NAMES = {"str": "TEXT", "int": "INTEGER", "float": "NUMBER", "Path": "PATH"}


def _option_type(self: typer.core.TyperOption, ctx: Any) -> str:
    if self.is_flag:
        return ""
    if self.metavar:
        return str(self.metavar)
    desc = self.type_descriptor
    if desc.is_choice and desc.choices:
        return "|".join(str(getattr(c, "value", c)) for c in desc.choices)
    bare = self.bare_type().removeprefix("list[").removesuffix("]")
    return _TYPE_NAMES.get(bare, bare.upper())
