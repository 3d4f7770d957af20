"""A TCP proxy between clients (workers) and Redis that a test can pause and cut.

- **pause**: stop forwarding in both directions and hold new connections, with every socket
  left open: a client's commands go unanswered, as behind a stalled network or a frozen
  load balancer (no RST, no FIN);
- **resume**: forward again (what was held is delivered then);
- **cut**: abort every open connection (both sides see a reset), as a failover of a load
  balancer or a NAT table flush does; new connections are accepted at once;
- **delay** (in-process only): hold every chunk that long each way, as a long network path
  does, so a test can count round trips by time.

In-process (``await Proxy(target_port).start()``) or as a process, driven over a line-based
control port (``pause``, ``resume``, ``cut``, ``stats``, each answered ``ok ...``)::

    python -m tests.faults.proxy --target 127.0.0.1:6379 [--listen 0] [--control 0]

The process prints ``listening <port> control <port>`` once both are bound;
``ProxyProcess`` starts it and sends the commands.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHUNK = 65536


class Proxy:
    """Forwards 127.0.0.1:``port`` to ``target_host``:``target_port``."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1", port: int = 0,
                 delay: float = 0.0) -> None:
        self.target = (target_host, target_port)
        self.port = port
        self.delay = delay  # seconds each chunk is held, each way (a long network path)
        self.connections = 0  # accepted so far
        self.cuts = 0
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._open: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None

    @property
    def paused(self) -> bool:
        return not self._flowing.is_set()

    async def start(self) -> Proxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self.cut()
        self._flowing.set()
        if self._server is not None:
            await self._server.wait_closed()

    def pause(self) -> None:
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    def cut(self) -> int:
        """Abort every open connection (a reset on both sides); returns how many."""
        victims = list(self._open)
        for writer in victims:
            writer.transport.abort()
        self._open.clear()
        self.cuts += 1
        return len(victims)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._open.add(writer)
        await self._flowing.wait()  # a paused proxy holds new connections open, unanswered
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            self._drop(writer)
            return
        self._open.add(up_writer)
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer),
                             return_exceptions=True)
        self._drop(writer)
        self._drop(up_writer)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(CHUNK):
                if self.delay:
                    await asyncio.sleep(self.delay)
                await self._flowing.wait()  # paused: hold the bytes, keep the sockets
                writer.write(data)
                await writer.drain()
        finally:
            self._drop(writer)  # one side ended: end the other (as a real hop would)

    def _drop(self, writer: asyncio.StreamWriter) -> None:
        self._open.discard(writer)
        if not writer.transport.is_closing():
            writer.close()

    # -- control channel -------------------------------------------------------------------

    async def serve_control(self, port: int = 0) -> asyncio.Server:
        return await asyncio.start_server(self._control, "127.0.0.1", port)

    async def _control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while line := await reader.readline():
                writer.write(f"{self.command(line.decode().strip())}\n".encode())
                await writer.drain()
        writer.close()

    def command(self, name: str) -> str:
        if name == "pause":
            self.pause()
            return "ok paused"
        if name == "resume":
            self.resume()
            return "ok resumed"
        if name == "cut":
            return f"ok cut {self.cut()}"
        if name == "stats":
            return (f"ok connections {self.connections} open {len(self._open)} "
                    f"paused {int(self.paused)} cuts {self.cuts}")
        return f"error unknown command {name!r}"


class ProxyProcess:
    """``python -m tests.faults.proxy`` as a child process, driven over its control port."""

    def __init__(self, target_port: int, log: Path | None = None) -> None:
        self.target_port = target_port
        self.log = log
        self.port = 0
        self.control_port = 0
        self.proc: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 15.0) -> ProxyProcess:
        stderr = self.log.open("a") if self.log else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.faults.proxy", "--target",
             f"127.0.0.1:{self.target_port}"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=stderr, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().split()  # the child's first line: its ports
        if len(line) != 4 or line[0] != "listening":
            self.stop()
            raise RuntimeError(f"the proxy did not start: {line}")
        self.port, self.control_port = int(line[1]), int(line[3])
        return self

    def send(self, command: str, timeout: float = 5.0) -> str:
        with socket.create_connection(("127.0.0.1", self.control_port), timeout=timeout) as s:
            s.sendall(f"{command}\n".encode())
            answer = s.makefile().readline().strip()
        if not answer.startswith("ok"):
            raise RuntimeError(f"proxy {command}: {answer}")
        return answer

    def pause(self) -> None:
        self.send("pause")

    def resume(self) -> None:
        self.send("resume")

    def cut(self) -> int:
        return int(self.send("cut").split()[-1])

    def stats(self) -> dict[str, int]:
        words = self.send("stats").split()[1:]
        return {words[i]: int(words[i + 1]) for i in range(0, len(words), 2)}

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


async def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m tests.faults.proxy")
    p.add_argument("--target", required=True, help="host:port of the server")
    p.add_argument("--listen", type=int, default=0)
    p.add_argument("--control", type=int, default=0)
    a = p.parse_args(argv)
    host, _, port = a.target.rpartition(":")
    proxy = await Proxy(int(port), host or "127.0.0.1", a.listen).start()
    control = await proxy.serve_control(a.control)
    print(f"listening {proxy.port} control {control.sockets[0].getsockname()[1]}", flush=True)
    await control.serve_forever()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
