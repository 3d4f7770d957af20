"""Under a steady stream of jobs the overview keeps moving: a producer and a worker run
against the ``conveyor up`` of the other dashboard tests for two minutes, and the numbers
the overview reads from the API change at least every 3 s, and the page never falls so far
behind the events that its live badge says "Behind" (before, every re-read was cancelled by
the next one while the API was slow, and the page froze saying "Live"; later, the page's
work per event grew with every job it had seen, and it fell 7 s behind on the CI machine).

The page cannot show a change the API has not made: the test also polls the API's own
count, and where that stood still longer (the history store records events a moment after
they happen, and on a loaded machine that moment grows), the page may lag it by one refresh
(a read and the 1 s pace) and the resolution of the test's own polling, no more.

The rate is ``CONVEYOR_TEST_LOAD_RATE`` jobs a second: 300 by default, the highest the 2-core
CI VM held steady next to Chromium while other suites ran (at 1,000 the producer reached
861/s there); ``CONVEYOR_TEST_LOAD_RATE=1000`` runs the issue's figure."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from playwright.sync_api import Page

from tests.dashboard.conftest import Server, login, screenshot

RATE = int(os.environ.get("CONVEYOR_TEST_LOAD_RATE", "300"))
SECONDS = 120.0
WARMUP = 10.0
MAX_GAP = 3.0
BEHIND_BADGE_MS = 5000  # past this the badge says "Behind" (LiveProvider.tsx BEHIND_AFTER_MS)
ONE_REFRESH = 2.0  # the 1 s pace and a read, on a loaded machine
PACE = 1.0  # the overview's pause between reads of /api/stats
POLL = 0.5  # how often the test reads the API's own count

PRODUCER = """
import asyncio, sys, time
from conveyor import Conveyor

