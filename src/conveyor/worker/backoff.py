"""Retry delays: exponential backoff with full jitter (AWS architecture blog's "Full Jitter")."""

from __future__ import annotations

import random


def full_jitter(failures: int, base: float, cap: float) -> float:
    """Seconds to wait before the try that follows the ``failures``-th failure."""
    ceiling = min(cap, base * (2 ** max(0, failures - 1)))
    return random.uniform(0, ceiling)
