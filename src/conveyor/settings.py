"""All configuration in one object. Every field reads ``CONVEYOR_<NAME>`` from the environment;
CLI flags override it. Docs, CLI and environment use the same names."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Conveyor's settings. Durations are in seconds."""

    model_config = SettingsConfigDict(env_prefix="CONVEYOR_", extra="ignore")

    redis_url: str = Field("redis://127.0.0.1:6379/0", description="Redis (or Valkey) URL")
    store_url: str = Field(
        "sqlite:///.conveyor/history.db", description="History store URL (sqlite:/// or mongodb://)"
    )
    prefix: str = Field("cv", description="Prefix of every Redis key")
    admin_key: str | None = Field(None, description="Bootstrap admin API key")

    lease_seconds: float = Field(30.0, gt=0, description="Lease of a running job")
    renew_seconds: float = Field(10.0, gt=0, description="How often workers renew their leases")
    # The heartbeat comes from a thread that a blocked event loop cannot stop, so the TTL
    # can be short: a worker killed with -9 has its jobs re-run within about 2 s.
    heartbeat_seconds: float = Field(0.5, gt=0, description="Worker heartbeat period")
    heartbeat_ttl_seconds: float = Field(
        1.5, gt=0, description="A worker silent this long is dead; its jobs are requeued"
    )
    reap_seconds: float = Field(0.5, gt=0, description="How often the reaper looks for orphans")
    stall_warn_seconds: float = Field(
        1.0, gt=0, description="Warn when a handler blocks the worker's event loop this long"
    )
    block_seconds: float = Field(
        5.0, gt=0, description="Longest wait on the wake-up marker (the watchdog's period)"
    )
    claim_batch: int = Field(100, ge=1, le=1000, description="Most jobs leased per claim call")
    poison_threshold: int = Field(3, ge=1, description="Worker deaths that make a poison pill")

    max_attempts: int = Field(3, ge=1, description="Default attempts per job")
    timeout_seconds: float = Field(300.0, gt=0, description="Default per-job timeout")
    backoff_base_seconds: float = Field(1.0, ge=0, description="Retry backoff base")
    backoff_cap_seconds: float = Field(300.0, ge=0, description="Retry backoff cap")
    grace_seconds: float = Field(25.0, ge=0, description="Graceful shutdown: time to finish jobs")

    result_ttl_seconds: float = Field(
        3600.0, gt=0, description="How long completed/canceled jobs stay in Redis"
    )
    unique_ttl_seconds: float = Field(86400.0, gt=0, description="Idempotency key lifetime")
    release_unique_on_finish: bool = Field(
        False, description="Release an idempotency key when its job completes/dies/is canceled"
    )
    events_maxlen: int = Field(
        200_000, ge=1000, description="Approximate length cap of each queue's events stream"
    )
    durable_replicas: int = Field(
        0, ge=0, le=16,
        description="enqueue answers only after this many replicas have the jobs (WAIT)",
    )
    durable_aof: bool = Field(
        False, description="enqueue also waits for the AOF fsync (WAITAOF; Valkey 8, Redis 7.2+)"
    )
    durable_timeout_ms: int = Field(
        1000, ge=1, le=60_000, description="How long enqueue waits for replicas / the AOF"
    )
    scheduler_lease_seconds: float = Field(
        10.0, gt=0, description="Scheduler leader lease; a dead leader is replaced this fast"
    )
    history_retention_days: float = Field(30.0, gt=0, description="History store retention")
    dlq_retention_days: float = Field(
        7.0, gt=0,
        description="How long dead jobs (and their dead-letter entries) stay in Redis",
    )


# Where ``conveyor up`` keeps its state, relative to the working folder it runs in.
STATE_DIR = Path(".conveyor")
URL_FILE = STATE_DIR / "redis.url"  # the whole URL of the server it started (password too)


def up_redis_url() -> str | None:
    """The URL ``conveyor up`` wrote in the working folder, unless ``CONVEYOR_REDIS_URL`` is
    set (it always wins); None when there is none. The one place that reads the file: the
    library's ``Conveyor()`` and every CLI command find the same server."""
    if "CONVEYOR_REDIS_URL" in os.environ:
        return None
    try:
        url = URL_FILE.read_text().strip()
    except OSError:  # no file (or no folder): no `conveyor up` here
        return None
    return url or None


def announce_up_url(url: str) -> None:
    """The one log line that says the Redis URL came from ``conveyor up``'s file."""
    from conveyor.connect import redact

    logging.getLogger("conveyor").info(
        "Redis: %s, from %s (written by `conveyor up`; CONVEYOR_REDIS_URL overrides it)",
        redact(url), URL_FILE.resolve())
