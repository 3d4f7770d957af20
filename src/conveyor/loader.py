"""Finds the app a command names (``module:attribute``) and the Redis a ``conveyor up`` runs."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

from conveyor.app import Conveyor

STATE_DIR = Path(".conveyor")
URL_FILE = STATE_DIR / "redis.url"


class AppNotFound(Exception):
    pass


def load_app(spec: str | None) -> Conveyor:
    """``module:attribute`` -> that Conveyor; None -> a bare ``Conveyor()`` from settings."""
    if not spec:
        app = Conveyor()
    else:
        module_name, _, attr = spec.partition(":")
        if not module_name or not attr:
            raise AppNotFound(f"APP must look like module:attribute (e.g. myapp:app), not {spec!r}")
        sys.path.insert(0, os.getcwd())
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise AppNotFound(f"cannot import {module_name!r}: {exc}") from exc
        found = getattr(module, attr, None)
        if not isinstance(found, Conveyor):
            raise AppNotFound(f"{spec!r} is not a Conveyor app (found {type(found).__name__})")
        app = found
    from_up = "CONVEYOR_REDIS_URL" not in os.environ and URL_FILE.exists()
    if from_up and not app.redis_url_given and not app._conns:
        app.configure(redis_url=URL_FILE.read_text().strip())
    return app
