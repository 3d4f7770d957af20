"""Turns what a caller submits into a validated ``NewJob``, or a ``ValidationError`` naming
the field and the fix. Nothing reaches Redis before every check has passed."""

from __future__ import annotations

import hashlib
import math
import os
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import orjson

from conveyor import serde
from conveyor.broker.keys import NAME_RE, PRIORITIES, check_name
from conveyor.errors import InvalidArguments, ValidationError
from conveyor.job import NewJob

MAX_ARGS_BYTES = 1024 * 1024
MAX_ATTEMPTS_CAP = 1000
MAX_DELAY_SECONDS = 10 * 365 * 86400
MAX_TIMEOUT_SECONDS = 7 * 86400
MAX_PARENTS = 100

SUBMIT_FIELDS = frozenset(
    {"type", "args", "queue", "priority", "delay", "run_at", "max_attempts",
     "idempotency_key", "timeout", "meta", "depends_on", "on_parent_failure"}
)


def job_id() -> str:
    """128 random bits as 32 hex digits (a uuid4's entropy without building a UUID)."""
    return os.urandom(16).hex()


def check_priority(value: object, field: str = "priority") -> str:
    if value not in PRIORITIES:
        raise ValidationError(field, f"{field} {value!r} is unknown: use one of high, normal, low")
    return str(value)


def check_number(value: object, field: str, *, minimum: float, maximum: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValidationError(field, f"{field} must be a number of seconds, not {value!r}")
    if not math.isfinite(value) or value < minimum or value > maximum:
        raise ValidationError(field, f"{field} must be between {minimum} and {maximum} seconds")
    return float(value)


def check_run_at(value: object, field: str = "run_at") -> int:
    """Epoch ms of an aware datetime (or ISO-8601 text with an offset)."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise ValidationError(field, f"{field} is not an ISO-8601 date-time") from None
    if not isinstance(value, datetime):
        raise ValidationError(field, f"{field} must be a datetime with a timezone")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValidationError(
            field, f"{field} has no timezone: pass an aware datetime, e.g. with tzinfo=UTC"
        )
    if value.timestamp() - time.time() > MAX_DELAY_SECONDS:
        raise ValidationError(field, f"{field} is more than 10 years ahead, like a delay over "
                              f"{MAX_DELAY_SECONDS} s: pick an earlier time")
    return int(value.timestamp() * 1000)


def check_attempts(value: object, field: str = "max_attempts") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_ATTEMPTS_CAP:
        raise ValidationError(field, f"{field} must be an integer from 1 to {MAX_ATTEMPTS_CAP}")
    return value


def check_idempotency_key(value: object, field: str = "idempotency_key") -> str:
    if not isinstance(value, str) or not NAME_RE.fullmatch(value):
        raise ValidationError(
            field, f"{field} must be 1 to 64 characters from A-Z a-z 0-9 _ . -", "invalid_name"
        )
    return value


def check_parents(
    depends_on: object, on_failure: object, delayed: bool, field: str
) -> tuple[tuple[str, ...], str]:
    if depends_on is None:
        depends_on = ()
    if isinstance(depends_on, str) or not isinstance(depends_on, list | tuple):
        raise ValidationError(f"{field}depends_on", f"{field}depends_on must be a list of job ids")
    if len(depends_on) > MAX_PARENTS:
        raise ValidationError(f"{field}depends_on", f"at most {MAX_PARENTS} parents per job")
    for i, parent in enumerate(depends_on):
        if not isinstance(parent, str) or not NAME_RE.fullmatch(parent):
            raise ValidationError(f"{field}depends_on[{i}]", f"{parent!r} is not a job id")
    if depends_on and delayed:
        raise ValidationError(f"{field}depends_on",
                              "a job with depends_on runs when its parents complete: drop delay "
                              "and run_at")
    if on_failure not in (None, "cancel", "run"):
        raise ValidationError(f"{field}on_parent_failure",
                              "on_parent_failure must be 'cancel' or 'run'")
    # A parent named twice is one parent (the script would otherwise count it twice).
    return tuple(dict.fromkeys(depends_on)), str(on_failure or "cancel")


def encode_args(args: object, field: str = "args") -> str:
    if args is None:
        args = {}
    if not isinstance(args, Mapping):
        raise InvalidArguments(field, f"{field} must be a JSON object of named arguments")
    serde.check_json(args, field)
    text = serde.dumps(args)
    if len(text) > MAX_ARGS_BYTES:
        raise InvalidArguments(field, f"{field} is {len(text)} bytes; the cap is {MAX_ARGS_BYTES}")
    return text


def fingerprint(type_: str, queue: str, args_json: str, priority: str, *timing: object) -> str:
    """Identifies a submission's content, to tell a retried request from a conflicting one."""
    digest = hashlib.sha256(orjson.dumps([type_, queue, priority, args_json, *timing]))
    return digest.hexdigest()[:32]


def build(
    type_: str,
    args_json: str,
    *,
    queue: str,
    priority: str,
    delay: float | None,
    run_at: object,
    max_attempts: int,
    timeout: float,
    idempotency_key: str | None,
    meta: Mapping[str, Any] | None,
    depends_on: object = None,
    on_parent_failure: object = None,
    field: str = "",
) -> NewJob:
    """Check the scheduling options and assemble the job (arguments already validated)."""
    def f(name: str) -> str:
        return f"{field}{name}"

    check_name(f("queue"), queue)
    check_priority(priority, f("priority"))
    if delay is not None and run_at is not None:
        raise ValidationError(f("delay"), "give delay or run_at, not both")
    delay_ms = -1 if delay is None else int(
        check_number(delay, f("delay"), minimum=0, maximum=MAX_DELAY_SECONDS) * 1000)
    run_at_ms = -1 if run_at is None else check_run_at(run_at, f("run_at"))
    check_attempts(max_attempts, f("max_attempts"))
    check_number(timeout, f("timeout"), minimum=0.001, maximum=MAX_TIMEOUT_SECONDS)
    if not meta and idempotency_key is None:
        meta_json = "{}"  # the common case, as serde.dumps({}) writes it
    else:
        meta_dict = dict(meta or {})
        if idempotency_key is not None:
            check_idempotency_key(idempotency_key, f("idempotency_key"))
            meta_dict["idempotency_key"] = idempotency_key
        serde.check_json(meta_dict, f("meta"))
        meta_json = serde.dumps(meta_dict)
    parents: tuple[str, ...]
    if depends_on is None and on_parent_failure is None:
        parents, on_failure = (), "cancel"  # what check_parents answers for no parents
    else:
        parents, on_failure = check_parents(
            depends_on, on_parent_failure, delay_ms >= 0 or run_at_ms >= 0, field)
    return NewJob(
        id=job_id(), type=type_, queue=queue, args_json=args_json, priority=priority,
        delay_ms=delay_ms, run_at_ms=run_at_ms, max_attempts=max_attempts, timeout=timeout,
        idempotency_key=idempotency_key,
        fingerprint=fingerprint(type_, queue, args_json, priority, delay_ms, run_at_ms,
                                max_attempts) if idempotency_key else "",
        meta_json=meta_json, depends_on=parents, on_parent_failure=on_failure,
    )
