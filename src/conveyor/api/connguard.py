"""Connection hygiene under uvicorn: a deadline for request headers, a cap on their size and
a cap on open connections per client IP, enforced in the connection's asyncio protocol,
before any request reaches the app.

uvicorn (httptools) has a keep-alive timeout but no header-read timeout (a connection that
sends one header line every few seconds, or nothing at all, is held forever) and no header
size limit (a 1 MiB header is accepted). ``guard_config`` swaps uvicorn's HTTP and WebSocket
protocol classes for subclasses that add them:

- headers (request line included) must be complete ``header_timeout`` seconds after the
  connection opens, or after the first byte of the next request on a kept-alive one: else
  **408** ``header_timeout`` (or a silent close when nothing was sent) and the connection
  is closed;
- headers over ``max_header_bytes``: **431** ``header_too_large``, closed;
- a client IP (the TCP peer) with ``max_per_ip`` connections open gets **503**
  ``too_many_connections`` with ``Retry-After: 1`` on the next, closed at once. Peers in
  ``CONVEYOR_API_TRUSTED_PROXIES`` are exempt (a proxy carries many clients);
  WebSocket connections count until they close.

The refusals are written by the protocol itself (no app, no task): a flood of them costs a
few microseconds each.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from conveyor.api.ratelimit import Network

log = logging.getLogger("conveyor.api")

LINGER = 2.0
REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large",
           503: b"Service Unavailable"}


def refusal(status: int, code: str, message: str, *headers: tuple[str, str]) -> bytes:
    """A complete ``Connection: close`` response with the API's error body."""
    body = orjson.dumps({"error": {"code": code, "message": message, "field": None}})
    head = [f"HTTP/1.1 {status} ".encode() + REASONS[status],
            b"content-type: application/json", b"content-length: %d" % len(body),
            b"connection: close", *(f"{k}: {v}".encode() for k, v in headers)]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


@dataclass
class ConnectionGuard:
    """The limits, and the open connections per client IP of one server."""

    header_timeout: float = 10.0
    max_header_bytes: int = 32 * 1024
    max_per_ip: int = 256
    exempt: Sequence[Network] = ()
    open: dict[str, int] = field(default_factory=dict)
    holders: dict[object, str] = field(default_factory=dict)
    refused: dict[str, int] = field(default_factory=lambda: {
        "header_timeout": 0, "header_too_large": 0, "too_many_connections": 0})

    def acquire(self, transport: asyncio.BaseTransport) -> bool:
        """Count a new connection against its peer's IP; False when the IP is at the cap."""
        ip = _peer_ip(transport)
        if ip is None or self._exempt(ip):
            return True
        if self.open.get(ip, 0) >= self.max_per_ip:
            self.refused["too_many_connections"] += 1
            return False
        self.open[ip] = self.open.get(ip, 0) + 1
        self.holders[transport] = ip
        return True

    def release(self, transport: asyncio.BaseTransport) -> None:
        """Give back the connection's slot (idempotent: HTTP and WebSocket both call it)."""
        ip = self.holders.pop(transport, None)
        if ip is None:
            return
        left = self.open[ip] - 1
        if left:
            self.open[ip] = left
        else:
            del self.open[ip]

    def _exempt(self, ip: str) -> bool:
        if not self.exempt:
            return False
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(address in net for net in self.exempt)

    @property
    def too_large(self) -> bytes:
        return refusal(431, "header_too_large", f"request headers over {self.max_header_bytes} "
                       "bytes (CONVEYOR_API_MAX_HEADER_BYTES)")

    @property
    def too_slow(self) -> bytes:
        return refusal(408, "header_timeout", f"request headers took over {self.header_timeout}"
                       " s (CONVEYOR_API_HEADER_TIMEOUT_SECONDS)")

    @property
    def too_many(self) -> bytes:
        return refusal(503, "too_many_connections", f"this client IP holds {self.max_per_ip} "
                       "connections (CONVEYOR_API_MAX_CONNECTIONS_PER_IP): reuse them",
                       ("retry-after", "1"))


