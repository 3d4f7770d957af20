"""Finds the app a command names (``module:attribute``) and the Redis a ``conveyor up`` runs."""

from __future__ import annotations

import importlib
import os
import sys

from conveyor.app import Conveyor
from conveyor.settings import STATE_DIR, URL_FILE, announce_up_url, up_redis_url

__all__ = ["STATE_DIR", "URL_FILE", "AppNotFound", "load_app"]


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
    if not app.redis_url_given and not app._conns:
        # The app was made before `conveyor up` wrote the file, or in another folder.
        url = up_redis_url()
        if url and url != app.settings.redis_url:
            app.configure(redis_url=url)
            announce_up_url(url)
    return app
