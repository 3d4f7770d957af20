"""Who may see what: idempotency keys scoped per API key (or per tenant), and ownership of
jobs by producer keys.

An HTTP ``Idempotency-Key`` never reaches the library as sent. It is prefixed with a short
hash of its scope (the API key's id, or with ``CONVEYOR_API_IDEMPOTENCY_SCOPE=tenant`` the
key's tenant), so producer B sending producer A's key names a different key: B gets a job of
its own, never A's id, and B claiming a key first cannot hand A a job A may not read.

The scoped key must stay a valid name (``^[A-Za-z0-9_.-]{1,64}$``): ``<12 hex>.<key>`` when
the key has at most 51 characters, else ``<12 hex>-<51 hex of its SHA-256>``. The separator
tells the two forms apart, so a short key can never equal a hashed long one. Keys given to
``app.enqueue(idempotency_key=...)`` directly are not scoped: the Python API keeps its own
namespace (a caller would have to forge a scope hash to meet an HTTP key).
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from conveyor.api.auth import Principal

Scope = Literal["key", "tenant"]
SCOPE_HEX = 12
MAX_NAME = 64
DIRECT_MAX = MAX_NAME - SCOPE_HEX - 1


def scope_of(principal: Principal, scope: Scope) -> str:
    """The idempotency scope of a caller: its key, or its tenant (a key without a tenant is
    a tenant of its own)."""
    if scope == "tenant" and principal.tenant:
        return f"tenant:{principal.tenant}"
    return f"key:{principal.id}"


def scoped_key(principal: Principal, key: str, scope: Scope) -> str:
    """``key`` in the caller's scope, as the library stores it."""
    prefix = hashlib.sha256(scope_of(principal, scope).encode()).hexdigest()[:SCOPE_HEX]
    if len(key) <= DIRECT_MAX:
        return f"{prefix}.{key}"
    return f"{prefix}-{hashlib.sha256(key.encode()).hexdigest()[:DIRECT_MAX]}"


def owns(principal: Principal, meta: dict[str, Any]) -> bool:
    """Whether the caller may read a job with this ``meta``: viewers and admins read every
    job; a producer the jobs its key submitted and, when its key has a tenant, the jobs of
    that tenant's keys."""
    if principal.reads_all or meta.get("api_key_id") == principal.id:
        return True
    return principal.tenant is not None and meta.get("tenant") == principal.tenant


def stamp(principal: Principal, meta: dict[str, Any]) -> None:
    """Mark a job as submitted by ``principal`` (the fields ``owns`` reads)."""
    meta["api_key_id"] = principal.id
    if principal.tenant is not None:
        meta["tenant"] = principal.tenant


def search_filter(principal: Principal) -> dict[str, str]:
    """The history filter that limits a producer's searches to the jobs it may read."""
    if principal.reads_all:
        return {}
    if principal.tenant is not None:
        return {"tenant": principal.tenant}
    return {"api_key_id": principal.id}
