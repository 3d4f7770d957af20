"""rq's jobs are plain functions, importable by the worker."""

from __future__ import annotations

from stamps import record


def noop() -> None:
    return None


def stamp(tag: str) -> None:
    record(tag)
