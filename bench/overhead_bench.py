"""Overhead table (issue 15): the drain with zero middleware against the same drain before
the middleware interface existed, every tree in the same run.

    .venv/bin/python bench/overhead_bench.py [--overhead-reps 5] [--overhead-jobs 20000]
    .venv/bin/python bench/run.py --tables overhead --quick

The goal: "with zero middleware, `make bench` drain is within 3 % of the figure before this
change, in the same run". The change is commit aaaa483 (typed no-op hooks); "before" is its
parent. aaaa483 itself cannot run a job: another engineer's ``@app.job(queues=...)`` hunks
rode along without their registry.py part, so every ``@app.job`` raises a TypeError; the next
commit but one, 6e1223d, took them back (in between, c2f3c8f only copies a dict in
``Supervisor.health``). So the change is measured as 6e1223d. Three trees are compared:
``aaaa483^`` (before) and ``6e1223d`` (the change), each checked out into a temporary
``git worktree`` (removed at the end), and this checkout's own ``src/`` as it is (now).
``--overhead-revs`` takes other revisions (the first is the baseline, ``.`` is this
checkout); a tree that cannot register the driver's jobs is left out with its error printed.

Every tree runs the same drain, driven the same way: this file's ``child`` code, one script
for all, started with this venv's Python and ``PYTHONPATH=<tree>/src`` so ``conveyor`` is the
tree's own (worker, broker, Lua scripts). It uses only what every tree has, with the same
signatures: ``Conveyor(redis_url=...)``, ``@app.job(queue=, max_attempts=)``,
``enqueue_many`` and ``Worker(app, queues, concurrency)`` with ``install_signal_handlers`` and
``run``. As in the core table: a fresh redis-server per drain (AOF everysec), a ``stamp`` job,
``n - 2`` no-ops enqueued 1,000 per call, a ``stamp`` job, then one worker process (a
``Worker`` with concurrency 200 on uvloop, as ``conveyor worker`` runs it) drains; the drain
runs from the start of the first stamp's handler to the start of the last, so the worker's
start-up is not counted. Repetitions are interleaved, the order rotated each round (before,
change, now; change, now, before; ...), so a change in the machine's load hits every tree
alike and no tree always runs in the same position.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
ROOT = HERE.parent.parent
DEFAULT_REVS = ["aaaa483^", "6e1223d", "."]
LABELS = {"aaaa483^": "before (aaaa483^)", "aaaa483": "change (aaaa483)",
          "6e1223d": "change (aaaa483 runnable: 6e1223d)", ".": "now (working tree)"}
STAMPS = "bench:stamps"
GOAL = 0.97


# -- the child: one script for every tree, run with PYTHONPATH=<tree>/src --------------------
# Nothing above this line imports conveyor or bench: the child must get the tree's conveyor.

def child_app(url: str) -> Any:
    import redis

    from conveyor import Conveyor

    app = Conveyor(redis_url=url)
    stamps = redis.Redis.from_url(url)

    @app.job(queue="bench", max_attempts=1)
    async def noop() -> None:
        return None

    @app.job(queue="bench", max_attempts=1)
    async def stamp(tag: str) -> None:
        now = time.time()  # first: the handler's start is what is measured
        stamps.rpush(STAMPS, f"{tag} {now!r}")

    return app


def child_check(tree: str) -> None:
    """Refuse to measure a conveyor that is not the tree's (a PYTHONPATH gone wrong)."""
    import conveyor

    where = Path(conveyor.__file__).resolve()
    if not where.is_relative_to(Path(tree).resolve()):
        sys.exit(f"conveyor imported from {where}, not from {tree}")


def child_produce(url: str, n: int) -> None:
    """The drain's jobs, untimed: a start stamp, n - 2 no-ops 1,000 per call, an end stamp."""
    import asyncio

    app = child_app(url)

    async def go() -> None:
        await app.enqueue_many([{"type": "stamp", "args": {"tag": "start"}}])
        left = n - 2
        while left > 0:
            size = min(left, 1000)
            await app.enqueue_many([{"type": "noop", "args": {}}] * size)
            left -= size
        await app.enqueue_many([{"type": "stamp", "args": {"tag": "end"}}])
        await app.close()

    asyncio.run(go())


def child_worker(url: str, concurrency: int) -> None:
    """One worker process, as ``conveyor worker --queues bench --concurrency N`` runs it."""
    import logging

    import uvloop

    from conveyor import Worker

    logging.basicConfig(level=logging.WARNING)
    app = child_app(url)

    async def go() -> None:
        worker = Worker(app, ["bench"], concurrency)
        worker.install_signal_handlers()
        await worker.run()
        await app.close()

    uvloop.run(go())
    logging.shutdown()
    os._exit(0)  # as the CLI: every lease is settled


def child_main(argv: list[str]) -> None:
    what, tree, url, number = argv
    child_check(tree)
    if what == "check":  # the tree can run this script: import, register the jobs
        child_app(url)
    elif what == "produce":
        child_produce(url, int(number))
    else:
        child_worker(url, int(number))


