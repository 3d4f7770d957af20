"""Runs one sync handler in a child process (``@app.job(process=True)``).

The parent sends ``{"handler": "module:qualname", "kwargs": {...}}`` as JSON on stdin and
reads ``{"ok": result}`` or ``{"error": {...}}`` as JSON from stdout: no pickle. A child can
be killed, which a thread cannot: that is the point for CPU-bound work.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from typing import Any

import orjson


def resolve(ref: str) -> Any:
    module_name, _, qualname = ref.partition(":")
    target: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        target = getattr(target, part)
    return target


def main() -> None:
    sys.path.insert(0, os.getcwd())
    request = orjson.loads(sys.stdin.buffer.read())
    try:
        value = resolve(request["handler"])(**request["kwargs"])
        reply = {"ok": value}
    except Exception as exc:
        reply = {"error": {"type": type(exc).__name__, "message": str(exc),
                           "traceback": "".join(traceback.format_exception(exc))}}
    out = orjson.dumps(reply)
    sys.stdout.buffer.write(out)
    sys.stdout.buffer.flush()


if __name__ == "__main__":
    main()