async def main(url: str, rate: int, seconds: float) -> None:
    app = Conveyor(redis_url=url)
    batch = max(1, rate // 20)
    start, sent, n = time.monotonic(), 0, 0
    while time.monotonic() - start < seconds:
        await app.enqueue_many([{"type": "demo.fast", "args": {"n": n + i}} for i in range(batch)])
        sent, n = sent + batch, n + batch
        ahead = start + sent / rate - time.monotonic()
        if ahead > 0:
            await asyncio.sleep(ahead)
    print(f"{sent} {time.monotonic() - start:.1f}", flush=True)
    await app.close()

asyncio.run(main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3])))
"""

# Records, in the page, when any of the numbers read from the API change.
WATCH = """() => {
  const ids = ["total-completed", "total-dead", "total-active", "total-waiting", "oldest-waiting"];
  const read = () => ids.map((id) =>
    document.querySelector(`[data-testid=${id}] .stat__value`)?.textContent ?? "").join("|");
  performance.setResourceTimingBufferSize(100000);
  performance.clearResourceTimings();
  window.__changes = [performance.now()];
  window.__behind = [];
  let last = read();
  window.__watch = setInterval(() => {
    const now = read();
    if (now !== last) { window.__changes.push(performance.now()); last = now; }
    const badge = document.querySelector("[data-testid=live-state]");
    window.__behind.push([performance.now(), Number(badge?.dataset.behindMs ?? 0)]);
  }, 100);
}"""


def completed(server: Server) -> int:
    return int(server.api.get("/api/stats").json()["counts"].get("completed", 0))


def still_on_server(server: Server, stop: threading.Event) -> list[float]:
    """How long the API's own completed count stood still, twice a second (what the page
    cannot beat: the history store records events a moment after they happen)."""
    gaps, last, since = [], -1, time.monotonic()
    with httpx.Client(base_url=server.url, headers=server.api.headers, timeout=30) as api:
        while not stop.wait(POLL):
            now = int(time.time() * 1000)
            stats = api.get("/api/stats", params={"since_ms": now - 1000, "until_ms": now,
                                                  "interval_ms": 1000})
            count = stats.json()["counts"].get("completed", 0)
            if count != last:
                gaps.append(time.monotonic() - since)
                last, since = count, time.monotonic()
    return gaps[1:]


def test_overview_numbers_keep_changing_under_steady_load(
    page: Page, server: Server, tmp_path: Path
) -> None:
    redis_url = (server.cwd / ".conveyor" / "redis.url").read_text().strip()
    env = {**os.environ, "CONVEYOR_REDIS_URL": redis_url}
    worker = subprocess.Popen(
        [sys.executable, "-m", "conveyor", "worker", "conveyor.demo:app", "--queues", "demo",
         "--concurrency", "200"], env=env, cwd=tmp_path,
        stdout=subprocess.DEVNULL, stderr=(tmp_path / "worker.log").open("wb"))
    producer = subprocess.Popen(
        [sys.executable, "-c", PRODUCER, redis_url, str(RATE), str(SECONDS + WARMUP)],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        login(page, server)
        page.get_by_test_id("total-completed").wait_for()
        time.sleep(WARMUP)
        done_before, started = completed(server), time.monotonic()
        page.evaluate(WATCH)
        stop = threading.Event()
        with ThreadPoolExecutor(1) as pool:
            on_server = pool.submit(still_on_server, server, stop)
            page.wait_for_timeout(SECONDS * 1000)
            stop.set()
            server_gaps = on_server.result()
        changes: list[float] = page.evaluate(
            "() => { clearInterval(window.__watch); "
            "return [...window.__changes, performance.now()]; }")
        samples: list[list[float]] = page.evaluate("() => window.__behind")
        behind = [ms for _, ms in samples]
        reads: list[float] = sorted(page.evaluate(
            "() => performance.getEntriesByType('resource')"
            ".filter((e) => e.name.includes('/api/stats')).map((e) => e.duration)"))
        rate = (completed(server) - done_before) / (time.monotonic() - started)
        screenshot(page, "overview-under-load")
        out, _ = producer.communicate(timeout=60)
    finally:
        for proc in (producer, worker):
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=30)
    sent, took = out.split()[-2:]
    gaps = [(b - a) / 1000 for a, b in itertools.pairwise(changes)]
    print(f"\nsubmitted {int(sent) / float(took):.0f} jobs/s, completed {rate:.0f} jobs/s; "
          f"{len(changes) - 2} changes of the numbers, longest gap {max(gaps):.2f} s; "
          f"longest lag behind the events {max(behind) / 1000:.1f} s; {len(reads)} reads of "
          f"/api/stats, p50 {reads[len(reads) // 2]:.0f} ms, max {reads[-1]:.0f} ms; the "
          f"API's own count stood still for up to {max(server_gaps, default=0):.1f} s")
    assert int(sent) / float(took) >= 0.9 * RATE, "the producer did not keep its rate"
    # The API's count is read every POLL s, so it may have stood still up to POLL longer
    # than measured; the page may then lag it by one refresh: the pace and its longest read
    # (a clean-clone run failed at 4.4 s against 4.1 allowed, the page's slowest read 1.4 s).
    refresh = max(ONE_REFRESH, PACE + reads[-1] / 1000)
    allowed = max(MAX_GAP, max(server_gaps, default=0) + POLL + refresh)
    # The page kept a view per job any event named and scanned them all on every event, so
    # at 300 jobs/s its event handling grew until it stood still for 5.3 s on the loaded CI
    # machine, 7.3 s behind the events it had (fixed in dashboard/src/live/invalidation.ts:
    # views only for keys a query holds). Neither may come back.
    for start, end in itertools.pairwise(changes):
        assert (end - start) / 1000 <= allowed, (
            f"the overview's numbers stood still for {(end - start) / 1000:.1f} s "
            f"(allowed {allowed:.1f} s)")
    assert max(behind) < BEHIND_BADGE_MS, (
        f"the page fell {max(behind) / 1000:.1f} s behind the events: its badge said Behind")
    assert sorted(gaps)[len(gaps) // 2] <= ONE_REFRESH, "the overview lagged its refreshes"
