"""Every script is all or nothing at the memory limit (maxmemory, noeviction), on every server:
a writing script is refused up front, before any write, or runs to its end; no job is ever on
no structure or on two; the few scripts declared allow-oom (delete, renew, heartbeat, lock)
keep working there."""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from redis.exceptions import OutOfMemoryError, ResponseError

from conveyor import Conveyor
from conveyor.broker.broker import Completion
from conveyor.broker.scripts import available, source
from conveyor.embedded import RedisServer
from tests.conftest import FAST

# Where a job of each status must be, and only there ('waiting' children are on no list).
HOME = {"queued": "ready", "delayed": "delayed", "retrying": "delayed", "active": "active",
        "dead": "dead", "completed": None, "canceled": None}
ALLOW_OOM = {"delete", "heartbeat", "lock", "renew", "undo"}


async def snapshot(app: Conveyor) -> tuple[dict[str, tuple[str, str]], int]:
    """Each job's (status, structures holding it), and the length of the events stream."""
    qk = app.keys.queue("q")
    places: Counter[tuple[str, str]] = Counter()
    for name, key in zip(("ready",) * 3, qk.ready_all, strict=True):
        places.update((job, name) for job in await app.redis.lrange(key, 0, -1))
    for name, key in (("delayed", qk.delayed), ("active", qk.active), ("dead", qk.dead)):
        places.update((job, name) for job in await app.redis.zrange(key, 0, -1))
    jobs = {}
    async for key in app.redis.scan_iter(match=qk.job_prefix + "*"):
        if key.endswith(":children"):
            continue
        job_id = key[len(qk.job_prefix):]
        status, waiting = await app.redis.hmget(key, "status", "waiting")
        held = ",".join(sorted(f"{p}x{n}" for (j, p), n in places.items() if j == job_id))
        jobs[job_id] = (f"{status}{'+waiting' if waiting else ''}", held)
    return jobs, await app.redis.xlen(qk.events)


def check_homes(jobs: dict[str, tuple[str, str]]) -> None:
    for job_id, (status, held) in jobs.items():
        if status.endswith("+waiting"):
            assert held == "", f"{job_id} waits on its parents but is on {held}"
            continue
        home = HOME[status]
        assert held == (f"{home}x1" if home else ""), f"{job_id} is {status} but on {held!r}"


def is_oom(exc: Exception) -> bool:
    return isinstance(exc, OutOfMemoryError) or str(exc).startswith("OOM")


async def fill_to_the_limit(app: Conveyor) -> None:
    info = await app.redis.info("memory")
    await app.redis.config_set("maxmemory-policy", "noeviction")
    await app.redis.config_set("maxmemory", int(info["used_memory"]) + 1_000_000)
    pad = "x" * 20_000
    for n in range(1000):
        try:
            await app.enqueue("step", {"n": n, "pad": pad}, priority="low")
        except ResponseError as exc:
            assert is_oom(exc), exc
            return
    raise AssertionError("never reached the memory limit")


async def test_scripts_are_all_or_nothing_at_the_memory_limit(redis_server: RedisServer) -> None:
    app = Conveyor(redis_url=redis_server.url, **FAST)

    @app.job(queue="q", max_attempts=3)
    async def step(n: int, pad: str = "") -> int:
        return n

    try:
        handles = await app.enqueue_many([{"type": "step", "args": {"n": n}} for n in range(12)])
        parent = handles[11]  # stays queued: deleting it settles its child
        child = await app.enqueue("step", {"n": 99}, depends_on=[parent.id])
        jobs = (await app.broker.claim("q", "w", 9)).jobs
        await app.broker.fail(jobs[5], "w", {"type": "E", "message": "x"}, -1)  # dead
        await app.redis.zadd(app.keys.queue("q").active, {jobs[4].id: 1})  # lease ran out
        queued = [h.id for h in handles[9:]]
        await fill_to_the_limit(app)

        ops: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
            ("complete", lambda: app.broker.complete(
                "q", "w", [Completion(jobs[0].id, jobs[0].attempt, "0")])),
            ("fail", lambda: app.broker.fail(jobs[1], "w", {"type": "E"}, 0)),
            ("fail", lambda: app.broker.fail(jobs[2], "w", {"type": "E"}, -1)),
            ("release", lambda: app.broker.release(jobs[3], "w", "shutdown")),
            ("cancel", lambda: app.broker.cancel("q", queued[0])),
            ("claim", lambda: app.broker.claim("q", "w2", 2)),
            ("reap", lambda: app.broker.reap("q")),
            ("retry", lambda: app.broker.retry("q", jobs[5].id)),
            ("progress", lambda: app.broker.progress("q", jobs[6].id, jobs[6].attempt, 0.5, "")),
            ("pause", lambda: app.broker.pause("q", True)),
            ("enqueue", lambda: app.enqueue("step", {"n": 1000})),
            ("renew", lambda: app.broker.renew("q", [(jobs[7].id, jobs[7].attempt)], "w")),
            ("heartbeat", lambda: app.broker.heartbeat("w", {"queues": '["q"]'}, 5000)),
            ("lock", lambda: app.broker.lock("acquire", "leader", "me", 5000)),
            ("delete", lambda: app.broker.delete("q", [queued[1], parent.id])),
        ]
        outcome = {}
        for name, op in ops:
            before = await snapshot(app)
            try:
                await op()
            except ResponseError as exc:
                assert is_oom(exc), exc
                assert await snapshot(app) == before, f"{name} was refused but wrote"
                outcome[name] = "refused"
            else:
                check_homes((await snapshot(app))[0])
                outcome[name] = "ran"
        # A script that may grow memory is refused up front at the limit; the ones declared
        # allow-oom run there (delete also settles the child of the parent it deletes).
        assert {n for n, o in outcome.items() if o == "ran"} == ALLOW_OOM - {"undo"}, outcome
        assert (await app.get_job(child.id)).status == "canceled"  # type: ignore[union-attr]
        await app.redis.config_set("maxmemory", 0)
        assert (await app.broker.claim("q", "w3", 1)).jobs  # below the limit, all runs again
        check_homes((await snapshot(app))[0])
    finally:
        await app.close()


def test_only_the_scripts_that_free_or_keep_memory_declare_allow_oom() -> None:
    flags = {name: source(name).flags for name in available()}
    assert {n for n, f in flags.items() if "allow-oom" in f} == ALLOW_OOM
    assert {n for n, f in flags.items() if "no-writes" in f} == {"check"}
    assert all(f <= {"allow-oom", "no-writes"} for f in flags.values()), flags
