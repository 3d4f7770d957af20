"""The network between workers and Redis misbehaves (``tests.faults.proxy``): it stops
forwarding with every socket left open (a stalled path: no RST, no FIN), or it resets every
connection at once. The driver keeps a direct connection. The worker must come through with
nothing lost, nothing run twice but what a reaper requeued, and go on claiming, renewing and
acknowledging.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.proxy import Proxy, ProxyProcess
from tests.faults.rig import LEASE, Rig, wait_for


@pytest.fixture
def proxy(rig: Rig, tmp_path: Path) -> Iterator[ProxyProcess]:
    p = ProxyProcess(rig.server.port, tmp_path / "proxy.log").start()
    yield p
    p.stop()


async def ask(port: int, timeout: float) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"PING\r\n")
        return await asyncio.wait_for(reader.readline(), timeout)
    finally:
        writer.close()


async def test_proxy_pauses_resumes_and_cuts(rig: Rig) -> None:
    proxy = await Proxy(rig.server.port).start()
    try:
        assert await ask(proxy.port, 5) == b"+PONG\r\n"
        proxy.pause()
        held = asyncio.create_task(ask(proxy.port, 10))
        done, _ = await asyncio.wait([held], timeout=0.5)  # a paused path answers nothing
        assert not done
        proxy.resume()
        assert await held == b"+PONG\r\n"  # what was held is delivered
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.write(b"PING\r\n")
        assert await reader.readline() == b"+PONG\r\n"
        assert proxy.cut() >= 1
        assert await reader.read() == b""  # the connection was reset under the client
        writer.close()
        assert await ask(proxy.port, 5) == b"+PONG\r\n"  # new connections work at once
    finally:
        await proxy.close()


def through_fault(rig: Rig, proxy: ProxyProcess, fault: str) -> None:
    worker, wid = rig.worker(concurrency=10, url=proxy.url)
    before = rig.submit(100, ms=200)
    wait_for(lambda: len(rig.runs()) >= 10, 30, "jobs to be running")
    start = rig.redis_ms()
    if fault == "pause":
        proxy.pause()
        time.sleep(LEASE - 1.0)  # past the blocking watchdog, short of the lease
        proxy.resume()
    else:
        for _ in range(5):
            proxy.cut()
            time.sleep(0.8)  # connections reset over and over while jobs flow
    rig.assert_heartbeats(wid, worker)
    after = rig.submit(1, ms=int((LEASE + 2) * 1000)) + rig.submit(20, ms=20)
    rig.wait_ended(before + after, 60, worker)
    rig.assert_alive(worker)
    rig.assert_ran_once_but(before + after, rig.requeued_since(start))


@pytest.mark.timeout(120)
def test_worker_through_a_paused_network(rig: Rig, proxy: ProxyProcess) -> None:
    through_fault(rig, proxy, "pause")


@pytest.mark.timeout(120)
def test_worker_through_connection_resets(rig: Rig, proxy: ProxyProcess) -> None:
    through_fault(rig, proxy, "cut")
