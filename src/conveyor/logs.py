"""Logging for people and for machines.

On a terminal, rich's layout. Anywhere else (a file, a pipe, journald, a container log),
one line per record, so it can be grepped and shipped: ``CONVEYOR_LOG_FORMAT=json`` makes
that line a JSON object with the record's fields (``job``, ``type``, ``queue``,
``attempt``, ``worker`` when a record carries them in ``extra``).
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import orjson

LINE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
CONTEXT_FIELDS = ("job", "type", "queue", "attempt", "worker")


class JSONFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname, "logger": record.name, "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            if hasattr(record, name):
                out[name] = getattr(record, name)
        if record.exc_info:
            out["traceback"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


class OneLineFormatter(logging.Formatter):
    """The plain format, with a traceback folded onto the same line (``\\n`` escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        return super().format(record).replace("\n", "\\n")


def setup_logging(level: int = logging.INFO, *, stream: Any = None) -> None:
    """Configure the root logger once for a CLI process."""
    stream = stream or sys.stderr
    kind = os.environ.get("CONVEYOR_LOG_FORMAT", "").lower()
    handler: logging.Handler
    if kind == "json":
        handler = logging.StreamHandler(stream)
        handler.setFormatter(JSONFormatter())
    elif kind != "line" and stream.isatty():
        from rich.console import Console
        from rich.logging import RichHandler

        handler = RichHandler(console=Console(file=stream), show_path=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(stream)
        handler.setFormatter(OneLineFormatter(LINE_FORMAT))
    logging.basicConfig(level=level, handlers=[handler], force=True)
