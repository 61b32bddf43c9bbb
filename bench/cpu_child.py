"""``kontext-bot run`` with the CPU benchmark's counters, as a process of its own.

``python -m bench.cpu_child run`` is ``bot.cli.main(["run"])`` (the same settings from
the environment, the same code path) plus:

- a count of database statements: SQLAlchemy's ``before_cursor_execute`` event on every
  engine, by the statement's first word, and its ``commit`` event (transactions);
- on SIGUSR1 those counts are written (JSON) to ``$BENCH_STATS_FILE``, so the benchmark
  reads them at the start and end of its measured window, startup excluded;
- with ``$BENCH_PROFILE`` set to a path, SIGUSR2 starts yappi (CPU clock, every thread)
  and the next SIGUSR2 stops it and writes the function table with its call graph there.

The counters cost a Python call per statement (about a microsecond); the profiler, when
on, slows the process several times, so a profiled run's CPU is not a measurement.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections import Counter
from pathlib import Path
from types import FrameType
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

COUNTS: Counter[str] = Counter()


def _before_cursor_execute(
    conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
) -> None:
    words = statement.split(None, 1)
    COUNTS[words[0].upper() if words else "?"] += 1
    if executemany:
        COUNTS["executemany"] += 1


def _commit(conn: Any) -> None:
    COUNTS["commit"] += 1


def _write_json(path: Path, data: Any) -> None:
    part = path.with_suffix(path.suffix + ".part")
    part.write_text(json.dumps(data))
    os.replace(part, path)


def _dump_counts(signum: int, frame: FrameType | None) -> None:
    _write_json(Path(os.environ["BENCH_STATS_FILE"]), dict(COUNTS))


_profiling = False


def _toggle_profile(signum: int, frame: FrameType | None) -> None:
    global _profiling
    import yappi

    if not _profiling:
        yappi.set_clock_type("cpu")
        yappi.clear_stats()
        yappi.start(builtins=True, profile_threads=True)
        _profiling = True
        return
    yappi.stop()
    _profiling = False
    stats = yappi.get_func_stats()
    rows = []
    for stat in stats:
        rows.append(
            {
                "index": stat.index,
                "name": stat.full_name,
                "module": stat.module,
                "builtin": bool(stat.builtin),
                "ncall": stat.ncall,
                "tsub": stat.tsub,
                "ttot": stat.ttot,
                "children": [[child.index, child.ttot, child.ncall] for child in stat.children],
            }
        )
    _write_json(Path(os.environ["BENCH_PROFILE"]), rows)


def main() -> int:
    event.listen(Engine, "before_cursor_execute", _before_cursor_execute)
    event.listen(Engine, "commit", _commit)
    signal.signal(signal.SIGUSR1, _dump_counts)
    if os.environ.get("BENCH_PROFILE"):
        signal.signal(signal.SIGUSR2, _toggle_profile)
    from bot.cli import main as bot_main

    return bot_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
