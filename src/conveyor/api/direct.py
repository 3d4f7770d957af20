"""Routes the gateway middleware serves itself: ``POST /api/jobs`` and ``POST /api/jobs/bulk``.

FastAPI still declares them (OpenAPI, ``/docs`` and the dashboard's generated client see the
same operations), but their requests skip its exception middleware, router and dependency
solving: for a single submission that was a third of the process's CPU per request (issue
14's profile), more than the submission itself. What runs instead is the same code in the
same order as the declared route: ``deps.read_submission`` (key -> 401, rate limit -> 429,
role -> 403, Idempotency-Key -> 422, Content-Type -> 415, JSON -> 400, shape -> 422) on the
body the middleware has already read, then the route function itself. Errors are answered by
the app's own exception handlers; an exception none of them takes goes on to the
middleware's 500, as from any route.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

import pydantic
from fastapi import APIRouter, FastAPI
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from conveyor.api.deps import Submission, read_submission

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
Endpoint = Callable[[Submission[Any]], Awaitable[Response]]
Handler = Callable[[Request, Exception], Any]  # its Response, or an awaitable of it


@dataclass(frozen=True, slots=True)
class DirectRoute:
    """One declared route served without FastAPI's request machinery. ``route`` is the
    declared one: it goes in ``scope["route"]``, where metrics read its template."""

    route: BaseRoute
    model: type[pydantic.BaseModel]
    endpoint: Endpoint

    async def __call__(self, scope: Scope, body: bytes, receive: Receive, send: Send) -> None:
        scope["route"] = self.route
        request = Request(scope, receive)
        try:
            sub = await read_submission(request, self.model, body)
            response = await self.endpoint(sub)
        except Exception as exc:
            handler = _handler_for(scope["app"], exc)
            if handler is None:
                raise  # a bug: the middleware logs it and answers 500
            response = handler(request, exc)
            if inspect.isawaitable(response):
                response = await response
        await response(scope, receive, send)


def _handler_for(app: FastAPI, exc: Exception) -> Handler | None:
    """The app's handler for ``exc``, found as Starlette's ExceptionMiddleware finds it
    (nearest class first). The catch-all ``Exception`` handler is not one: Starlette runs it
    outside every middleware, after ours has answered 500."""
    handlers: Mapping[Any, Handler] = dict(app.exception_handlers)
    for cls in type(exc).__mro__:
        if cls is Exception:
            return None
        if cls in handlers:
            return handlers[cls]
    return None


def direct_routes(
    router: APIRouter, served: Mapping[str, tuple[type[pydantic.BaseModel], Endpoint]]
) -> dict[tuple[str, str], DirectRoute]:
    """``(method, path) -> DirectRoute`` for the POST routes ``router`` declares (it is
    included without a prefix of its own) whose paths are the keys of ``served``, each
    with its body model and route function."""
    out: dict[tuple[str, str], DirectRoute] = {}
    for route in router.routes:
        path = getattr(route, "path", "")
        if path in served and "POST" in (getattr(route, "methods", None) or ()):
            model, endpoint = served[path]
            out["POST", path] = DirectRoute(route, model, endpoint)
    missing = set(served) - {path for _, path in out}
    if missing:
        raise RuntimeError(f"no declared POST route for {sorted(missing)}")
    return out
