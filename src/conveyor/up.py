"""``conveyor up``: everything on embedded defaults, as a small supervisor.

1. A private Redis-compatible server (unless ``CONVEYOR_REDIS_URL`` is set) with a random
   password, its data and AOF under ``.conveyor/redis/``. Its URL, password included, goes
   to ``.conveyor/redis.url``, readable only by the owner (0600, in a 0700 folder): every
   command and every ``Conveyor()`` run in this folder finds it there.
2. Child processes, each with ``CONVEYOR_REDIS_URL`` set: ``conveyor api`` (a process of
   its own, so job load cannot stall it), ``conveyor worker``, ``conveyor scheduler`` and,
   without an APP, ``conveyor demo`` (a steady flow of demo jobs). All but the API run
   at a lower CPU priority (nice 5), so job load cannot starve the API. They inherit stdout
   and stderr: on a terminal their logs use rich's layout, anywhere else one line per record
   (``conveyor.logs``).
3. A child that dies (the private server too) is started again after a backoff (0.5 s,
   doubling up to 10 s, back to 0.5 s once it lived a minute). A child that exits 2 (bad
   input, e.g. no such app) stops everything: starting it again would not help.
4. SIGTERM or SIGINT (Ctrl-C) is forwarded once, as SIGTERM, to every child. The worker gets
   its grace period to finish its jobs; whatever still runs ``STOP_MARGIN`` seconds after
   that is killed. A second signal kills the children at once. The server stops last.
   SIGHUP restarts the API with the admin key in ``.conveyor/admin.key`` (see
   ``conveyor keys rotate-admin``).

The admin key is ``CONVEYOR_ADMIN_KEY``, else the one in ``.conveyor/admin.key`` (0600),
made on first use and kept until it is rotated (``conveyor keys rotate-admin`` or
``conveyor up --rotate-admin-key``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import secrets
import shutil
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel

from conveyor.connect import redact
from conveyor.embedded import RedisServer, ServerNotFound, find_server, port_is_free
from conveyor.loader import STATE_DIR, URL_FILE, AppNotFound, load_app
from conveyor.settings import Settings

log = logging.getLogger("conveyor.up")
console = Console(soft_wrap=not sys.stdout.isatty())
ADMIN_KEY_FILE = STATE_DIR / "admin.key"
PID_FILE = STATE_DIR / "up.pid"
DEMO_APP = "conveyor.demo:app"
STOP_MARGIN = 5.0  # seconds past the worker's grace period before the children are killed
READY_TIMEOUT = 60.0
BACKOFF_FIRST, BACKOFF_CAP, HEALTHY_AFTER = 0.5, 10.0, 60.0
EXIT_BAD_INPUT = 2
BACKGROUND_NICE = 5  # worker, scheduler and demo yield the CPU to the API process


@dataclass
class UpOptions:
    app: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    concurrency: int = 20
    demo_rate: float = 1.0
    grace: float | None = None
    rotate_admin_key: bool = False


# -- files under .conveyor/, readable only by the owner -------------------------------------

def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600 (atomically: no reader sees half of it)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        path.parent.chmod(0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.replace(tmp, path)


def admin_key(rotate: bool = False) -> str:
    """``CONVEYOR_ADMIN_KEY``, else the kept key (a new one when there is none or ``rotate``)."""
    given = os.environ.get("CONVEYOR_ADMIN_KEY")
    if given:
        return given
    if not rotate:
        with contextlib.suppress(OSError):
            kept = ADMIN_KEY_FILE.read_text().strip()
            if kept:
                return kept
    key = secrets.token_urlsafe(32)
    write_private(ADMIN_KEY_FILE, key + "\n")
    return key


def rotate_admin_command() -> None:
    """Replace the admin key of ``conveyor up`` in this folder (.conveyor/admin.key); a
    running ``up`` serves the new key within seconds, and the old one stops working."""
    if os.environ.get("CONVEYOR_ADMIN_KEY"):
        console.print("CONVEYOR_ADMIN_KEY is set, and it wins over .conveyor/admin.key: change "
                      "it there (or unset it), then restart `conveyor up`.")
        raise SystemExit(EXIT_BAD_INPUT)
    key = admin_key(rotate=True)
    pid = _running_up()
    where = (f"the running `conveyor up` (pid {pid}) serves it now" if pid and _hup(pid)
             else "`conveyor up` uses it from its next start")
    print(f"new admin key (kept in {ADMIN_KEY_FILE.resolve()}; {where}):", file=sys.stderr)
    print(key)


def _running_up() -> int | None:
    try:
        pid = int(PID_FILE.read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def _hup(pid: int) -> bool:
    try:
        os.kill(pid, signal.SIGHUP)
    except OSError:
        return False
    return True


def start_private_server() -> RedisServer:
    """The private server, on the port it had last time when that port is free."""
    server = RedisServer(find_server(), STATE_DIR / "redis", port=_saved_port(),
                         password=secrets.token_urlsafe(24), own_session=True)
    STATE_DIR.mkdir(mode=0o700, exist_ok=True)
    server.start()
    write_private(URL_FILE, server.url + "\n")
    return server


def _port_taken(host: str, port: int) -> bool:
    """Whether the API could not listen on ``host:port``: bound as the API binds it
    (SO_REUSEADDR), so the connections a previous ``up`` left in TIME_WAIT do not count."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def _saved_port() -> int:
    # Reuse the last port so clients that remember the URL find the server again.
    with contextlib.suppress(OSError, ValueError, IndexError):
        port = int(URL_FILE.read_text().rsplit(":", 1)[1].split("/")[0])
        return port if port_is_free(port) else 0
    return 0


