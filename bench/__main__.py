"""Run the benchmarks: ``python -m bench [--quick] [--only NAME]``.

A benchmark is a function ``run(quick) -> figures`` registered in ``BENCHMARKS``; this
runner adds the machine and the wall time and writes ``bench/results/<name>.json``, so a
new benchmark needs one import and one line here.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import (
    burst,
    cpu,
    cpu_levers,
    dashboard,
    ledger,
    overhead,
    pipeline,
    polling,
    scale,
)
from bot.server.logs import configure_logging

RESULTS = Path(__file__).resolve().parent / "results"
BENCHMARKS: dict[str, Callable[[bool], dict[str, Any]]] = {
    "burst": burst.run,
    "cpu": cpu.run,
    "dashboard": dashboard.run,
    "levers": cpu_levers.run,
    "ledger": ledger.run,
    "overhead": overhead.run,
    "pipeline": pipeline.run,
    "polling": polling.run,
    "scale": scale.run,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer jobs: a smoke run")
    parser.add_argument(
        "--only", choices=sorted(BENCHMARKS), action="append", help="run just this one"
    )
    args = parser.parse_args(argv)
    RESULTS.mkdir(exist_ok=True)
    # The bot in these processes logs as it would in production (info, per job), which is
    # part of what is measured, but into a file: the console is for the figures.
    log_file = (RESULTS / "bench.log").open("w", encoding="utf-8")
    configure_logging(level="info", stream=log_file)
    print(f"bot logs: {RESULTS / 'bench.log'}")
    for name in args.only or sorted(BENCHMARKS):
        started = time.perf_counter()
        figures = BENCHMARKS[name](args.quick)
        figures["quick"] = args.quick
        figures["machine"] = {
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        }
        figures["seconds"] = round(time.perf_counter() - started, 2)
        (RESULTS / f"{name}.json").write_text(json.dumps(figures, indent=2) + "\n")
        print(f"-> bench/results/{name}.json ({figures['seconds']} s)\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
