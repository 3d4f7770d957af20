"""Settings of the API gateway. Every field reads ``CONVEYOR_API_<NAME>`` from the environment
(``CONVEYOR_API_RATE_LIMIT=200/s``); ``create_app`` takes an instance to override them."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from conveyor.api.ratelimit import parse_networks, parse_rate


class ApiSettings(BaseSettings):
    """What the gateway accepts and how fast. Sizes are bytes, durations seconds."""

    model_config = SettingsConfigDict(env_prefix="CONVEYOR_API_", extra="ignore")

    max_body_bytes: int = Field(1024 * 1024, ge=1024, description="Largest request body (413)")
    max_json_depth: int = Field(40, ge=4, le=500, description="Deepest JSON nesting (400)")
    body_timeout_seconds: float = Field(
        30.0, gt=0, description="Longest time a client may take to send its body (408)"
    )
    bulk_max: int = Field(1000, ge=1, le=100_000, description="Most jobs per bulk submission")
    rate_limit: str = Field(
        "100/s", description="Default limit per API key: N/s, N/m, N/h, N/d or 'unlimited'"
    )
    anonymous_rate_limit: str = Field(
        "20/s", description="Limit per client IP for unauthenticated requests"
    )
    trusted_proxies: str = Field(
        "", description="Comma-separated proxy addresses/CIDRs whose X-Forwarded-For is used"
    )
    ratelimit_fail_open: bool = Field(
        True, description="Admit requests when Redis cannot be asked (they then fail on Redis)"
    )
    key_cache_seconds: float = Field(
        1.0, ge=0, description="How long a process trusts a looked-up API key (revocation lag)"
    )
    ws_buffer: int = Field(
        1000, ge=1, description="Events queued per WebSocket client before it is cut off"
    )
    ws_auth_timeout_seconds: float = Field(
        5.0, gt=0, description="Time a WebSocket client has to authenticate"
    )
    ws_rate: float = Field(
        20.0, gt=0, description="Messages per second a WebSocket client may send (close 4029)"
    )
    ws_burst: int = Field(
        40, ge=1, description="Messages a WebSocket client may send at once before ws_rate bites"
    )
    ws_max_connections_per_key: int = Field(
        100, ge=1, description="Open WebSocket connections per API key and process (close 4030)"
    )
    ws_max_connections: int = Field(
        1000, ge=1, description="Open WebSocket connections per process (close 1013)"
    )
    static_rate_limit: str = Field(
        "30/s", description="Limit per client IP for the dashboard's files and the docs (429)"
    )
    metrics_public: bool = Field(True, description="Serve /metrics without an API key")
    header_timeout_seconds: float = Field(
        10.0, gt=0, description="Time a client has to send a request's headers, from the "
        "connection's start or the next request's first byte (408, then closed)")
    max_header_bytes: int = Field(
        32 * 1024, ge=1024, description="Largest request line and headers (431, then closed)")
    keepalive_timeout_seconds: int = Field(
        5, ge=1, description="Idle time before a kept-alive connection is closed")
    max_connections_per_ip: int = Field(
        256, ge=1, description="Open connections per client IP, WebSockets included (503, "
        "then closed); trusted proxies are exempt")
    idempotency_scope: Literal["key", "tenant"] = Field(
        "key", description="Whose Idempotency-Keys are one namespace: each API key's, or each "
        "tenant's (keys created with --tenant; a key without one is a tenant of its own)")

    @field_validator("rate_limit", "anonymous_rate_limit", "static_rate_limit")
    @classmethod
    def _rate(cls, value: str) -> str:
        parse_rate(value)
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, value: str) -> str:
        parse_networks(value)
        return value