# -- the table ---------------------------------------------------------------------------------

def git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True,
                          check=False)


def resolve(revs: list[str]) -> dict[str, str] | str:
    """Each revision's commit, or why the table cannot run."""
    if git("rev-parse", "--git-dir").returncode != 0:
        return "no git history here (an exported tree?): the baseline commits cannot be " \
               "checked out"
    commits = {}
    for rev in revs:
        if rev == ".":
            commits[rev] = "."
            continue
        done = git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
        if done.returncode != 0:
            return f"revision {rev} is not in this repository's history (a shallow clone?)"
        commits[rev] = done.stdout.strip()
    return commits


class Trees:
    """Each revision's tree: a temporary detached worktree, or this checkout for ``.``;
    every worktree is removed and pruned on exit, whatever happens in between."""

    def __init__(self, commits: dict[str, str]) -> None:
        self.commits = commits
        self.base = Path(tempfile.mkdtemp(prefix="conveyor-overhead-"))
        self.added: list[Path] = []
        self.paths: dict[str, Path] = {}
        self.skipped: dict[str, str] = {}  # a tree that cannot run the driver: why

    def __enter__(self) -> dict[str, Path]:
        try:
            for i, (rev, commit) in enumerate(self.commits.items()):
                if commit == ".":
                    self.paths[rev] = ROOT
                    continue
                path = self.base / f"tree{i}"
                done = git("worktree", "add", "--detach", "--quiet", str(path), commit)
                if done.returncode != 0:
                    raise RuntimeError(f"git worktree add {rev}: {done.stderr.strip()}")
                self.added.append(path)
                self.paths[rev] = path
                # compiled once here, so no tree's first worker compiles its modules
                subprocess.run([sys.executable, "-m", "compileall", "-q", str(path / "src")],
                               capture_output=True, check=False)
            for rev, path in list(self.paths.items()):
                url = "redis://127.0.0.1:1/0"  # not connected to: the check only registers
                done = subprocess.run(
                    [sys.executable, str(HERE), "child", "check", str(path / "src"), url, "0"],
                    env=child_env(path, url), cwd=tempfile.gettempdir(), capture_output=True,
                    text=True, check=False)
                if done.returncode != 0:
                    last = (done.stderr.strip().splitlines() or ["?"])[-1]
                    self.skipped[rev] = last
                    del self.paths[rev]
        except BaseException:
            self.__exit__()
            raise
        return self.paths

    def __exit__(self, *exc: object) -> None:
        import shutil

        for path in self.added:
            git("worktree", "remove", "--force", str(path))
        git("worktree", "prune")
        shutil.rmtree(self.base, ignore_errors=True)


def child_env(tree: Path, url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("CONVEYOR_") and k != "PYTHONPATH"}
    return {**env, "PYTHONPATH": str(tree / "src"), "CONVEYOR_REDIS_URL": url}


def drain_once(tree: Path, opts: argparse.Namespace) -> tuple[float, str]:
    """One drain of ``opts.overhead_jobs`` no-ops on a fresh redis-server: (jobs/s, error)."""
    import redis

    from bench.common import fresh_redis
    from bench.peers.driver import stop

    n = opts.overhead_jobs
    with fresh_redis() as server, tempfile.TemporaryFile() as log:
        env = child_env(tree, server.url)
        script = [sys.executable, str(HERE), "child"]
        produced = subprocess.run([*script, "produce", str(tree / "src"), server.url, str(n)],
                                  env=env, cwd=tempfile.gettempdir(), capture_output=True,
                                  text=True, timeout=opts.budget, check=False)
        if produced.returncode != 0:
            return float("nan"), f"producer failed: {produced.stderr[-600:]}"
        client = redis.Redis.from_url(server.url, socket_timeout=None)
        worker = subprocess.Popen(
            [*script, "worker", str(tree / "src"), server.url, str(opts.concurrency)], env=env,
            cwd=tempfile.gettempdir(), stdout=subprocess.DEVNULL, stderr=log,
            start_new_session=True)
        try:
            start = client.blpop([STAMPS], timeout=60)
            end = client.blpop([STAMPS], timeout=opts.budget) if start else None
        finally:
            stop(worker)
            client.close()
        if start is None or end is None:
            log.seek(0)
            tail = log.read()[-600:].decode(errors="replace")
            return float("nan"), f"no {'end' if start else 'start'} stamp in time: {tail}"
        began, ended = (float(got[1].split()[1]) for got in (start, end))
        return (n - 1) / (ended - began), ""


def collect(paths: dict[str, Path], opts: argparse.Namespace) -> dict[str, list[float]]:
    runs: dict[str, list[float]] = {rev: [] for rev in paths}
    order = list(paths.items())
    for rep in range(opts.overhead_reps):
        # Rotated each round, so no tree always runs first (or last) after the previous one.
        for rev, tree in order[rep % len(order):] + order[:rep % len(order)]:
            rate, error = drain_once(tree, opts)
            runs[rev].append(rate)
            shown = error or f"{rate:,.0f} jobs/s"
            print(f"  overhead rep {rep + 1}/{opts.overhead_reps} {label(rev)}: {shown}",
                  file=sys.stderr, flush=True)
    return runs


