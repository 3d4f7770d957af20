"""Return codes shared by the Lua scripts, and the exceptions they map to."""

from __future__ import annotations

from enum import IntEnum


class Code(IntEnum):
    """Negative codes any script may return for one job."""

    STALE_LEASE = -1  # the token no longer matches: the job was leased again or reaped
    MISSING = -2  # the job hash is gone (expired or deleted)
    WRONG_STATE = -3  # the job's status does not allow the operation


class FailOutcome(IntEnum):
    RETRYING = 1
    DEAD = 2
    CANCELED = 3


class CancelOutcome(IntEnum):
    CANCELED = 1
    REQUESTED = 2


# Special retry delays understood by fail.lua.
NO_RETRY = -1
END_CANCELED = -2
