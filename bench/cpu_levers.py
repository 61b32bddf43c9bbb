"""uvloop and orjson as levers on the bot's CPU per job (issue 17: "uvloop and orjson
where they help; measure, don't assume").

An A/B in one run for each lever on each path (core, Slack HTTP, Discord; bench.cpu and
bench.cpu_paths, the same flow and sizes), alternated A B B A ... so that the shared
machine's load drifts over both arms alike, with the reference loop timed before and
after; every figure is also printed as a ratio to that reference.

- A (baseline): asyncio's own event loop, the standard library's json, orjson blocked.
- uvloop: ``BENCH_LOOP=uvloop``, the loop policy set in the bot's process before
  ``asyncio.run`` (what ``uvloop.install()`` does).
- orjson: ``BENCH_JSON=orjson``, every option-less ``json.dumps``/``json.loads`` in the
  bot's process served by orjson, and discord.py's own use of it (discord.py switches to
  orjson when it is importable). This is the most orjson could save without rewriting
  anything; the JSON calls per job it served are printed.

Each measured process reports what it really ran on (its loop's class, whether
discord.py found orjson); a mismatch stops the benchmark.

``python -m bench.cpu_levers [--quick] [--paths slack,discord,core] [--rounds 2]``; also
``python -m bench --only levers``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
from pathlib import Path
from typing import Any

from bench.cpu import measure_path, reference_seconds

LEVERS: dict[str, dict[str, str]] = {
    "uvloop": {"BENCH_LOOP": "uvloop"},
    "orjson": {"BENCH_JSON": "orjson"},
}
PATHS = ("slack", "discord", "core")


def _check(row: dict[str, Any], lever: str | None) -> None:
    facts = row["facts"]
    want_uvloop = lever == "uvloop"
    if ("uvloop" in str(facts["loop"])) != want_uvloop:
        raise RuntimeError(f"{lever or 'baseline'} ran on {facts['loop']}")
    if row["path"] == "discord" and facts["discord_orjson"] != (lever == "orjson"):
        raise RuntimeError(f"{lever or 'baseline'}: discord.py orjson {facts['discord_orjson']}")


def run_levers(
    quick: bool, paths: tuple[str, ...] = PATHS, rounds: int = 2, levers: tuple[str, ...] = ()
) -> dict[str, Any]:
    jobs, concurrent, warmup = (40, 20, 5) if quick else (100, 30, 5)
    levers = levers or tuple(LEVERS)
    missing = [name for name in levers if importlib.util.find_spec(name) is None]
    if missing:
        print(f"levers NOT MEASURED: pip install {' '.join(missing)}")
        levers = tuple(name for name in levers if name not in missing)
    print(
        f"levers {', '.join(levers)} on {', '.join(paths)}: {jobs} jobs at {concurrent} "
        f"after {warmup} warm-up per run, SQLite, A B B A x {rounds // 2 or 1}"
    )
    reference = [reference_seconds()]
    results: dict[str, Any] = {"jobs": jobs, "concurrent": concurrent, "cases": []}
    for path in paths:
        for lever in levers:
            arms: dict[str, list[dict[str, Any]]] = {"A": [], "B": []}
            order = ["A", "B", "B", "A"] * max(1, rounds // 2)
            for arm in order:
                env = LEVERS[lever] if arm == "B" else {}
                before = reference_seconds(3)
                row = measure_path(path, None, jobs, concurrent, warmup, **env)
                local = statistics.median([before, reference_seconds(3)]) * 1000
                _check(row, lever if arm == "B" else None)
                # The run's own reference (the loop just before and after it): the
                # machine's load moves within minutes, so each run gets its ratio too.
                row["local_reference_ms"] = round(local, 1)
                row["ratio_to_local_reference"] = round(row["bot_cpu_ms_per_job"] / local, 3)
                arms[arm].append(row)
                print(
                    f"  {path:<8}{lever:<8}{arm} {row['bot_cpu_ms_per_job']:>6.1f} ms/job "
                    f"(x{row['ratio_to_local_reference']:.3f} its reference of {local:.1f} ms; "
                    f"{row['jobs_per_second']:.1f} jobs/s, harness "
                    f"{row['harness_cpu_ms_per_job']:.1f} ms/job, JSON calls/job "
                    f"{row['facts']['json_calls_per_job'] or '-'})",
                    flush=True,
                )
            results["cases"].append({"path": path, "lever": lever, "runs": arms})
    reference.append(reference_seconds())
    ref_ms = statistics.median(reference) * 1000
    results["reference_ms"] = round(ref_ms, 1)
    results["reference_ms_before_after"] = [round(r * 1000, 1) for r in reference]
    print(
        f"  reference loop: {ref_ms:.1f} ms "
        f"(before {reference[0] * 1000:.1f}, after {reference[1] * 1000:.1f})"
    )
    print(
        f"  {'path':<9}{'lever':<8}{'A ms/job (x ref)':>20}{'B ms/job (x ref)':>20}"
        f"{'B / A':>7}{'B / A by run refs':>19}  runs A | B (x their own reference)"
    )
    for case in results["cases"]:
        a = statistics.median(r["bot_cpu_ms_per_job"] for r in case["runs"]["A"])
        b = statistics.median(r["bot_cpu_ms_per_job"] for r in case["runs"]["B"])
        a_local = statistics.median(r["ratio_to_local_reference"] for r in case["runs"]["A"])
        b_local = statistics.median(r["ratio_to_local_reference"] for r in case["runs"]["B"])
        case.update(
            a_median_ms=a,
            b_median_ms=b,
            a_ratio_to_reference=round(a / ref_ms, 3),
            b_ratio_to_reference=round(b / ref_ms, 3),
            b_over_a=round(b / a, 3),
            b_over_a_by_run_references=round(b_local / a_local, 3),
        )
        runs = " ".join(f"{r['ratio_to_local_reference']:.2f}" for r in case["runs"]["A"])
        runs += " | " + " ".join(f"{r['ratio_to_local_reference']:.2f}" for r in case["runs"]["B"])
        print(
            f"  {case['path']:<9}{case['lever']:<8}"
            f"{a:>12.1f} ({a / ref_ms:.2f}){b:>13.1f} ({b / ref_ms:.2f})"
            f"{b / a:>7.2f}{b_local / a_local:>19.2f}  {runs}"
        )
    return results


def run(quick: bool) -> dict[str, Any]:
    return run_levers(quick)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cpu_levers", description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--paths", default=",".join(PATHS))
    parser.add_argument("--levers", default=",".join(LEVERS))
    parser.add_argument("--rounds", type=int, default=2, help="A B B A per 2 rounds")
    args = parser.parse_args(argv)
    paths = tuple(p for p in args.paths.split(",") if p)
    unknown = set(paths) - set(PATHS)
    if unknown:
        parser.error(f"unknown paths {sorted(unknown)}; choose from {PATHS}")
    levers = tuple(name for name in args.levers.split(",") if name)
    figures = run_levers(args.quick, paths, args.rounds, levers)
    out = Path(__file__).resolve().parent / "results" / "levers.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"-> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
