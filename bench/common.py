"""Shared by the benchmark scripts: private redis-servers, medians, goals and tables.

Every figure is printed next to its goal from issue 14 and a PASS/SHORT mark. Benchmarks
print figures; they are not tests, and nothing here fails a run because a goal is missed.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
PEERS_VENV = BENCH / ".venv-peers"
PEERS_PYTHON = PEERS_VENV / "bin" / "python"
for _path in (str(ROOT), str(ROOT / "src")):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from conveyor.embedded import RedisServer, find_server  # noqa: E402


def redis_binary() -> str:
    """Debian's redis-server (the issue compares on 7.0 for every system)."""
    return find_server("redis")


@contextlib.contextmanager
def fresh_redis(aof: bool = True) -> Iterator[RedisServer]:
    """A new redis-server on a free loopback port, with an empty data folder; AOF everysec by
    default, as ``conveyor up`` runs it (the same setting for every system compared)."""
    folder = Path(tempfile.mkdtemp(prefix="conveyor-bench-"))
    server = RedisServer(redis_binary(), folder, aof=aof).start()
    try:
        yield server
    finally:
        server.kill()
        shutil.rmtree(folder, ignore_errors=True)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values: list[float], p: float) -> float:
    """The p-th percentile (0-100) by nearest rank; nan for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def mark(ok: bool | None) -> str:
    return "-" if ok is None else "PASS" if ok else "SHORT"


@dataclass
class Table:
    """A printed table: a title, a header and rows of strings, plus notes under it."""

    title: str
    head: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *cells: object) -> None:
        self.rows.append([str(c) for c in cells])

    def text(self) -> str:
        widths = [max(len(r[i]) for r in [self.head, *self.rows]) for i in range(len(self.head))]
        lines = [f"\n{self.title}"]
        for row in [self.head, ["-" * w for w in widths], *self.rows]:
            lines.append("  ".join(c.rjust(w) if i else c.ljust(w)
                                   for i, (c, w) in enumerate(zip(row, widths, strict=True))))
        lines += [f"  {n}" for n in self.notes]
        return "\n".join(lines)

    def markdown(self) -> str:
        lines = [f"**{self.title}**", "", "| " + " | ".join(self.head) + " |",
                 "|" + "|".join("---" if i == 0 else "---:" for i in range(len(self.head))) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in self.rows]
        lines += [""] + [f"- {n}" for n in self.notes] if self.notes else []
        return "\n".join(lines)


def show(table: Table, markdown_out: Path | None = None) -> None:
    print(table.text(), flush=True)
    if markdown_out is not None:
        with markdown_out.open("a") as f:
            f.write(table.markdown() + "\n\n")


def machine() -> str:
    """nproc, CPU model, Redis version, Python, load: the line every run prints first."""
    cpu = platform.processor() or "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    version = subprocess.run([redis_binary(), "--version"], capture_output=True, text=True,
                             check=False).stdout.split()
    redis_v = next((w[2:] for w in version if w.startswith("v=")), "?")
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True, check=False).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "src"],
                           capture_output=True, text=True, check=False).stdout.strip()
    return (f"commit {commit}{' (src/ has uncommitted changes)' if dirty else ''}; "
            f"{os.cpu_count()} CPUs ({cpu}); redis-server {redis_v}; Python "
            f"{platform.python_version()}; load average {os.getloadavg()[0]:.1f}")


def fmt_rate(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:,.0f}"
