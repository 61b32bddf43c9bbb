"""The adaptive poll planner: bounded, learns per model, deterministic with a seed.

No test sleeps: the planner has no clock, the tests pass elapsed times in.
"""

from __future__ import annotations

import itertools
import math
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.jobs.polling import MIN_HISTORY, PollPlanner

MODEL = "black-forest-labs/flux-kontext-pro"
TYPICAL = [5.0, 5.5, 6.0, 6.0, 6.5, 7.0, 8.0, 6.2, 5.8, 6.1]


def planner(
    *, initial: float = 2.0, cap: float = 5.0, history: int = 50, jitter: float = 0.0
) -> PollPlanner:
    return PollPlanner(
        initial=initial, cap=cap, history=history, jitter=jitter, rng=random.Random(3)
    )


def schedule(plan: PollPlanner, model: str, duration: float) -> list[float]:
    """The times (from submit) of the polls a job of ``duration`` seconds gets."""
    times: list[float] = []
    elapsed = 0.0
    while not times or times[-1] < duration:
        elapsed += plan.next_delay(model, elapsed, len(times))
        times.append(elapsed)
    return times


def test_cold_start_is_geometric_backoff_up_to_the_cap() -> None:
    plan = planner(initial=2.0, cap=5.0)
    assert [plan.next_delay("m", 0, polls) for polls in range(5)] == [2.0, 3.0, 4.5, 5.0, 5.0]


def test_too_little_history_is_still_a_cold_start() -> None:
    plan = planner()
    for _ in range(MIN_HISTORY - 1):
        plan.record("m", 6.0)
    assert plan.next_delay("m", 0, 0) == 2.0
    plan.record("m", 6.0)
    assert plan.next_delay("m", 0, 0) != 2.0


def test_history_all_six_seconds_puts_the_first_poll_near_six() -> None:
    plan = PollPlanner(cap=10.0, rng=random.Random(1))  # default jitter
    for _ in range(20):
        plan.record(MODEL, 6.0)
    for _ in range(50):
        assert 3.0 <= plan.next_delay(MODEL, 0.0, 0) <= 6.5


def test_first_poll_lands_shortly_before_the_usual_finish() -> None:
    plan = planner(cap=10.0)
    for duration in TYPICAL:
        plan.record(MODEL, duration)
    first = plan.next_delay(MODEL, 0.0, 0)
    assert 5.0 <= first <= 6.0
    # Inside the usual range it polls at a steady step, a fraction of the median.
    step = plan.next_delay(MODEL, first, 1)
    assert math.isclose(step, plan.step_fraction * 6.05)
    # Far past it, the pause grows toward the cap.
    assert plan.next_delay(MODEL, 30.0, 9) == 10.0


def test_a_typical_job_is_seen_within_a_few_polls_and_about_a_second() -> None:
    plan = planner(cap=10.0)
    for duration in TYPICAL:
        plan.record(MODEL, duration)
    times = schedule(plan, MODEL, 6.05)
    assert len(times) <= 3
    assert times[-1] - 6.05 <= 1.2
    # A fixed 0.5 s poller needs 13 requests for the same job.


def test_the_long_tail_backs_off_but_never_past_the_cap() -> None:
    plan = planner(cap=5.0)
    for duration in TYPICAL:
        plan.record(MODEL, duration)
    times = schedule(plan, MODEL, 60.0)
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert max(gaps) <= 5.0 + 1e-9
    assert math.isclose(gaps[-1], 5.0)
    assert len(times) < 30  # a 0.5 s poller: 120


def test_models_are_learned_separately() -> None:
    plan = planner()
    for _ in range(20):
        plan.record("max", 20.0)
    for _ in range(5):
        plan.record("pro", 4.0)
    assert plan.next_delay("max", 0, 0) == 5.0  # 20 s jobs, capped at 5
    assert plan.next_delay("pro", 0, 0) == 4.0
    assert plan.next_delay("unknown", 0, 0) == 2.0  # no history: the cold start


def test_history_is_bounded_and_keeps_the_newest() -> None:
    plan = planner(history=5)
    for duration in range(1, 21):
        plan.record("m", float(duration))
    assert plan.durations("m") == [16.0, 17.0, 18.0, 19.0, 20.0]


