"""What every CLI module shares: the event loop runner and loading the app or exiting."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import typer
from rich.console import Console

from conveyor.app import Conveyor
from conveyor.loader import AppNotFound, load_app

T = TypeVar("T")
console = Console()
err = Console(stderr=True)


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on uvloop when it is installed (it is, with uvicorn[standard])."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def app_or_exit(spec: str | None) -> Conveyor:
    """The app ``module:attribute`` names (or the default app); exit 2 with the reason."""
    try:
        return load_app(spec)
    except AppNotFound as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
