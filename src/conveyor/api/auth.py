"""API keys: roles, storage in Redis (hashed), verification in constant time.

A key reads ``cv_<id>_<secret>``: ``id`` (12 hex digits) names the key in listings and
revocations; the secret is 256 random bits. Redis keeps, per id, the key's SHA-256 and its
role, name and rate limit (HASH ``{prefix}:apikeys``): a leaked Redis dump reveals no usable
key, and since the secret is high-entropy a plain hash is as strong as a slow KDF here.
Verification compares digests with ``hmac.compare_digest``.

``CONVEYOR_ADMIN_KEY`` (``Settings.admin_key``) is a bootstrap admin key of any form, kept in
memory only. Roles: ``admin`` may do everything, ``producer`` submit jobs and read its own,
``viewer`` read everything.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

import orjson
from pydantic import BaseModel

from conveyor.api.ratelimit import Rate, parse_rate
from conveyor.broker.keys import check_name

if TYPE_CHECKING:
    from conveyor.app import Conveyor

KEY_RE = re.compile(r"^cv_([0-9a-f]{12})_[A-Za-z0-9_-]{43}$")
BOOTSTRAP_ID = "bootstrap-admin"


class Role(StrEnum):
    ADMIN = "admin"
    PRODUCER = "producer"
    VIEWER = "viewer"


class KeyRecord(BaseModel):
    """What Redis keeps about a key (never the key itself)."""

    id: str
    role: Role
    name: str = ""
    rate: str | None = None
    created_ms: int = 0
    sha256: str = ""
    tenant: str | None = None


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the key's id, role, rate limit (None: the default applies) and tenant
    (None: the key is a tenant of its own)."""

    id: str
    role: Role
    rate: str | None = None
    tenant: str | None = None

    @property
    def reads_all(self) -> bool:
        return self.role in (Role.ADMIN, Role.VIEWER)

    @property
    def submits(self) -> bool:
        return self.role in (Role.ADMIN, Role.PRODUCER)

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN


def digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def new_key() -> tuple[str, str]:
    """A fresh (id, key)."""
    key_id = secrets.token_hex(6)
    return key_id, f"cv_{key_id}_{secrets.token_urlsafe(32)}"


class ApiKeys:
    """The keys of one app: create, list, revoke (in Redis) and authenticate (with a short
    per-process cache, so a hot key costs no Redis round trip; revocation takes effect in
    other processes within ``cache_seconds``)."""

    def __init__(
        self, conveyor: Conveyor, *, admin_key: str | None = None, cache_seconds: float = 1.0
    ) -> None:
        self.conveyor = conveyor
        self.cache_seconds = cache_seconds
        self._admin_digest = digest(admin_key) if admin_key else None
        self._cache: dict[str, tuple[float, KeyRecord | None]] = {}
        self._lookups: dict[str, asyncio.Future[KeyRecord | None]] = {}

    @property
    def _hash_key(self) -> str:
        return self.conveyor.keys.glob.api_keys

    async def create(
        self, role: Role | str, name: str = "", rate: str | None = None,
        tenant: str | None = None,
    ) -> tuple[str, KeyRecord]:
        """A new key (returned once, never stored) and its record. Producer keys of one
        ``tenant`` read each other's jobs (and may share idempotency keys)."""
        if rate is not None:
            parse_rate(rate)  # refuse a limit that would not parse at request time
        if tenant is not None:
            check_name("tenant", tenant)
        key_id, key = new_key()
        record = KeyRecord(id=key_id, role=Role(role), name=name, rate=rate,
                           created_ms=int(time.time() * 1000), sha256=digest(key),
                           tenant=tenant)
        await self.conveyor.redis.hset(self._hash_key, key_id, record.model_dump_json())
        return key, record

    async def list(self) -> list[KeyRecord]:
        raw = await self.conveyor.redis.hgetall(self._hash_key)
        records = [KeyRecord.model_validate_json(v) for v in raw.values()]
        return sorted(records, key=lambda r: r.created_ms)

    async def revoke(self, key_id: str) -> bool:
        self._cache.pop(key_id, None)
        return bool(await self.conveyor.redis.hdel(self._hash_key, key_id))

    async def authenticate(self, key: str) -> Principal | None:
        """The principal of ``key``, or None for an unknown, revoked or malformed key."""
        given = digest(key)
        if self._admin_digest and hmac.compare_digest(given, self._admin_digest):
            return Principal(BOOTSTRAP_ID, Role.ADMIN)
        match = KEY_RE.match(key)
        if match is None:
            return None
        record = await self._record(match.group(1))
        if record is None or not hmac.compare_digest(given, record.sha256):
            return None
        return Principal(record.id, record.role, record.rate, record.tenant)

    async def _record(self, key_id: str) -> KeyRecord | None:
        loop = asyncio.get_running_loop()
        cached = self._cache.get(key_id)
        if cached is not None and cached[0] > loop.time():
            return cached[1]
        # One lookup per key at a time: a burst of requests with a key not yet cached must
        # not take a Redis connection each.
        pending = self._lookups.get(key_id)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[KeyRecord | None] = loop.create_future()
        self._lookups[key_id] = future
        try:
            record = await self._fetch(key_id)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters, if any, re-raise it themselves
            raise
        finally:
            del self._lookups[key_id]
        future.set_result(record)
        if self.cache_seconds > 0:
            if len(self._cache) > 10_000:  # unknown ids are cached too: keep the map bounded
                self._cache.clear()
            self._cache[key_id] = (loop.time() + self.cache_seconds, record)
        return record

    async def _fetch(self, key_id: str) -> KeyRecord | None:
        raw = await self.conveyor.redis.hget(self._hash_key, key_id)
        return KeyRecord.model_validate(orjson.loads(raw)) if raw else None


def rate_of(principal: Principal, default: Rate | None) -> Rate | None:
    return parse_rate(principal.rate) if principal.rate else default
