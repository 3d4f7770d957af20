"""Chaos suite: real workers, a real Redis, and faults (kill -9, SIGSTOP, Redis restart,
recorder and producer kills) while jobs flow; a ledger on a separate Redis says what ran.

``python -m chaos.run --jobs 100000 --kills 20`` (``make chaos``); the CI tier is
``tests/chaos/test_chaos_tier.py``. See docs/chaos.md.
"""
