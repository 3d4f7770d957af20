"""`make bench`: every table of issue 14 in one run on this machine, peers in the same run.

    .venv/bin/python bench/run.py                 # the full run (about 15 min on 2 cores)
    .venv/bin/python bench/run.py --quick         # small sizes, one repetition (2-3 min)
    .venv/bin/python bench/run.py --tables core http --reps 1
    .venv/bin/python bench/run.py --markdown /tmp/tables.md   # also write the tables as Markdown

Tables: core (Conveyor vs huey, dramatiq, rq), overhead (the drain before the middleware
change vs with zero middleware, issue 15), http (wrk), memory, history (recorder lag), scale
(small vs large backlog; the 1M/10M sizes are `make bench-scale`). Each prints the goal of
issue 14 or 15 next to the measured figure and a PASS/SHORT mark. The machine is shared: only
figures of the same run compare.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import core, history_bench, http_bench, memory_bench, overhead_bench, scale_bench
from bench.common import machine

TABLES = {"core": core, "overhead": overhead_bench, "http": http_bench,
          "memory": memory_bench, "history": history_bench, "scale": scale_bench}
QUICK = {"reps": 1, "jobs": 2000, "single": 2000, "pickups": 50, "seconds": 2.0,
         "memory_jobs": 10_000, "history_jobs": 3000, "mongo_jobs": 500, "small": 2000,
         "big": 20_000, "history_big": 20_000, "measure": 2000, "http_seconds": 2.0,
         "overhead_reps": 3, "overhead_jobs": 2000}


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                conflict_handler="resolve")
    p.add_argument("--tables", nargs="+", choices=list(TABLES), default=list(TABLES))
    p.add_argument("--quick", action="store_true", help="small sizes, one repetition")
    p.add_argument("--markdown", type=Path, help="also append the tables to this file")
    for module in TABLES.values():
        module.add_args(p)
    opts = p.parse_args()
    if opts.quick:
        for name, value in QUICK.items():
            setattr(opts, name, value)
    return opts


def main() -> None:
    opts = parse()
    started = time.monotonic()
    line = machine()
    print(f"Conveyor benchmarks: {line}\n(a shared machine: compare figures of this run "
          "only)", flush=True)
    if opts.markdown:
        with opts.markdown.open("a") as f:
            f.write(f"{line}\n\n")
    for name in opts.tables:
        try:
            TABLES[name].main(opts, opts.markdown)
        except Exception as exc:  # one table failing (src/ mid-edit, a server) spares the rest
            traceback.print_exc()
            print(f"\n{name} table: not run: {type(exc).__name__}: {exc}", flush=True)
    print(f"\nall tables in {(time.monotonic() - started) / 60:.1f} min; load average now "
          f"{__import__('os').getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
