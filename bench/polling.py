"""Status requests per job and detection delay: the bot's poller vs a fixed 0.5 s one.

Both pollers face the same job durations (log-normal, median 6 s, sigma 0.5, and 5% of
jobs three times longer: the long tail of a busy provider). Time is virtual: each job's
poll sequence is computed exactly, so a run of thousands of jobs takes a second and the
figures do not depend on this machine's load. The bot's ``PollPlanner`` is the real one,
learning from the jobs it has seen finish, as in the runner.

Goals (issue 4): at most a third of the fixed poller's status requests, and a median
detection delay (finish -> the poll that sees it) of at most 0.75 s.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Callable
from typing import Any

from bot.polling import PollPlanner

FIXED_INTERVAL = 0.5
MODEL = "black-forest-labs/flux-kontext-pro"


def durations(count: int, seed: int = 7) -> list[float]:
    rng = random.Random(seed)
    values = []
    for _ in range(count):
        value = rng.lognormvariate(math.log(6.0), 0.5)
        if rng.random() < 0.05:
            value *= 3
        values.append(value)
    return values


def simulate(duration: float, next_delay: Callable[[float, int], float]) -> tuple[int, float]:
    """Requests made and detection delay for one job."""
    elapsed, polls = 0.0, 0
    while True:
        elapsed += next_delay(elapsed, polls)
        polls += 1
        if elapsed >= duration:
            return polls, elapsed - duration


def summarise(results: list[tuple[int, float]]) -> dict[str, float]:
    delays = sorted(delay for _, delay in results)
    return {
        "requests_per_job": round(statistics.mean(count for count, _ in results), 3),
        "delay_median_s": round(statistics.median(delays), 3),
        "delay_p95_s": round(delays[int(0.95 * (len(delays) - 1))], 3),
    }


def run(quick: bool) -> dict[str, Any]:
    jobs = durations(400 if quick else 5000)
    planner = PollPlanner(rng=random.Random(11))
    for duration in jobs[:50]:  # warm-up: the first jobs of a fresh process
        planner.record(MODEL, duration)
    measured = jobs[50:]
    fixed = [simulate(d, lambda _elapsed, _polls: FIXED_INTERVAL) for d in measured]
    adaptive = []
    for duration in measured:
        adaptive.append(simulate(duration, lambda e, p: planner.next_delay(MODEL, e, p)))
        planner.record(MODEL, duration)
    fixed_figures, adaptive_figures = summarise(fixed), summarise(adaptive)
    ratio = adaptive_figures["requests_per_job"] / fixed_figures["requests_per_job"]
    goals = {
        "requests_ratio_at_most_0.333": ratio <= 1 / 3,
        "median_delay_at_most_0.75s": adaptive_figures["delay_median_s"] <= 0.75,
    }
    print(f"polling: {len(measured)} jobs, durations median {statistics.median(measured):.2f} s")
    print(f"  {'poller':<10} {'requests/job':>13} {'delay median':>13} {'delay p95':>10}")
    for name, figures in (("fixed 0.5s", fixed_figures), ("adaptive", adaptive_figures)):
        print(
            f"  {name:<10} {figures['requests_per_job']:>13.2f} "
            f"{figures['delay_median_s']:>12.3f}s {figures['delay_p95_s']:>9.3f}s"
        )
    print(f"  requests ratio adaptive/fixed: {ratio:.3f} (goal <= 0.333)")
    for goal, met in goals.items():
        print(f"  {goal}: {'met' if met else 'MISSED'}")
    return {
        "jobs": len(measured),
        "fixed": fixed_figures,
        "adaptive": adaptive_figures,
        "requests_ratio": round(ratio, 4),
        "goals": goals,
    }
