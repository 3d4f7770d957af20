"""What a running handler can see and do: ``ctx.attempt``, ``ctx.cancelled``, ``ctx.progress``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conveyor.app import Conveyor


@dataclass
class Context:
    """Passed to handlers that declare a ``ctx`` parameter (or one annotated ``Context``).

    ``attempt`` is also the job's fencing token: it grows with every lease, so a handler can
    stamp its own side effects with it and reject writes from an older attempt.
    """

    job_id: str
    job_type: str
    queue: str
    attempt: int
    max_attempts: int
    worker_id: str
    app: Conveyor | None = None
    # A plain flag: set from the event loop, read from a handler's thread (the GIL orders it).
    _cancelled: bool = field(default=False, repr=False)

    @property
    def cancelled(self) -> bool:
        """True once the job was canceled, timed out or the worker is shutting down (sync
        handlers should poll it and return early)."""
        return self._cancelled

    async def progress(self, fraction: float, message: str | None = None) -> None:
        """Record progress (0.0 to 1.0) on the job and emit a ``progress`` event."""
        if self.app is not None:
            await self.app._progress(self, fraction, message)
