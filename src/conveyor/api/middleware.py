"""The gateway's one ASGI middleware (pure ASGI: no per-request task or body copy beyond one).

Responsibilities, for every HTTP request:
- cap the body at ``max_body_bytes`` whether announced by Content-Length or sent chunked
  (413 as soon as the cap is passed, without reading further), and cap the time it may take
  to arrive (408), then replay it to the app;
- append the headers a dependency left in ``scope["state"]["headers"]`` (the RateLimit-*
  headers), whatever kind of response the route returned;
- refuse a query parameter given twice unless some operation documents it as an array (422:
  FastAPI would keep the last value and answer for something the caller did not ask);
- count the request by route template and status for ``/metrics``;
- answer an unexpected exception (a bug) with a 500 in the error shape, logging its traceback
  once (Starlette's outermost handler would log it and then the server a second time);
- serve the routes given as ``direct`` itself, with the body it has read (see
  ``conveyor.api.direct``: the submission routes, without FastAPI's per-request cost).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

from conveyor.api.errors import error_response

log = logging.getLogger("conveyor.api")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Observer = Callable[[str, str, int], None]
# (scope, body, receive, send): a route served by the middleware itself.
DirectApp = Callable[[Scope, bytes, Receive, Send], Awaitable[None]]


class _TooLarge(Exception):  # internal signal
    pass


class GatewayMiddleware:
    """See the module docstring."""

    def __init__(
        self, app: ASGIApp, *, max_body_bytes: int, body_timeout: float,
        observe: Observer | None = None, repeatable: frozenset[str] = frozenset(),
        direct: Mapping[tuple[str, str], DirectApp] | None = None,
    ) -> None:
        self.app = app
        self.direct = dict(direct or {})
        self.repeatable = repeatable
        self.max_body = max_body_bytes
        self.timeout = body_timeout
        self.observe = observe

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        status = [0]
        repeated = _repeated_param(scope.get("query_string", b""), self.repeatable)
        body = await self._read_body(scope, receive) if repeated is None else None
        if repeated is not None:
            status[0] = 422
            await error_response(
                422, "invalid_request", f"query.{repeated}: given more than once; give it "
                "once", f"query.{repeated}")(scope, receive, send)
        elif isinstance(body, int):
            await self._reject(scope, receive, send, body)
            status[0] = body
        else:
            await self._call_app(scope, receive, body, self._sender(send, state, status),
                                 status)
        if self.observe is not None:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.observe(scope["method"], template, status[0])

    async def _call_app(self, scope: Scope, receive: Receive, body: bytes | None, send: Send,
                        status: list[int]) -> None:
        direct = self.direct.get((scope["method"], scope["path"])) if self.direct else None
        try:
            if direct is not None and not scope.get("root_path"):
                await direct(scope, body or b"", receive, send)
            else:
                await self.app(scope, receive if body is None else _replay(body, receive), send)
        except Exception as exc:
            if status[0]:  # the response has begun: the server can only drop the connection
                raise
            log.error("unexpected error in %s %s", scope["method"], scope["path"][:200],
                      exc_info=exc)
            status[0] = 500
            response = error_response(500, "internal_error",
                                      "unexpected server error; it has been logged")
            await response(scope, receive, send)

    def _sender(self, send: Send, state: dict[str, Any], status: list[int]) -> Send:
        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                extra = state.get("headers")
                if extra:
                    message["headers"] = [*message.get("headers", ()),
                                          *((k.encode(), v.encode()) for k, v in extra)]
            await send(message)

        return wrapped

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes | int | None:
        """The whole body; None when there is none; a status (413, 408, 400) when the body
        must be refused."""
        length, chunked = _body_headers(scope)
        if length is None and not chunked:
            return None
        if length is not None and length < 0:
            return 400
        if length is not None and length > self.max_body:
            return 413
        try:
            async with asyncio.timeout(self.timeout):
                body = await self._collect(receive)
        except _TooLarge:
            return 413
        except TimeoutError:
            return 408
        return body

    async def _collect(self, receive: Receive) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break  # the client went away; the app will see an empty body
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                raise _TooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    async def _reject(self, scope: Scope, receive: Receive, send: Send, status: int) -> None:
        if status == 413:
            response = error_response(413, "body_too_large",
                                      f"the body is larger than {self.max_body} bytes")
        elif status == 408:
            response = error_response(408, "body_timeout",
                                      f"the body did not arrive within {self.timeout:g}s")
        else:
            response = error_response(400, "bad_content_length", "Content-Length is invalid")
        response.headers["Connection"] = "close"
        await response(scope, receive, send)


def _body_headers(scope: Scope) -> tuple[int | None, bool]:
    length: int | None = None
    chunked = False
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                length = int(value)
            except ValueError:
                length = -1
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
    return length, chunked


def _repeated_param(query: bytes, repeatable: frozenset[str]) -> str | None:
    """The first parameter of ``query`` given more than once that may not be."""
    if b"&" not in query:
        return None  # the common case: at most one parameter
    seen: set[str] = set()
    for name, _ in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        if name in seen and name not in repeatable:
            return name
        seen.add(name)
    return None


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # after the body: wait for http.disconnect as usual

    return replay
