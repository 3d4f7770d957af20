"""Every script's return codes, named in one place (as BullMQ's ``ErrorCode`` table does).

``SCRIPT_CODES`` lists, per script, each code it may return; the header of the script's
``.lua`` file lists the same codes on its ``Returns`` lines (``--   -2 MISSING  ...``), and a
test (tests/broker/test_codes.py) checks the two against each other. Scripts that answer with
data rather than a code are in ``DATA_REPLIES``.
"""

from __future__ import annotations

from enum import IntEnum


class Code(IntEnum):
    """Negative codes any script may return for one job."""

    STALE_LEASE = -1  # the token no longer matches: the job was leased again or reaped
    MISSING = -2  # the job hash is gone (expired or deleted)
    WRONG_STATE = -3  # the job's status does not allow the operation


class Done(IntEnum):
    """The transition happened (complete, delete, handback, progress, release, retry, undo,
    pause)."""

    DONE = 1


class FailOutcome(IntEnum):
    RETRYING = 1
    DEAD = 2
    CANCELED = 3


class CancelOutcome(IntEnum):
    CANCELED = 1
    REQUESTED = 2


class LimitOutcome(IntEnum):
    GRANTED = 1
    PARKED = 2  # over the concurrency cap: waits for a slot
    DELAYED = 3  # over the rate: delayed until the rate allows


ScriptCode = Code | Done | FailOutcome | CancelOutcome | LimitOutcome

SCRIPT_CODES: dict[str, tuple[ScriptCode, ...]] = {
    "cancel": (CancelOutcome.CANCELED, CancelOutcome.REQUESTED, Code.MISSING, Code.WRONG_STATE),
    "complete": (Done.DONE, Code.STALE_LEASE, Code.MISSING),
    "delete": (Done.DONE, Code.MISSING, Code.WRONG_STATE),
    "handback": (Done.DONE, Code.STALE_LEASE, Code.MISSING),
    "fail": (FailOutcome.RETRYING, FailOutcome.DEAD, FailOutcome.CANCELED, Code.STALE_LEASE,
             Code.MISSING),
    "limit": (LimitOutcome.GRANTED, LimitOutcome.PARKED, LimitOutcome.DELAYED,
              Code.STALE_LEASE),
    "pause": (Done.DONE,),
    "progress": (Done.DONE, Code.STALE_LEASE, Code.MISSING),
    "release": (Done.DONE, Code.STALE_LEASE, Code.MISSING),
    "retry": (Done.DONE, Code.MISSING, Code.WRONG_STATE),
    "undo": (Done.DONE, Code.MISSING, Code.WRONG_STATE),
}
DATA_REPLIES = frozenset(
    {"check", "claim", "enqueue", "heartbeat", "lock", "ratelimit", "reap", "renew"}
)

# The refusals enqueue.lua and check.lua answer with, before writing anything.
REFUSED_PARENT = "!"  # {'!', job index, parent id}
REFUSED_KEY = "!key"  # {'!key', job index, stored "<id> <fingerprint>"}

# Special retry delays understood by fail.lua.
NO_RETRY = -1
END_CANCELED = -2