def _peer_ip(transport: asyncio.BaseTransport) -> str | None:
    peer = transport.get_extra_info("peername")
    return str(peer[0]) if isinstance(peer, tuple) and peer else None


def guard_config(config: uvicorn.Config, guard: ConnectionGuard) -> None:
    """Load ``config`` (httptools) and make its protocols enforce ``guard``."""
    if not config.loaded:
        config.load()
    if not issubclass(config.http_protocol_class, HttpToolsProtocol):
        raise ValueError("the connection guard needs uvicorn's httptools protocol (http=...)")
    config.http_protocol_class = type("GuardedHttp", (GuardedHttp,), {"guard": guard})
    if config.ws_protocol_class is not None:
        config.ws_protocol_class = _guarded_ws(config.ws_protocol_class, guard)


class GuardedHttp(HttpToolsProtocol):
    """uvicorn's httptools protocol (its parser calls ``on_message_begin`` and
    ``on_headers_complete`` on the protocol) with the deadline, the size cap and the slot
    of ``guard``, set per server by ``guard_config``."""

    guard: ConnectionGuard
    _deadline: asyncio.TimerHandle | None = None
    _waiting = False  # between a request's first byte (or the connection) and its headers
    _header_bytes = 0
    _slot: asyncio.Transport | None = None
    _draining = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if not self.guard.acquire(transport):
            transport.write(self.guard.too_many)
            transport.close()
            return
        self._slot = transport
        self._await_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_deadline()
        if self._slot is not None:
            self.guard.release(self._slot)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._draining or self.transport.is_closing():
            return
        super().data_received(data)
        if self._waiting and not self.transport.is_closing():
            # Counted after parsing (a chunk is at most the loop's 256 KiB read size), so a
            # chunk that completes its headers never counts its body.
            self._header_bytes += len(data)
            if self._header_bytes > self.guard.max_header_bytes:
                self.guard.refused["header_too_large"] += 1
                self._refuse(self.guard.too_large)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if not self._waiting:
            self._await_headers()

    def on_headers_complete(self) -> None:
        self._waiting = False
        self._stop_deadline()
        super().on_headers_complete()

    def _await_headers(self) -> None:
        self._waiting = True
        self._header_bytes = 0
        self._stop_deadline()
        self._deadline = self.loop.call_later(self.guard.header_timeout, self._headers_late)

    def _stop_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _headers_late(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        self.guard.refused["header_timeout"] += 1
        # Nothing sent at all: an idle connection, closed like an expired keep-alive.
        self._refuse(self.guard.too_slow if self._header_bytes else b"")

    def _refuse(self, response: bytes) -> None:
        """Answer ``response`` and close. A client still sending would get a reset instead
        of the answer if the socket closed with unread data, so the rest of what it sends
        is read and dropped for up to ``LINGER`` seconds first (nginx's lingering close)."""
        self._waiting = False
        self._stop_deadline()
        if not response:
            self.transport.close()
            return
        self.transport.write(response)
        self._draining = True
        self.flow.resume_reading()
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER, self.transport.close)


def _guarded_ws(base: type[asyncio.Protocol], guard: ConnectionGuard) -> type[asyncio.Protocol]:
    """uvicorn's WebSocket protocol, giving back the upgraded connection's slot when it
    ends (the HTTP protocol hands the transport over and never hears of it again)."""

    class GuardedWebSocket(base):  # type: ignore[valid-type, misc]
        _slot: asyncio.BaseTransport | None = None

        def connection_made(self, transport: Any) -> None:
            self._slot = transport
            super().connection_made(transport)

        def connection_lost(self, exc: Exception | None) -> None:
            if self._slot is not None:
                guard.release(self._slot)
            super().connection_lost(exc)

    return GuardedWebSocket