# -- the children ---------------------------------------------------------------------------

def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when ``up`` dies, even by SIGKILL (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _background() -> None:
    """``_die_with_parent``, at a lower CPU priority: under load the API answers first."""
    _die_with_parent()
    with contextlib.suppress(OSError):
        os.nice(BACKGROUND_NICE)


@dataclass
class Child:
    """One supervised ``conveyor`` process."""

    name: str
    args: list[str]
    env: dict[str, str]
    proc: asyncio.subprocess.Process | None = None
    started: float = 0.0
    background: bool = True  # runs at a lower CPU priority than the API
    asked_to_restart: bool = False  # a restart that is no failure: no backoff
    finishes: bool = False  # its work has an end: exiting 0 on its own means done

    async def start(self) -> None:
        self.started = time.monotonic()
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "conveyor", *self.args, env=self.env,
            start_new_session=True,
            preexec_fn=_background if self.background else _die_with_parent)

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None


@dataclass
class Supervisor:
    children: list[Child]
    stop_after: float  # seconds from the first signal until the children are killed
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    exit_code: int = 0
    signals: int = 0

    async def run(self) -> int:
        for child in self.children:
            await child.start()
        watchers = [asyncio.create_task(self._watch(c), name=c.name) for c in self.children]
        await self.stopping.wait()
        began = time.monotonic()
        log.info("stopping: SIGTERM sent to %s (killed after %.0fs)",
                 ", ".join(c.name for c in self.children), self.stop_after)
        try:
            async with asyncio.timeout(self.stop_after):
                await asyncio.gather(*(c.proc.wait() for c in self.children if c.proc))
        except TimeoutError:
            log.warning("children still running %.0fs after the stop: killing them",
                        self.stop_after)
            self.kill()
        for task in watchers:
            task.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)
        await asyncio.gather(*(c.proc.wait() for c in self.children if c.proc))
        log.info("every child stopped in %.1fs", time.monotonic() - began)
        return self.exit_code

    def on_signal(self) -> None:
        self.signals += 1
        if self.signals > 1:
            log.warning("second signal: stopping everything at once")
            self.kill()
        self.stop()

    def stop(self, code: int = 0) -> None:
        if not self.stopping.is_set():
            self.exit_code = code
            for child in self.children:
                child.signal(signal.SIGTERM)
            self.stopping.set()

    def kill(self) -> None:
        for child in self.children:
            child.signal(signal.SIGKILL)

    def restart(self, name: str) -> None:
        """Stop the child ``name``; its watcher starts it again at once."""
        for child in self.children:
            if child.name == name:
                child.asked_to_restart = True
                child.signal(signal.SIGTERM)

    async def _watch(self, child: Child) -> None:
        backoff = BACKOFF_FIRST
        while True:
            assert child.proc is not None
            code = await child.proc.wait()
            if self.stopping.is_set():
                return
            if code == EXIT_BAD_INPUT:
                log.error("%s exited with status 2 (bad input): stopping everything", child.name)
                self.stop(EXIT_BAD_INPUT)
                return
            if code == 0 and child.finishes and not child.asked_to_restart:
                log.info("%s (pid %s) finished", child.name, child.pid)
                return
            lived = time.monotonic() - child.started
            backoff = BACKOFF_FIRST if lived > HEALTHY_AFTER else backoff
            delay = 0.0 if child.asked_to_restart else backoff
            child.asked_to_restart = False
            log.warning("%s (pid %s) exited with status %s; starting it again in %.1fs",
                        child.name, child.pid, code, delay)
            await asyncio.sleep(delay)  # the backoff itself
            if self.stopping.is_set():
                return
            await child.start()
            if self.stopping.is_set():  # a signal came while it started
                child.signal(signal.SIGTERM)
            backoff = min(backoff * 2, BACKOFF_CAP)


