"""Sync handlers the process-pool tests run in child processes."""

from __future__ import annotations

import os
import time


def spin(pid_file: str) -> None:
    """Writes its pid, then burns CPU until killed."""
    with open(pid_file, "w") as f:
        f.write(str(os.getpid()))
    while True:
        time.monotonic()


def square(n: int) -> int:
    return n * n


def explode() -> None:
    raise ValueError("bad value in the child")
