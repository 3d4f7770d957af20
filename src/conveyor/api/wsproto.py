"""The live-events WebSocket protocol (``/api/ws``); see docs/api.md for the client's view.

Client -> server (JSON text frames):
    {"type": "auth", "key": "cv_..."}        first, unless the upgrade request carried
                                             Authorization: Bearer or X-API-Key
    {"type": "subscribe", "queues": [...], "jobs": [...], "types": [...],
     "resume": {"<queue>": "<entry id>", ...}}   every filter optional; again to change it
    {"type": "ping"}
Server -> client:
    {"type": "authenticated", "role": ...}
    {"type": "subscribed", "cursor": {"<queue>": "<entry id>"}}  positions events follow
    {"type": "event", "queue", "id", "job", "event", "status", "seq", "ts", "job_type", ...}
    {"type": "queue", "queue", "id": "0-0"}   a new queue: its events follow from its start
    {"type": "gap", "queue", "after"}         resume position older than the stream keeps
    {"type": "live"}                          backfill done, live events from here
    {"type": "pong"} | {"type": "error", "code", "message", "field"}

Resume token: the map queue -> last entry id, kept by the client from ``cursor`` and every
message's ``queue``/``id``. With ``resume`` the client receives every event after those
positions (queues it has no position for: from their start), then live events; without it,
live events only.

Errors: a message the server cannot take (not JSON, unknown type, a bad filter, a malformed or
out-of-range resume position, over 64 KiB) is answered with an error frame, then the
connection is closed with 1008. A well-formed request that is refused (a producer naming jobs
that are not its own) gets an error frame and the connection stays.

Close codes: 1008 invalid message (after an error frame), 1011 server error, 1012 server
shutting down, 1013 try again later (the process holds ``ws_max_connections``, or Redis is
unavailable), 4001 unauthorized, 4003 forbidden, 4008 too slow (the client's buffer of
``ws_buffer`` events overflowed), 4029 rate limited (the key's request rate at connect, or
more than ``ws_rate`` messages a second after a burst of ``ws_burst``), 4030 too many
connections for this API key (``ws_max_connections_per_key``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Annotated, Any, Literal

import orjson
import pydantic
from fastapi import WebSocket
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints
from redis.exceptions import RedisError
from starlette.websockets import WebSocketState

from conveyor.api import jsonbody, views
from conveyor.api.auth import Principal, rate_of
from conveyor.api.deps import body_error, key_of
from conveyor.api.errors import ApiError, printable
from conveyor.api.hub import ID_RE, START, Filter, Subscriber, stream_key
from conveyor.api.models import JobId, Name
from conveyor.api.wslimits import Connections, TokenBucket

if TYPE_CHECKING:
    from conveyor.api.gateway import Gateway

CLOSE_UNAUTHORIZED, CLOSE_FORBIDDEN, CLOSE_TOO_SLOW, CLOSE_RATE_LIMITED = 4001, 4003, 4008, 4029
CLOSE_KEY_CONNECTIONS = 4030  # the API key holds ws_max_connections_per_key connections
CLOSE_INVALID = 1008  # policy violation: a message the protocol does not allow
CLOSE_SERVER_ERROR = 1011
CLOSE_TRY_AGAIN = 1013  # the process is full, or Redis is unavailable: reconnect later
CLOSE_TIMEOUT = 5.0  # the close frame waits behind unsent data; then the socket just goes
MAX_MESSAGE = 64 * 1024
MAX_REASON = 123  # bytes a close frame's reason may hold
MAX_ID_PART = 2**64 - 1  # Redis stream ids are two unsigned 64-bit integers

log = logging.getLogger("conveyor.api.ws")


def _in_range(entry_id: str) -> str:
    if any(int(part) > MAX_ID_PART for part in entry_id.split("-")):
        raise ValueError("a stream id is two integers of at most 2^64-1, like 1732751000123-0")
    return entry_id


StreamId = Annotated[str, StringConstraints(pattern=ID_RE.pattern), AfterValidator(_in_range)]
STRICT = ConfigDict(strict=True, extra="forbid")


class AuthMessage(BaseModel):
    model_config = STRICT
    type: Literal["auth"]
    key: str = Field(max_length=512)


class SubscribeMessage(BaseModel):
    model_config = STRICT
    type: Literal["subscribe"]
    queues: list[Name] | None = Field(None, max_length=100)
    jobs: list[JobId] | None = Field(None, min_length=1, max_length=1000)
    types: list[Name] | None = Field(None, max_length=100)
    resume: dict[Name, StreamId] | None = Field(None, max_length=1000)


class PingMessage(BaseModel):
    model_config = STRICT
    type: Literal["ping"]


MESSAGES: dict[str, type[SubscribeMessage | PingMessage]] = {
    "subscribe": SubscribeMessage, "ping": PingMessage}


class _Closing(Exception):  # internal signal
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class Session:
    """One WebSocket client. Responsibilities: authenticate it (upgrade header, or first
    message within ``ws_auth_timeout_seconds``); validate its messages; (re)subscribe it
    to the hub, backfill what it missed when it resumes, then forward live events from its
    bounded queue; close with a code that says why."""

    def __init__(self, gateway: Gateway, ws: WebSocket) -> None:
        self.gateway = gateway
        self.ws = ws
        self.principal: Principal | None = None
        self.sub: Subscriber | None = None
        self.sender: asyncio.Task[None] | None = None
        self.closing: asyncio.Future[tuple[int, str]] = (
            asyncio.get_running_loop().create_future())
        settings = gateway.settings
        self.bucket = TokenBucket(settings.ws_rate, settings.ws_burst)

    async def run(self) -> None:
        await self.ws.accept()
        connections = self.gateway.ws_connections
        if not connections.enter():
            await self._close(CLOSE_TRY_AGAIN, f"the server holds its maximum of "
                              f"{connections.max_total} connections: retry later")
            return
        try:
            await self._run_admitted(connections)
        finally:
            connections.leave()

    async def _run_admitted(self, connections: Connections) -> None:
        try:
            self.principal = await self._authenticate()
        except _Closing as exc:
            await self._close(exc.code, exc.reason)
            return
        if not connections.enter_key(self.principal.id):
            await self._close(CLOSE_KEY_CONNECTIONS, f"this API key holds its maximum of "
                              f"{connections.max_per_key} connections")
            return
        metrics = self.gateway.metrics
        metrics.ws_clients.inc()
        try:
            await self._send({"type": "authenticated", "role": self.principal.role.value})
            await self._serve()
        finally:
            self._unsubscribe()
            metrics.ws_clients.dec()
            connections.leave_key(self.principal.id)

    # -- auth --------------------------------------------------------------------------------

    async def _authenticate(self) -> Principal:
        key = key_of(self.ws)
        if key is None:
            key = await self._key_from_first_message()
        principal = await self.gateway.keys.authenticate(key)
        if principal is None:
            raise _Closing(CLOSE_UNAUTHORIZED, "unknown or revoked API key")
        rate = rate_of(principal, self.gateway.default_rate)
        if rate is not None:
            decision = await self.gateway.limiter.hit(f"key:{principal.id}", rate)
            if decision is not None and not decision.allowed:
                raise _Closing(CLOSE_RATE_LIMITED, f"rate limit of {rate} exceeded")
        return principal

    async def _key_from_first_message(self) -> str:
        try:
            async with asyncio.timeout(self.gateway.settings.ws_auth_timeout_seconds):
                text = await self._receive_text()
                self.bucket.take()
        except TimeoutError:
            raise _Closing(CLOSE_UNAUTHORIZED, "send {\"type\": \"auth\", \"key\": ...} "
                           "first") from None
        if text is None:
            raise _Closing(1000, "")
        try:
            return AuthMessage.model_validate(self._parse(text)).key
        except (ApiError, pydantic.ValidationError):
            raise _Closing(CLOSE_UNAUTHORIZED, "the first message must be "
                           "{\"type\": \"auth\", \"key\": ...}") from None

    # -- the connection ----------------------------------------------------------------------

    async def _serve(self) -> None:
        reader = asyncio.create_task(self._read_loop())
        waiting: list[asyncio.Future[Any]] = [reader, self.closing]
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        reader.cancel()
        try:
            await reader
        except asyncio.CancelledError:
            pass
        except Exception as exc:  # a bug: said with its traceback, and a close frame
            log.error("WebSocket session failed", exc_info=exc)
            self._end(CLOSE_SERVER_ERROR, "server error; it has been logged")
        if self.closing.done():
            code, reason = self.closing.result()
            await self._close(code, reason)

    async def _read_loop(self) -> None:
        try:
            while (text := await self._receive_text()) is not None:
                if not self.bucket.take():
                    raise _Closing(CLOSE_RATE_LIMITED, f"over {self.bucket.rate:g} messages "
                                   f"a second (burst {self.bucket.burst})")
                await self._answer(text)
        except _Closing as exc:
            self._end(exc.code, exc.reason)

    async def _answer(self, text: str) -> None:
        """Handle one message. A refused request (403) leaves the connection open; a message
        the protocol does not allow closes it (1008), Redis or the store being down too
        (1013); each after an error frame that says why."""
        try:
            await self._handle(self._parse(text))
        except ApiError as exc:
            await self._send_error(exc)
            if exc.status >= 500:  # the history store is down: nothing wrong with the message
                raise _Closing(CLOSE_TRY_AGAIN, f"{exc.code}: retry later") from None
            if exc.status != 403:
                raise _Closing(CLOSE_INVALID, f"{exc.code}: {exc.message}") from None
        except (RedisError, OSError) as exc:
            log.warning("WebSocket request failed on Redis: %s", exc)
            await self._send_error(ApiError(503, "redis_unavailable", "Redis is unreachable: "
                                            "reconnect shortly and resume"))
            raise _Closing(CLOSE_TRY_AGAIN, "Redis is unavailable: retry later") from None

    async def _send_error(self, exc: ApiError) -> None:
        await self._send({"type": "error", "code": exc.code, "message": printable(exc.message),
                          "field": printable(exc.field) if exc.field else None})

    async def _receive_text(self) -> str | None:
        """The next text frame; None once the client has gone."""
        message = await self.ws.receive()
        if message["type"] == "websocket.disconnect":
            return None
        text = message.get("text")
        if text is None:
            raw = message.get("bytes") or b""
            text = raw.decode("utf-8", "replace")
        return str(text)

    def _parse(self, text: str) -> Any:
        if len(text) > MAX_MESSAGE:
            raise ApiError(400, "message_too_large", f"messages are at most {MAX_MESSAGE} bytes")
        return jsonbody.parse(text.encode("utf-8", "surrogatepass"),
                              self.gateway.settings.max_json_depth)

    async def _handle(self, value: Any) -> None:
        kind = value.get("type") if isinstance(value, dict) else None
        model = MESSAGES.get(kind) if isinstance(kind, str) else None
        if model is None:
            raise ApiError(400, "unknown_message", "send a JSON object with \"type\": "
                           "\"subscribe\" or \"ping\"", "type")
        try:
            message = model.model_validate(value)
        except pydantic.ValidationError as exc:
            raise body_error(exc) from None
        if isinstance(message, PingMessage):
            await self._send({"type": "pong"})
        else:
            await self._subscribe(message)

    # -- subscriptions -----------------------------------------------------------------------

    async def _subscribe(self, msg: SubscribeMessage) -> None:
        filt = Filter(_set(msg.queues), _set(msg.jobs), _set(msg.types))
        await self._check_scope(filt)
        self._unsubscribe()
        hub = self.gateway.hub
        await hub.discover(filt.queues)
        sub = Subscriber(filt, self.gateway.settings.ws_buffer, self._dropped)
        live = hub.register(sub)
        self.sub = sub
        if msg.resume is None:
            await self._send({"type": "subscribed", "cursor": live})
        else:
            starts = {q: msg.resume.get(q, START)
                      for q in {*live, *msg.resume} if filt.wants_queue(q)}
            await self._send({"type": "subscribed", "cursor": starts})
            await self._backfill(sub, starts)
        await self._send({"type": "live"})
        self.sender = asyncio.create_task(self._forward(sub))
        self.sender.add_done_callback(self._sender_done)

    async def _check_scope(self, filt: Filter) -> None:
        """A producer may watch only jobs its key submitted, named one by one."""
        assert self.principal is not None
        if self.principal.reads_all:
            return
        if filt.jobs is None or len(filt.jobs) > 100:
            raise ApiError(403, "forbidden", "a producer key must name its jobs (1 to 100) in "
                           "\"jobs\"", "jobs")
        for job_id in sorted(filt.jobs):
            job = await views.find_job(self.gateway, job_id, with_history=False)
            if job is None or not views.owns(self.principal, job):
                raise ApiError(403, "forbidden", f"job {job_id} is not yours", "jobs")

    async def _backfill(self, sub: Subscriber, starts: dict[str, str]) -> None:
        hub = self.gateway.hub
        for queue, after in sorted(starts.items()):
            if await hub.trimmed_after(queue, after):
                await self._send({"type": "gap", "queue": queue, "after": after})
            last = stream_key(after)
            async for batch in hub.backfill(queue, after):
                for ev in batch:
                    if sub.filter.matches(ev):
                        await self.ws.send_text(ev.payload())
                last = max(last, batch[-1].key)
            sub.floors[queue] = last

    async def _forward(self, sub: Subscriber) -> None:
        while True:
            ev = await sub.queue.get()
            if sub.is_new(ev):
                await self.ws.send_text(ev.payload())

    def _sender_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self._end(CLOSE_SERVER_ERROR, "send failed")

    def _dropped(self) -> None:
        self.gateway.metrics.ws_dropped.inc()
        self._end(CLOSE_TOO_SLOW, "too slow: event buffer overflowed")

    def _end(self, code: int, reason: str) -> None:
        """Close the connection with ``code`` (the first reason given wins)."""
        if not self.closing.done():
            self.closing.set_result((code, reason))

    def _unsubscribe(self) -> None:
        if self.sender is not None:
            self.sender.cancel()
            self.sender = None
        if self.sub is not None:
            self.gateway.hub.unregister(self.sub)
            self.sub = None

    # -- sending -----------------------------------------------------------------------------

    async def _send(self, message: dict[str, Any]) -> None:
        await self.ws.send_text(orjson.dumps(message).decode())

    async def _close(self, code: int, reason: str) -> None:
        self._unsubscribe()
        if self.ws.application_state != WebSocketState.CONNECTED:
            return
        reason = printable(reason).encode()[:MAX_REASON].decode("utf-8", "ignore")
        with contextlib.suppress(Exception):
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await self.ws.close(code, reason)


def _set(values: list[str] | None) -> frozenset[str] | None:
    return frozenset(values) if values is not None else None