def label(rev: str) -> str:
    return LABELS.get(rev, "working tree" if rev == "." else rev)


def overhead_table(commits: dict[str, str], runs: dict[str, list[float]],
                   opts: argparse.Namespace) -> Any:
    import math

    from bench.common import Table, fmt_rate, mark, median

    base, *others = list(commits)
    table = Table(f"Overhead: drain with zero middleware vs before the middleware change, "
                  f"median of {opts.overhead_reps} interleaved, {opts.overhead_jobs:,} no-op "
                  f"jobs, one worker process", ["tree", "commit", "drain (jobs/s)", "min",
                                                "max", f"vs {label(base)}", "goal", "mark"])
    good = {rev: [r for r in rates if not math.isnan(r)] for rev, rates in runs.items()}
    medians = {rev: median(rates) for rev, rates in good.items()}
    for rev, full in commits.items():
        commit = "(this checkout)" if full == "." else full[:7]
        lo = fmt_rate(min(good[rev])) if good[rev] else "n/a"
        hi = fmt_rate(max(good[rev])) if good[rev] else "n/a"
        if rev == base:
            table.add(label(rev), commit, fmt_rate(medians[rev]), lo, hi, "1.00", "-", "-")
            continue
        ratio = medians[rev] / medians[base]
        table.add(label(rev), commit, fmt_rate(medians[rev]), lo, hi,
                  "n/a" if math.isnan(ratio) else f"{ratio:.3f}", f">= {GOAL:.2f}",
                  "-" if math.isnan(ratio) else mark(ratio >= GOAL))
    for rev in others:
        pairs = [r / b for r, b in zip(runs[rev], runs[base], strict=True)
                 if not math.isnan(r / b)]
        table.notes.append(f"{label(rev)} / {label(base)} per repetition: "
                           + ", ".join(f"{p:.3f}" for p in pairs)
                           + f" (median {median(pairs):.3f})")
    if len(good[base]) >= 2:
        spread = max(good[base]) / min(good[base]) - 1
        table.notes.append(f"{label(base)} alone spreads {spread:.1%} (max / min - 1) over "
                           "its repetitions: a gap smaller than that is within the noise.")
    if "." in commits:
        dirty = git("status", "--porcelain", "--", "src").stdout.strip()
        head = git("rev-parse", "--short", "HEAD").stdout.strip()
        table.notes.append(f"now = this checkout's src/ at {head}"
                           + (" with uncommitted changes" if dirty else "")
                           + ", no middleware registered.")
    table.notes.append(f"each drain: its own redis-server (AOF everysec), worker concurrency "
                       f"{opts.concurrency}, the tree's own conveyor (PYTHONPATH=<tree>/src), "
                       f"one driver script for all; load average now "
                       f"{os.getloadavg()[0]:.1f}.")
    return table


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--overhead-reps", type=int, default=5,
                   help="interleaved repetitions per tree (overhead table)")
    p.add_argument("--overhead-jobs", type=int, default=20_000,
                   help="no-op jobs per drain (overhead table)")
    p.add_argument("--overhead-revs", nargs="+", default=DEFAULT_REVS,
                   help="trees to compare, the first is the baseline; '.' is this checkout "
                   "(overhead table)")
    p.add_argument("--concurrency", type=int, default=200)
    p.add_argument("--budget", type=float, default=120.0, help="most seconds of a phase")


def main(opts: argparse.Namespace, markdown: Path | None = None) -> None:
    from bench.common import show

    commits = resolve(opts.overhead_revs)
    if isinstance(commits, str):
        print(f"\noverhead table: not run: {commits}", flush=True)
        return
    trees = Trees(commits)
    with trees as paths:
        for rev, why in trees.skipped.items():
            print(f"  overhead: {label(rev)} left out, it cannot run the driver: {why}",
                  file=sys.stderr, flush=True)
        if next(iter(commits)) not in paths:
            print(f"\noverhead table: not run: the baseline {label(next(iter(commits)))} "
                  f"cannot run the driver: {trees.skipped[next(iter(commits))]}", flush=True)
            return
        runs = collect(paths, opts)
    table = overhead_table({rev: commits[rev] for rev in paths}, runs, opts)
    table.notes += [f"{label(rev)} at {commits[rev][:7]}: not run, it cannot run the driver "
                    f"({why})" for rev, why in trees.skipped.items()]
    show(table, markdown)


if __name__ == "__main__":
    if sys.argv[1:2] == ["child"]:
        child_main(sys.argv[2:])
    else:
        sys.path.insert(0, str(ROOT))
        parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
        add_args(parser)
        parser.add_argument("--quick", action="store_true", help="2,000 jobs, 3 repetitions")
        main_opts = parser.parse_args()
        if main_opts.quick:
            main_opts.overhead_reps, main_opts.overhead_jobs = 3, 2000
        main(main_opts)
