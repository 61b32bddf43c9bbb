"""The adaptive poll planner: bounded, learns per model, deterministic with a seed."""

from __future__ import annotations

import math
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.polling import PollPlanner


def planner(**kw: float) -> PollPlanner:
    return PollPlanner(rng=random.Random(3), jitter=0.0, **kw)  # type: ignore[arg-type]


def test_cold_start_is_geometric_backoff_up_to_the_cap() -> None:
    plan = planner(initial=2.0, cap=5.0)
    assert [plan.next_delay("m", 0, polls) for polls in range(4)] == [2.0, 3.0, 4.5, 5.0]


def test_first_poll_lands_shortly_before_the_usual_finish() -> None:
    plan = planner(cap=10.0)
    for duration in [5.0, 5.5, 6.0, 6.0, 6.5, 7.0, 8.0, 6.2, 5.8, 6.1]:
        plan.record("flux-kontext-pro", duration)
    first = plan.next_delay("flux-kontext-pro", 0.0, 0)
    assert 5.0 <= first <= 6.0
    # Inside the usual range it polls at a steady step of about a fifth of the median.
    assert math.isclose(plan.next_delay("flux-kontext-pro", first, 1), 0.2 * 6.05)
    # Far past it, the pause grows toward the cap.
    assert plan.next_delay("flux-kontext-pro", 30.0, 9) == 10.0


def test_models_are_learned_separately_and_history_is_bounded() -> None:
    plan = planner(history=5)
    for _ in range(20):
        plan.record("max", 20.0)
    for duration in (4.0, 4.0, 4.0, 4.0, 4.0, 100.0):
        plan.record("pro", duration)
    assert len(plan.durations("max")) == 5
    assert plan.durations("pro") == [4.0, 4.0, 4.0, 4.0, 100.0]
    assert plan.next_delay("max", 0, 0) == 5.0  # 20 s jobs, capped at 5
    assert plan.next_delay("pro", 0, 0) == 4.0
    assert plan.next_delay("unknown", 0, 0) == 2.0  # no history: the cold start


def test_bad_durations_are_ignored() -> None:
    plan = planner()
    for value in (-1.0, math.nan, math.inf):
        plan.record("m", value)
    assert plan.durations("m") == []


def test_jitter_is_seeded() -> None:
    one = PollPlanner(rng=random.Random(9))
    two = PollPlanner(rng=random.Random(9))
    assert [one.next_delay("m", 0, n) for n in range(5)] == [
        two.next_delay("m", 0, n) for n in range(5)
    ]


@settings(max_examples=300, deadline=None)
@given(
    durations=st.lists(st.floats(min_value=0, max_value=1e6, allow_nan=False), max_size=60),
    elapsed=st.floats(allow_nan=True, allow_infinity=True),
    polls=st.integers(min_value=-5, max_value=10_000),
    floor=st.floats(min_value=0.01, max_value=2),
    cap=st.floats(min_value=0.01, max_value=60),
)
def test_delays_always_stay_within_floor_and_cap(
    durations: list[float], elapsed: float, polls: int, floor: float, cap: float
) -> None:
    plan = PollPlanner(floor=floor, cap=cap, rng=random.Random(0))
    for duration in durations:
        plan.record("m", duration)
    delay = plan.next_delay("m", elapsed, polls)
    assert math.isfinite(delay)
    assert floor <= delay <= max(cap, floor)