def children(opts: UpOptions, env: dict[str, str], key: str) -> list[Child]:
    spec = opts.app or DEMO_APP
    worker = ["worker", spec, "--concurrency", str(opts.concurrency)]
    if opts.grace is not None:
        worker += ["--grace", str(opts.grace)]
    out = [
        Child("api", ["api", spec, "--host", opts.host, "--port", str(opts.port),
                      "--log-level", "warning"], {**env, "CONVEYOR_ADMIN_KEY": key},
              background=False),
        Child("worker", worker, env),
        Child("scheduler", ["scheduler", spec], env),
    ]
    if opts.app is None:
        # --demo-rate 0 is one burst: the demo then exits 0, and is not started again.
        out.append(Child("demo", ["demo", "--rate", str(opts.demo_rate)], env,
                         finishes=opts.demo_rate == 0))
    return out


# -- up -------------------------------------------------------------------------------------

async def run_up(opts: UpOptions) -> int:
    """Run everything until a signal; the exit status."""
    try:
        app = load_app(opts.app) if opts.app else None
    except AppNotFound as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}")
        return EXIT_BAD_INPUT
    if _port_taken(opts.host, opts.port):
        console.print(f"[red]error:[/red] {opts.host}:{opts.port} is taken (choose another "
                      "--port)")
        return EXIT_BAD_INPUT
    try:
        server = None if "CONVEYOR_REDIS_URL" in os.environ else start_private_server()
    except (ServerNotFound, RuntimeError, TimeoutError) as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}")
        return 1
    try:
        return await _supervise(opts, server, app)
    finally:
        if server is not None:
            began = time.monotonic()
            server.stop()
            URL_FILE.unlink(missing_ok=True)
            log.info("private Redis stopped in %.1fs", time.monotonic() - began)
        PID_FILE.unlink(missing_ok=True)


async def _supervise(opts: UpOptions, server: RedisServer | None, app: object) -> int:
    settings = Settings()
    url = server.url if server else settings.redis_url
    os.environ["CONVEYOR_REDIS_URL"] = url  # this process's own Conveyor() too (the demo's)
    key = admin_key(opts.rotate_admin_key)
    env = {**os.environ, "CONVEYOR_REDIS_URL": url, "PYTHONUNBUFFERED": "1"}
    grace = settings.grace_seconds if opts.grace is None else opts.grace
    sup = Supervisor(children(opts, env, key), stop_after=grace + STOP_MARGIN)
    write_private(PID_FILE, f"{os.getpid()}\n")
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, sup.on_signal)
    loop.add_signal_handler(signal.SIGHUP, _reload_key, sup)
    running = asyncio.create_task(sup.run())
    keeper = asyncio.create_task(_keep_server(server, sup)) if server else None
    if await _api_ready(opts, running):
        _banner(opts, url, key, server, sup, _jobs(app))
    try:
        return await running
    finally:
        if keeper is not None:
            keeper.cancel()


