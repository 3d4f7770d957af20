"""What a worker counts: shown by ``conveyor status``, the API and the dashboard."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class Stats:
    processed: int = 0
    failed: int = 0
    stale: int = 0
    stalls: int = 0  # times a handler blocked the event loop past the warning threshold
    longest_stall_ms: int = 0
    started_ms: int = field(default_factory=lambda: int(time.time() * 1000))
