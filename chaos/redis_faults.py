"""Faults of the Redis under test that production deployments have, each one a blocking call
that lasts the fault and leaves the server as it found it, its data intact:

- ``outage``: SIGTERM, ``seconds`` down (longer than every client retry window), a start on
  the same port and data folder; the AOF brings every write back;
- ``oom``: ``maxmemory`` below the memory in use (policy ``noeviction``): every write and
  every script call is refused with ``-OOM`` for ``seconds``, then the limit is put back;
- ``readonly``: the server becomes a replica for ``seconds`` (``-READONLY`` to every write),
  without losing a write - see ``readonly``;
- ``busy``: a script that loops for ``seconds`` past a lowered ``busy-reply-threshold``
  (every other command meets ``-BUSY``), then ``SCRIPT KILL``;
- ``loading``: a restart whose AOF takes seconds to load (padding keys in DB 15 and
  ``key-load-delay``): every command meets ``-LOADING`` meanwhile;
- ``misconf``: a snapshot that failed, as on a full or failing disk: with
  ``stop-writes-on-bgsave-error`` (Redis's default) every write and every script call meets
  ``-MISCONF`` until a snapshot succeeds again.

Used by ``chaos.prodfaults`` (``make chaos`` and the CI tier) and by ``tests/faults``.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import redis

from conveyor.embedded import RedisServer

PAD_DB = 15  # the loading fault's padding lives here, away from Conveyor's keys (DB 0)


def client(server: RedisServer, db: int = 0) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=server.port, db=db, decode_responses=True,
                       socket_timeout=30, socket_connect_timeout=5)


def wait_until(condition: object, timeout: float, what: str) -> None:
    """Poll a state of the server process (no event crosses the process boundary)."""
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.02)


def outage(server: RedisServer, seconds: float) -> float:
    """SIGTERM the server, keep it down ``seconds``, start it again on the same port and
    folder (it answers once its AOF is loaded). Returns the seconds it did not answer."""
    started = time.monotonic()
    server.stop()
    time.sleep(seconds)  # the fault itself
    server.start(timeout=120)
    return time.monotonic() - started


def oom(server: RedisServer, seconds: float) -> int:
    """``maxmemory`` below the memory in use for ``seconds``; returns the limit used."""
    with memory_full(server) as limit:
        time.sleep(seconds)  # the fault itself
    return limit


@contextlib.contextmanager
def memory_full(server: RedisServer) -> Iterator[int]:
    """Inside the block ``maxmemory`` is half the memory in use (policy ``noeviction``):
    every write and every script call meets ``-OOM``; the settings are put back after.
    Yields the limit used."""
    r = client(server)
    try:
        before = r.config_get("maxmemory")["maxmemory"]
        policy = r.config_get("maxmemory-policy")["maxmemory-policy"]
        r.config_set("maxmemory-policy", "noeviction")
        used = int(r.info("memory")["used_memory"])
        limit = max(1, used // 2)
        r.config_set("maxmemory", limit)
        try:
            yield limit
        finally:
            r.config_set("maxmemory", before)
            r.config_set("maxmemory-policy", policy)
    finally:
        r.close()


def busy(server: RedisServer, seconds: float, threshold_ms: int = 100) -> None:
    """A read-only script that loops until ``SCRIPT KILL``; past ``threshold_ms`` every other
    client gets ``-BUSY``. Killed after ``seconds``; the threshold is put back."""
    r = client(server)
    try:
        before = r.config_get("busy-reply-threshold")["busy-reply-threshold"]
        r.config_set("busy-reply-threshold", threshold_ms)
        looper = threading.Thread(target=_loop_script, args=(server,), daemon=True)
        looper.start()
        time.sleep(seconds)  # the fault itself
        _script_kill(r)
        looper.join(30)
        r.config_set("busy-reply-threshold", before)
    finally:
        r.close()


def misconf(server: RedisServer, seconds: float) -> None:
    """``seconds`` of ``-MISCONF`` to every write and script call (``writes_stopped``)."""
    with writes_stopped(server):
        time.sleep(seconds)  # the fault itself


@contextlib.contextmanager
def writes_stopped(server: RedisServer) -> Iterator[None]:
    """A background save that fails; inside the block every write and script call meets
    ``-MISCONF``; at the end a save that succeeds lets writes in again. The failure is real:
    a BGSAVE child slowed by ``rdb-key-save-delay`` and killed with SIGKILL, as the kernel's
    OOM killer ends a snapshot child; Redis then stops writes exactly as it does when the
    disk is full. The save points are set for the fault (Redis stops writes only when it
    has some) and put back after."""
    import psutil

    r, pad = client(server), client(server, PAD_DB)
    try:
        saved = {name: r.config_get(name)[name]
                 for name in ("save", "stop-writes-on-bgsave-error", "rdb-key-save-delay")}
        try:
            r.config_set("save", "3600 1")
            r.config_set("stop-writes-on-bgsave-error", "yes")
            r.config_set("rdb-key-save-delay", 1_000_000)  # a second per key it writes
            pad.set("conveyor-fault-misconf", "1")  # a key to write, if the data set has none
            r.bgsave()
            assert server.proc is not None
            parent = psutil.Process(server.proc.pid)
            wait_until(parent.children, 30, "the snapshot child")
            for child in parent.children():
                child.kill()
            wait_until(lambda: _persistence(r)["rdb_last_bgsave_status"] == "err", 30,
                       "the failed snapshot")
            yield
        finally:  # put everything back, even when the fault did not start as planned
            r.config_set("rdb-key-save-delay", 0)
            wait_until(lambda: not _persistence(r)["rdb_bgsave_in_progress"], 30,
                       "the killed snapshot to be reaped")
            r.bgsave()
            wait_until(lambda: _saved(_persistence(r)), 60, "a snapshot that succeeds")
            for name in ("save", "stop-writes-on-bgsave-error", "rdb-key-save-delay"):
                r.config_set(name, saved[name])
            pad.delete("conveyor-fault-misconf")
    finally:
        pad.close()
        r.close()


def _persistence(r: redis.Redis) -> dict[str, Any]:
    return r.info("persistence")  # type: ignore[return-value]


def _saved(info: dict[str, Any]) -> bool:
    return info["rdb_last_bgsave_status"] == "ok" and not info["rdb_bgsave_in_progress"]


def _loop_script(server: RedisServer) -> None:
    r = client(server)
    with contextlib.suppress(redis.ResponseError, redis.ConnectionError):
        r.eval("while true do end", 0)  # answered 'Script killed by user' at SCRIPT KILL
    r.close()


def _script_kill(r: redis.Redis) -> None:
    """SCRIPT KILL once the script runs (and has passed the threshold)."""
    deadline = time.monotonic() + 30
    while True:
        try:
            r.script_kill()
            return
        except redis.ResponseError as exc:  # NOTBUSY: not running yet
            if time.monotonic() > deadline:
                raise TimeoutError(f"no script to kill: {exc}") from exc
            time.sleep(0.02)


def loading(server: RedisServer, seconds: float = 2.0, keys: int = 25_000) -> float:
    """Restart the server on a dataset that takes about ``seconds`` to load: ``keys`` padding
    keys in DB 15, an AOF rewrite (so they sit in the RDB base the delay applies to) and
    ``key-load-delay``. Returns the seconds from SIGTERM to the server answering PONG; the
    padding is removed afterwards."""
    pad = client(server, PAD_DB)
    try:
        with pad.pipeline(transaction=False) as pipe:
            for i in range(keys):
                pipe.set(f"pad:{i}", "x")
                if i % 5000 == 4999:
                    pipe.execute()
            pipe.execute()
        _rewrite_aof(pad)
    finally:
        pad.close()
    delay_us = max(1, int(seconds * 1e6 / keys / 8))  # the sleep granularity is ~8x the ask
    extra = list(server.extra)
    server.extra = [*extra, "--key-load-delay", str(delay_us),
                    "--loading-process-events-interval-bytes", "1024"]  # answer -LOADING
    started = time.monotonic()
    try:
        server.stop()
        server.start(timeout=120)  # the server answers -LOADING until its data is in
    finally:
        server.extra = extra
    down = time.monotonic() - started
    pad = client(server, PAD_DB)
    try:
        pad.config_set("key-load-delay", 0)
        pad.flushdb(asynchronous=True)
    finally:
        pad.close()
    return down


def _rewrite_aof(r: redis.Redis) -> None:
    with contextlib.suppress(redis.ResponseError):  # "already in progress" is as good
        r.bgrewriteaof()

    def done() -> bool:
        info = r.info("persistence")
        return not (info["aof_rewrite_in_progress"] or info["aof_rewrite_scheduled"])

    wait_until(done, 60, "the AOF rewrite")


def readonly(server: RedisServer, seconds: float, binary: str | None = None) -> None:
    """The server under test turns into a replica for ``seconds`` (``-READONLY`` to writes),
    and back, with no write lost and the same port for its clients:

    1. a second server B starts as the replica of A (the server under test) and syncs;
    2. ``CLIENT PAUSE WRITE`` on A holds writes until B has every byte A wrote;
    3. B is promoted (``REPLICAOF NO ONE``): it keeps A's replication id as its second id;
    4. A becomes B's replica: a partial resync (PSYNC2), so A keeps its data - and even a full
       resync would load B's copy, which holds every write A acknowledged;
    5. ``CLIENT UNPAUSE``: the held writes now meet ``-READONLY``, for ``seconds``;
    6. ``REPLICAOF NO ONE`` on A makes it the primary again; B, which no client knows, stops.
    """
    folder = Path(tempfile.mkdtemp(prefix="conveyor-replica-"))
    other = RedisServer(binary or server.binary, folder, aof=False).start()
    a, b = client(server), client(other)
    try:
        delay = a.config_get("repl-diskless-sync-delay")["repl-diskless-sync-delay"]
        a.config_set("repl-diskless-sync-delay", 0)  # sync B now, not in 5 s
        b.replicaof("127.0.0.1", server.port)
        wait_until(lambda: b.info("replication").get("master_link_status") == "up", 60,
                   "the replica to sync")
        a.execute_command("CLIENT", "PAUSE", 60_000, "WRITE")
        try:
            _catch_up(a, b)
            b.replicaof("NO", "ONE")
            a.replicaof("127.0.0.1", other.port)
            wait_until(lambda: a.info("replication").get("master_link_status") == "up", 60,
                       "the server under test to follow the replica")
        finally:
            a.execute_command("CLIENT", "UNPAUSE")
        time.sleep(seconds)  # the fault itself: writes meet -READONLY
        a.replicaof("NO", "ONE")
        a.config_set("repl-diskless-sync-delay", delay)
    finally:
        a.close()
        b.close()
        other.kill()
        shutil.rmtree(folder, ignore_errors=True)


def _catch_up(a: redis.Redis, b: redis.Redis) -> None:
    def caught_up() -> bool:
        return int(b.info("replication")["slave_repl_offset"]) >= int(
            a.info("replication")["master_repl_offset"])

    wait_until(caught_up, 60, "the replica to have every write")
