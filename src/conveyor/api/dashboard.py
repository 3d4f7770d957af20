"""Serving the dashboard (the React app built from ``dashboard/``) at ``/``.

The built files ship inside the package (``static/dashboard``), so an installed Conveyor has a
dashboard without Node. ``make dashboard`` rebuilds them from source.

- ``/assets/*`` are content-hashed by the build: cached for a year, ``immutable``; a missing
  one is a 404, never the app (a stale page must not get HTML for its script).
- Any other GET that is not a file (``/jobs/123``, ``/dead-letters/demo``) answers
  ``index.html``, so the app's own routes survive a reload; ``index.html`` is revalidated on
  every load (``no-cache`` with an ETag), so a new build is picked up at once.
- A path that cannot be a page of the app (a segment over ``MAX_SEGMENT`` characters,
  more than ``MAX_SEGMENTS`` segments) or a file (a name the filesystem refuses) is a 404,
  answered without a traceback.
- The API's paths (``/api``, ``/docs``, ``/openapi.json``, ``/healthz``, ``/readyz``,
  ``/metrics``) are never answered here, whatever the method: they keep the API's own 404s
  and 405s. So are methods other than GET and HEAD.
- ``limit``, when given, is awaited first for every request (the gateway's per-client-IP
  limit, 429).
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from pathlib import Path

from fastapi import FastAPI
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.routing import Match, Route
from starlette.types import Scope

STATIC_DIR = Path(__file__).resolve().parent / "static" / "dashboard"
RESERVED = ("api", "docs", "redoc", "openapi.json", "healthz", "readyz", "metrics")
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"
# The app loads only its own files and talks only to its own origin (HTTP and WebSocket).
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
       "form-action 'self'")
PAGE_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
MAX_SEGMENT = 128  # job ids and queue names are at most 64 characters; file names shorter
MAX_SEGMENTS = 8
Limit = Callable[[Request], Awaitable[None]]
NOT_BUILT = ("The dashboard is not built. From a source checkout, run `make dashboard` "
             "(needs Node.js 20 and npm); an installed package ships it built.\n")


def is_dashboard_path(path: str) -> bool:
    """Whether ``path`` may be answered by the dashboard (it is not one of the API's)."""
    first = path.lstrip("/").split("/", 1)[0]
    return first not in RESERVED


class DashboardRoute(Route):
    """A catch-all GET/HEAD route that steps aside for the API's paths and other methods, so
    those keep the answers the API gives without a dashboard (404, 405)."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD"):
            return Match.NONE, {}
        if not is_dashboard_path(scope["path"]):
            return Match.NONE, {}
        return super().matches(scope)


class Dashboard:
    """Answers for the files of one build folder. Responsibilities: map a URL path to a file
    inside the folder (never outside it), the SPA fallback, caching and security headers."""

    def __init__(self, directory: Path, limit: Limit | None = None) -> None:
        self.directory = directory.resolve()
        self.limit = limit

    async def serve(self, request: Request) -> Response:
        if self.limit is not None:
            await self.limit(request)
        relative = request.path_params.get("path", "")
        if not _plausible(relative):
            raise HTTPException(404)
        index = self.directory / "index.html"
        if not index.is_file():
            return PlainTextResponse(NOT_BUILT, status_code=503)
        target = self._file(relative)
        if target is not None and target != index:
            cache = IMMUTABLE if relative.startswith("assets/") else REVALIDATE
            return self._send(request, target, {"Cache-Control": cache})
        if target is None and (relative.startswith("assets/") or _looks_like_file(relative)):
            raise HTTPException(404)
        return self._send(request, index, {"Cache-Control": REVALIDATE, **PAGE_HEADERS})

    def _file(self, relative: str) -> Path | None:
        if not relative or "\\" in relative or "\0" in relative:
            return None
        try:
            candidate = (self.directory / relative).resolve()
            if not candidate.is_relative_to(self.directory) or not candidate.is_file():
                return None
        except (OSError, ValueError):  # a name the filesystem refuses is no file of ours
            return None
        return candidate

    def _send(self, request: Request, path: Path, headers: dict[str, str]) -> Response:
        stat = path.stat()
        etag = '"' + hashlib.sha256(
            f"{stat.st_mtime_ns}-{stat.st_size}".encode()).hexdigest()[:32] + '"'
        headers = {**headers, "ETag": etag}
        if etag in _etags(request.headers.get("if-none-match", "")):
            return Response(status_code=304, headers=headers)
        return FileResponse(path, headers=headers, stat_result=stat)


def _etags(header: str) -> set[str]:
    return {tag.strip().removeprefix("W/") for tag in header.split(",") if tag.strip()}


def _plausible(relative: str) -> bool:
    """Whether ``relative`` could be a page of the app or one of its files."""
    segments = relative.split("/")
    return len(segments) <= MAX_SEGMENTS and all(len(s) <= MAX_SEGMENT for s in segments)


def _looks_like_file(relative: str) -> bool:
    """``favicon.ico`` or ``x.js``: a missing file, not a page of the app."""
    return "." in relative.rsplit("/", 1)[-1]


def mount_dashboard(
    app: FastAPI, directory: Path | None = None, limit: Limit | None = None
) -> None:
    """Serve the built dashboard from ``directory`` (default: the packaged build) at ``/``,
    after ``limit`` (a per-client rate limit raising a 429). Call it after every API route
    is added: the API's routes match first."""
    handler = Dashboard(directory or STATIC_DIR, limit)
    app.router.routes.append(
        DashboardRoute("/{path:path}", handler.serve, methods=["GET", "HEAD"], name="dashboard",
                       include_in_schema=False))