def test_bad_durations_are_ignored() -> None:
    plan = planner()
    for value in (-1.0, math.nan, math.inf):
        plan.record("m", value)
    assert plan.durations("m") == []


def test_pending_at_learns_inside_the_interval_not_the_detection_time() -> None:
    plan = planner()
    for duration in (5.0, 6.0, 6.2, 7.0, 9.0):
        plan.record("m", duration)
    # Seen running at 5.5 s, finished at 6.8 s: the known jobs there are 6.0 and 6.2.
    plan.record("m", 6.8, pending_at=5.5)
    assert plan.durations("m")[-1] == 6.1
    # No known job in the interval: its midpoint.
    plan.record("m", 12.0, pending_at=10.0)
    assert plan.durations("m")[-1] == 11.0
    # A pending time at or after the finish, or nonsense, is ignored.
    plan.record("m", 3.0, pending_at=3.0)
    plan.record("m", 4.0, pending_at=math.nan)
    assert plan.durations("m")[-2:] == [3.0, 4.0]


def test_jitter_is_bounded_and_seeded() -> None:
    one = PollPlanner(cap=10.0, jitter=0.1, rng=random.Random(9))
    two = PollPlanner(cap=10.0, jitter=0.1, rng=random.Random(9))
    for plan in (one, two):
        for duration in TYPICAL:
            plan.record(MODEL, duration)
    first = [one.next_delay(MODEL, 0.0, 0) for _ in range(200)]
    assert first == [two.next_delay(MODEL, 0.0, 0) for _ in range(200)]
    assert len(set(first)) > 1  # jobs submitted together do not poll in lockstep
    # Up to 10% before the 40th percentile (6.0 s), never after it.
    assert all(0.9 * 6.0 - 1e-9 <= delay <= 6.0 + 1e-9 for delay in first)
    later = [one.next_delay(MODEL, 6.0, 1) for _ in range(200)]
    step = one.step_fraction * 6.05
    assert all(0.9 * step <= delay <= 1.1 * step for delay in later)
    assert max(later) > step  # steps are jittered both ways


finite = st.floats(min_value=0, max_value=1e300, allow_nan=False, allow_infinity=False)


@settings(max_examples=400, deadline=None)
@given(
    durations=st.lists(st.one_of(st.sampled_from([0.0, 1e-9, 6.0, 1e12]), finite), max_size=60),
    pending=st.lists(st.one_of(st.none(), st.floats()), max_size=60),
    elapsed=st.floats(allow_nan=True, allow_infinity=True),
    polls=st.integers(min_value=-5, max_value=10_000),
    floor=st.floats(min_value=0.01, max_value=2),
    cap=st.floats(min_value=0.01, max_value=60),
    jitter=st.floats(min_value=0, max_value=0.5),
    history=st.integers(min_value=1, max_value=80),
)
def test_delays_always_stay_within_floor_and_cap(
    durations: list[float],
    pending: list[float | None],
    elapsed: float,
    polls: int,
    floor: float,
    cap: float,
    jitter: float,
    history: int,
) -> None:
    plan = PollPlanner(floor=floor, cap=cap, jitter=jitter, history=history, rng=random.Random(0))
    for index, duration in enumerate(durations):
        plan.record("m", duration, pending_at=pending[index] if index < len(pending) else None)
    learned = plan.durations("m")
    assert len(learned) <= history
    assert all(math.isfinite(value) and value >= 0 for value in learned)
    for polls_made in (polls, 0, 1):
        delay = plan.next_delay("m", elapsed, polls_made)
        assert math.isfinite(delay)
        assert floor <= delay <= max(cap, floor)


def test_with_a_webhook_on_its_way_polls_are_only_a_safety_net_at_the_cap() -> None:
    """Webhook first: whatever the history says, the wait is the cap, so the webhook
    (not a poll before it, that would see "still running") ends the job's wait."""
    warm = planner()
    for _ in range(20):
        warm.record("m", 6.0)
    cold = planner()
    for p, elapsed, polls in itertools.product((warm, cold), (0.0, 2.0, 5.9, 30.0), (0, 1, 7)):
        assert p.next_delay("m", elapsed, polls, webhook=True) == p.cap
    # Without a webhook the same planner asks well before the cap.
    assert warm.next_delay("m", 5.9, 1) < warm.cap / 2
