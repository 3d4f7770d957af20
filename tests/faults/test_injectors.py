"""The fault injectors themselves (``chaos.redis_faults``), on every server binary: each one
really produces its error reply while it lasts, and leaves every write in place afterwards
(the READONLY one included: the server becomes a replica and back without a sync wiping it).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from chaos import redis_faults
from conveyor.embedded import RedisServer
from tests.conftest import BINARIES

FAULTS: dict[str, tuple[Callable[[RedisServer], object], str]] = {
    "outage": (lambda s: redis_faults.outage(s, 1.0), "refused"),
    "oom": (lambda s: redis_faults.oom(s, 1.0), "-OOM"),
    "readonly": (lambda s: redis_faults.readonly(s, 1.0), "-READONLY"),
    "busy": (lambda s: redis_faults.busy(s, 1.0), "-BUSY"),
    "loading": (lambda s: redis_faults.loading(s, 1.5), "-LOADING"),
    "misconf": (lambda s: redis_faults.misconf(s, 1.0), "-MISCONF"),
}


@pytest.fixture(params=BINARIES, ids=[name for name, _ in BINARIES])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RedisServer]:
    s = RedisServer(request.param[1], tmp_path / "redis",
                    extra=["--appendfsync", "always"]).start()
    yield s
    s.kill()


def probe(port: int, stop: threading.Event, seen: set[str]) -> None:
    """Writes on raw connections and notes every first word of reply (or the failure)."""
    while not stop.is_set():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as c:
                c.sendall(b"RPUSH probe x\r\n")
                seen.add(c.recv(64).split(b" ")[0].decode().strip())
        except ConnectionRefusedError:
            seen.add("refused")
        except OSError:
            seen.add("timeout")
        time.sleep(0.02)  # a probe's period


@pytest.mark.timeout(60)
@pytest.mark.parametrize("fault", list(FAULTS))
def test_injector_produces_its_reply_and_keeps_every_write(
    server: RedisServer, fault: str
) -> None:
    r = redis.Redis(port=server.port, decode_responses=True)
    save = r.config_get("save")["save"]
    r.mset({f"k{i}": str(i) for i in range(2000)})
    r.rpush("list", *range(500))
    stop, seen = threading.Event(), set[str]()
    watcher = threading.Thread(target=probe, args=(server.port, stop, seen))
    watcher.start()
    try:
        FAULTS[fault][0](server)
    finally:
        stop.set()
        watcher.join()
    expected = FAULTS[fault][1]
    assert expected in seen, f"{fault}: replies seen {seen}"
    r = redis.Redis(port=server.port, decode_responses=True)
    assert r.mget([f"k{i}" for i in range(2000)]) == [str(i) for i in range(2000)]
    assert r.lrange("list", 0, -1) == [str(i) for i in range(500)]
    assert r.info("replication")["role"] == "master"
    assert r.set("after", "1")  # writable again
    assert r.config_get("maxmemory")["maxmemory"] == "0"
    assert int(r.config_get("busy-reply-threshold")["busy-reply-threshold"]) == 5000
    assert r.config_get("save")["save"] == save
    assert r.config_get("rdb-key-save-delay")["rdb-key-save-delay"] == "0"
    assert r.dbsize() == 2000 + 3  # k*, list, probe, after (the padding was in DB 15)
