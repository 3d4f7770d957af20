"""The real ``conveyor up`` in a fresh folder: a supervisor of child processes (API, worker,
scheduler, demo) over a private Redis with a password; restarts a child that dies; stops
everything on SIGTERM within its grace period, also under load; keeps its admin key."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil
import pytest
import redis
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect

from tests.procs import ROOT, wait_for

GRACE = 3.0
LOAD_SECONDS = 25.0
STOP_LIMIT = GRACE + 5.0 + 2.0  # the grace, up's margin past it, and interpreter exits
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) ")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Up:
    proc: subprocess.Popen[bytes]
    cwd: Path
    port: int
    log: Path
    env: dict[str, str]
    procs: list[psutil.Process] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def key(self) -> str:
        return (self.cwd / ".conveyor" / "admin.key").read_text().strip()

    def client(self, key: str | None = None) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10,
                            headers={"Authorization": f"Bearer {key or self.key}"})

    def children(self) -> dict[str, psutil.Process]:
        """The children of ``up`` by role (api, worker, scheduler, demo, redis)."""
        out = {}
        for child in psutil.Process(self.proc.pid).children():
            try:
                with_args = " ".join(child.cmdline())
            except psutil.Error:  # exited meanwhile (a zombie until up reaps it)
                continue
            role = next((r for r in ("api", "worker", "scheduler", "demo")
                         if f"conveyor {r}" in with_args), "redis")
            out[role] = child
        return out

    def stop(self) -> float:
        """SIGTERM; seconds until ``up`` exited."""
        start = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(STOP_LIMIT + 20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return time.monotonic() - start


def conveyor_cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CONVEYOR_REDIS_URL",
                                                            "CONVEYOR_ADMIN_KEY")}
    return subprocess.run([sys.executable, "-m", "conveyor", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60, check=False)


def start_up(cwd: Path, *args: str, **env_overrides: str) -> Up:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("CONVEYOR_REDIS_URL",
                                                            "CONVEYOR_ADMIN_KEY")}
    env.update({"PYTHONPATH": str(ROOT), **env_overrides})
    log = cwd / f"up-{port}.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "conveyor", "up", "--port", str(port), "--grace", str(GRACE),
             *args], cwd=cwd, env=env, stdout=sink, stderr=subprocess.STDOUT)
    up = Up(proc, cwd, port, log, env)

    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"conveyor up exited {proc.returncode}:\n{log.read_text()}")
        try:
            return httpx.get(f"{up.url}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(ready, 60, "conveyor up to answer /readyz")
    wait_for(lambda: "Conveyor is up" in log.read_text(), 10, "the banner")
    up.procs = list(up.children().values())
    return up


@pytest.fixture
def folder(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
    for pid_file in [tmp_path / ".conveyor" / "up.pid"]:
        if pid_file.exists():  # a failed test left `up` running
            with contextlib.suppress(OSError, ValueError):
                os.kill(int(pid_file.read_text()), signal.SIGKILL)


def submit_and_wait(api: httpx.Client, n: int, timeout: float = 20.0) -> dict[str, Any]:
    def submitted() -> str | None:  # a 503 while Redis comes back is tried again
        response = api.post("/api/jobs", json={"type": "demo.fast", "args": {"n": n}})
        assert response.status_code in (201, 503), response.text
        return str(response.json()["id"]) if response.status_code == 201 else None

    job_id = wait_for(submitted, timeout, "the job to be accepted")

    def done() -> dict[str, Any] | None:
        job: dict[str, Any] = api.get(f"/api/jobs/{job_id}").json()
        return job if job["status"] == "completed" else None

    return wait_for(done, timeout, f"job {job_id} to complete")  # type: ignore[return-value]


def test_up_supervises_each_role_in_its_own_process_over_a_private_password(
    folder: Path,
) -> None:
    up = start_up(folder)
    try:
        state = folder / ".conveyor"
        url_file = state / "redis.url"
        assert url_file.stat().st_mode & 0o777 == 0o600
        assert (state / "admin.key").stat().st_mode & 0o777 == 0o600
        assert state.stat().st_mode & 0o777 == 0o700
        url = url_file.read_text().strip()
        match = re.fullmatch(r"redis://:([^@]+)@127\.0\.0\.1:(\d+)/0", url)
        assert match, url
        with pytest.raises(redis.AuthenticationError):  # NOAUTH
            redis.Redis(port=int(match.group(2))).ping()
        assert redis.Redis.from_url(url).ping()

        roles = up.children()
        assert set(roles) == {"api", "worker", "scheduler", "demo", "redis"}, roles
        with up.client() as api:
            assert submit_and_wait(api, 7)["result"] == 49

            # The demo keeps jobs flowing: the worker's count grows without any step of ours.
            def processed() -> int:
                status = conveyor_cli(folder, "status", "--json")
                assert status.returncode == 0, status.stderr
                return sum(w["processed"] for w in orjson.loads(status.stdout)["workers"])

            before = processed()
            wait_for(lambda: processed() > before + 5, 20, "the demo flow to go on")

            # A killed worker is started again, and jobs complete.
            roles["worker"].kill()
            def new_worker() -> bool:
                worker = up.children().get("worker")
                return worker is not None and worker.pid != roles["worker"].pid

            wait_for(new_worker, 15, "the worker to be started again")
            assert submit_and_wait(api, 8)["result"] == 64

            # So is a killed private Redis: same port, password and data (the AOF).
            roles["redis"].kill()

            def redis_back() -> bool:
                server = up.children().get("redis")
                if server is None or server.pid == roles["redis"].pid:
                    return False
                with contextlib.suppress(redis.RedisError):
                    return bool(redis.Redis.from_url(url).ping())
                return False

            wait_for(redis_back, 20, "the private Redis to be started again")
            assert submit_and_wait(api, 9, timeout=30)["result"] == 81
        procs = list(up.children().values())
        seconds = up.stop()
        assert up.proc.returncode == 0, up.log.read_text()
        assert seconds < STOP_LIMIT, seconds
        alive = [p for p in procs if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        assert not alive, alive
        assert not url_file.exists()
    finally:
        if up.proc.poll() is None:
            up.proc.kill()
    _check_log_is_one_line_per_record(up.log.read_text())


def _check_log_is_one_line_per_record(text: str) -> None:
    """Off a terminal: log records one line each, the banner plain, no rich layout."""
    assert "│" not in text and "╭" not in text, text
    banner = False
    for line in text.splitlines():
        banner = banner or line == "Conveyor is up"
        if banner:
            banner = not line.startswith("Stop:")
            continue
        assert LOG_LINE.match(line) or line.startswith("Conveyor API on "), repr(line)


def test_the_admin_key_stays_until_rotated(folder: Path) -> None:
    up = start_up(folder, "--demo-rate", "0")
    first = up.key
    assert first in up.log.read_text()
    up.stop()
    up = start_up(folder, "--demo-rate", "0")
    try:
        assert up.key == first
        with up.client(first) as api:
            assert api.get("/api/queues").status_code == 200
        rotated = conveyor_cli(folder, "keys", "rotate-admin")
        assert rotated.returncode == 0, rotated.stderr
        second = rotated.stdout.strip()
        assert second and second != first and up.key == second
        assert (folder / ".conveyor" / "admin.key").stat().st_mode & 0o777 == 0o600

        def serves_new_key() -> bool:
            try:
                with up.client(second) as api:
                    return api.get("/api/queues").status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(serves_new_key, 20, "the API to serve the rotated key")
        with up.client(first) as api:
            assert api.get("/api/queues").status_code == 401
    finally:
        up.stop()


@dataclass
class Load:
    """Two clients posting 500-job bulks in a loop, and a dashboard-like reader of
    /api/queues; failures and latencies count until ``stopping`` is set."""

    up: Up
    stop: threading.Event = field(default_factory=threading.Event)
    stopping: threading.Event = field(default_factory=threading.Event)
    latencies: list[float] = field(default_factory=list)
    posted: list[int] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def producer(self) -> None:
        bulk = {"jobs": [{"type": "demo.fast", "args": {"n": i}} for i in range(500)]}
        with self.up.client() as api:
            while not self.stop.is_set():
                try:
                    response = api.post("/api/jobs/bulk", json=bulk, timeout=30)
                except httpx.HTTPError as exc:
                    self.fail(repr(exc))
                    continue
                if response.status_code == 201:
                    if not self.stopping.is_set():  # jobs/s over the load's LOAD_SECONDS
                        self.posted.append(500)
                else:
                    self.fail(f"{response.status_code} {response.text[:200]}")

    def reader(self) -> None:
        with self.up.client() as api:
            while not self.stopping.is_set():
                start = time.monotonic()
                try:
                    status = api.get("/api/queues", timeout=30).status_code
                except httpx.HTTPError as exc:
                    self.fail(f"queues: {exc!r}")
                    continue
                if not self.stopping.is_set():
                    self.latencies.append(time.monotonic() - start)
                if status != 200:
                    self.fail(f"queues: {status}")
                time.sleep(0.05)  # a dashboard-like reader, not a third flood

    def fail(self, what: str) -> None:
        if not self.stopping.is_set():  # once up stops, refusals are expected
            self.failures.append(what)

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[max(0, int(len(ordered) * p / 100) - 1)]


def test_up_answers_under_load_and_stops_within_its_grace(folder: Path) -> None:
    up = start_up(folder, "--demo-rate", "0", CONVEYOR_API_RATE_LIMIT="unlimited")
    load = Load(up)
    threads = [threading.Thread(target=t) for t in (load.producer, load.producer, load.reader)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(LOAD_SECONDS)  # the load runs for this long
        procs = list(up.children().values())
        load.stopping.set()
        seconds = up.stop()  # under load: the producers go on posting
    finally:
        load.stop.set()
        for thread in threads:
            thread.join(60)
        if up.proc.poll() is None:
            up.proc.kill()
    assert not load.failures, load.failures[:3]
    assert sum(load.posted) >= 5000, sum(load.posted)
    assert seconds < STOP_LIMIT and up.proc.returncode == 0, (seconds, up.proc.returncode)
    alive = [p for p in procs if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not alive, alive
    # Behaviour, not speed (bench/ measures speed): the API never stalls under job load, as
    # it did for minutes when everything shared one event loop. The p99 <= 1 s goal
    # is printed, and measured in the benchmark, not asserted on a shared CI machine.
    print(f"/api/queues under load: p50 {load.percentile(50):.3f}s, p99 "
          f"{load.percentile(99):.3f}s, max {max(load.latencies):.3f}s over "
          f"{len(load.latencies)} reads; bulk {sum(load.posted) / LOAD_SECONDS:.0f} jobs/s")
    assert max(load.latencies) <= 5.0, (sorted(load.latencies)[-5:], len(load.latencies))


FLOOD_SECONDS = 12.0


def _ping_flood(up: Up, stop: threading.Event, closes: list[int | None]) -> None:
    """A hostile client: WebSocket pings as fast as it can send them, and again on a new
    socket each time the server closes the last one."""
    url = up.url.replace("http", "ws", 1) + "/api/ws"
    ping = orjson.dumps({"type": "ping"}).decode()
    while not stop.is_set():
        try:
            with ws_connect(url, open_timeout=10) as ws:
                ws.send(orjson.dumps({"type": "auth", "key": up.key}).decode())
                ws.recv(timeout=10)
                while not stop.is_set():
                    ws.send(ping)
        except ConnectionClosed as exc:
            # None: the server dropped the socket before this busy sender read its close
            # frame (seen in a clean-clone run: every cut arrived that way, none read 4029).
            closes.append(exc.rcvd.code if exc.rcvd is not None else None)
        except (OSError, TimeoutError):
            pass  # a refused or slow connect: try again


def test_a_ping_flooding_client_does_not_stall_other_clients(folder: Path) -> None:
    up = start_up(folder, "--demo-rate", "0", CONVEYOR_API_RATE_LIMIT="unlimited")
    # --demo-rate 0 is one burst: the demo exits 0 and stays ended (it was started again
    # and again, a burst every 10 s, crowding the browser tests' shared server).
    wait_for(lambda: re.search(r"demo \(pid \d+\) finished", up.log.read_text()), 60,
             "the one-burst demo to finish")
    stop = threading.Event()
    closes: list[int | None] = []
    flood = threading.Thread(target=_ping_flood, args=(up, stop, closes))
    latencies: list[float] = []
    try:
        flood.start()
        with up.client() as api:
            end = time.monotonic() + FLOOD_SECONDS
            while time.monotonic() < end:
                start = time.monotonic()
                assert api.get("/api/queues", timeout=30).status_code == 200
                latencies.append(time.monotonic() - start)
                time.sleep(0.05)  # a dashboard-like reader, not a second flood
    finally:
        stop.set()
        flood.join(30)
        up.stop()
    # The flooder is cut off each time it passes its burst (4029, where its close frame was
    # read before the socket went), and reconnects.
    assert closes, "the flooding client was never cut off"
    assert {code for code in closes if code is not None} <= {4029}, closes[:5]
    ordered = sorted(latencies)
    p99 = ordered[max(0, int(len(ordered) * 0.99) - 1)]
    # Behaviour, not speed (bench/ measures speed): the others' reads never stall. The
    # issue's p99 <= 250 ms goal is printed.
    print(f"/api/queues during a ping flood: p99 {p99 * 1000:.0f} ms, max "
          f"{ordered[-1] * 1000:.0f} ms over {len(ordered)} reads; flooder closed "
          f"{len(closes)} times")
    assert ordered[-1] <= 2.0, ordered[-5:]
    assert not re.search(r"demo \(pid \d+\) exited", up.log.read_text())


def test_a_taken_port_stops_up_at_once_but_time_wait_does_not(folder: Path) -> None:
    from conveyor.up import _port_taken

    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the API listens
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)) as client:
            conn, _ = listener.accept()
            conn.close()  # the server side closes first: its socket waits in TIME_WAIT
            client.recv(1)
        assert _port_taken("127.0.0.1", port)
        refused = subprocess.run(
            [sys.executable, "-m", "conveyor", "up", "--port", str(port)], cwd=folder,
            capture_output=True, text=True, timeout=60, check=False)
        assert refused.returncode == 2, refused
        assert "choose another --port" in refused.stdout + refused.stderr, refused
        assert not (folder / ".conveyor" / "redis.url").exists()  # nothing was started
    assert not _port_taken("127.0.0.1", port)  # only TIME_WAIT is left on it