async def _keep_server(server: RedisServer, sup: Supervisor) -> None:
    """Start the private server again (same port, password and AOF) if it dies."""
    backoff = BACKOFF_FIRST
    while server.proc is not None:
        code = await asyncio.to_thread(server.proc.wait)  # returns when it exits
        if sup.stopping.is_set():
            return
        log.warning("the private Redis exited with status %s; starting it again in %.1fs",
                    code, backoff)
        await asyncio.sleep(backoff)  # the backoff itself
        try:
            server.start()
        except (RuntimeError, TimeoutError) as exc:
            log.error("the private Redis did not start again: %s", exc)
        backoff = min(backoff * 2, BACKOFF_CAP)


def _reload_key(sup: Supervisor) -> None:
    if os.environ.get("CONVEYOR_ADMIN_KEY"):
        return
    key = admin_key()
    for child in sup.children:
        if child.name == "api":
            child.env = {**child.env, "CONVEYOR_ADMIN_KEY": key}
    log.warning("admin key rotated: restarting the API")
    sup.restart("api")


async def _api_ready(opts: UpOptions, running: asyncio.Task[int]) -> bool:
    """Wait until the API answers /healthz (False if ``up`` stopped first)."""
    host = "127.0.0.1" if opts.host in ("0.0.0.0", "::", "") else opts.host
    deadline = time.monotonic() + READY_TIMEOUT
    while not running.done() and time.monotonic() < deadline:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            reader, writer = await asyncio.open_connection(host, opts.port)
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: up\r\nConnection: close\r\n\r\n")
            status = await reader.readline()
            writer.close()
            if b" 200 " in status:
                return True
        await asyncio.sleep(0.1)  # another process: there is no event to await
    return not running.done()


def _jobs(app: object) -> str:
    from conveyor import demo
    from conveyor.app import Conveyor

    registry = app.registry if isinstance(app, Conveyor) else demo.app.registry
    return ", ".join(sorted(registry)) or "(none registered)"


def shell_lines() -> list[str]:
    """The commands that work in another shell: the venv's ``conveyor`` if it is not on PATH."""
    here = Path(sys.executable).parent
    exe = here / "conveyor"
    on_path = shutil.which("conveyor")
    if on_path and exe.exists() and Path(on_path).resolve() == exe.resolve():
        return ["conveyor status"]
    activate = here / "activate"
    if activate.exists():
        return [f"source {activate}", "conveyor status"]
    return [f"{exe if exe.exists() else sys.executable + ' -m conveyor'} status"]


def _banner(opts: UpOptions, url: str, key: str, server: RedisServer | None, sup: Supervisor,
            jobs: str) -> None:
    host = f"[{opts.host}]" if ":" in opts.host else opts.host
    api = f"http://{host}:{opts.port}"
    where = (f"private {Path(server.binary).name} with a password, data in {server.data_dir}"
             if server else "CONVEYOR_REDIS_URL")
    kept = ("from CONVEYOR_ADMIN_KEY" if os.environ.get("CONVEYOR_ADMIN_KEY")
            else f"kept in {ADMIN_KEY_FILE}; `conveyor keys rotate-admin` makes a new one")
    procs = ", ".join(f"{c.name} {c.pid}" for c in sup.children)
    shell = shell_lines()
    lines = [
        f"Dashboard: {api}/    API docs: {api}/docs",
        f"Admin key: {key}   ({kept})",
        f"Redis:     {redact(url)}  [{where}]",
        f"History:   {Settings().store_url}",
        f"Jobs:      {jobs}" + ("" if opts.app else f"  (demo: {opts.demo_rate:g} rounds/s)"),
        f"Processes: {procs}  (pids; restarted if they die)",
        "",
        "In another shell, from this folder:",
        *(f"  {line}" for line in shell),
        "From any folder, point the CLI and Conveyor() at this Redis:",
        f"  export CONVEYOR_REDIS_URL=\"$(cat {URL_FILE.resolve()})\""
        if server else f"  export CONVEYOR_REDIS_URL='{redact(url)}'",
        "Stop:      Ctrl+C",
    ]
    if console.is_terminal:
        console.print(Panel(escape("\n".join(lines)), title="Conveyor is up", expand=False))
    else:
        print("Conveyor is up", *lines, sep="\n", flush=True)
