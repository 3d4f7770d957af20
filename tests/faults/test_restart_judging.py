"""A Redis restart shorter than the heartbeat TTL (a LOADING restart: ~3 s without answers)
must not make a reaper judge live workers dead (DESIGN.md section 9: a live process is never
judged dead).

Found by ``chaos.prodfaults``: with jobs flowing through two workers (default liveness:
heartbeat 1 s, TTL 5 s), the scheduler's reaper requeues every job of one live worker about
a second after Redis answers again, and none of its loops logs an error: the client's own
retries (conveyor.connect: 5 retries, backoff up to 2 s) hide a restart that short from the
loop, so its "judge only after a TTL of answers" gate never closes. The same driver, one
fault.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from chaos.prodfaults import run_prodfaults, short_config


@pytest.mark.timeout(240)
def test_a_short_restart_judges_no_live_worker_dead(tmp_path: Path) -> None:
    outcome = run_prodfaults(short_config(faults=("loading",), workdir=tmp_path / "run",
                                          drain_timeout=60.0))
    r = outcome.report.base
    assert r.lost == []
    assert r.attributed["loading"] == 0, (
        f"{r.attributed['loading']} jobs of live workers re-ran after a "
        f"{outcome.faults[0].detail.get('result', 0):.1f} s restart; logs in {outcome.workdir}")
    assert outcome.report.ok
