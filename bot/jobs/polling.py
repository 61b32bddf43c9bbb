"""Adaptive status polling: ask the provider when the answer is likely to have changed.

A fixed short interval (Replicate's client polls every 0.5 s) spends a dozen status
requests on a job that takes six seconds. FLUX.1 Kontext jobs of one model take similar
times, so the planner learns the recent durations per model and:

1. polls first a little before the typical finish (the 40th percentile of recent
   durations): earlier polls would almost always see "still running";
2. then polls at a steady step sized to the durations (0.16 x their median),
   which bounds the detection delay where most jobs end, and keeps it proportional to
   the job: a 6 s job is seen within about a second, a 30 s job within a few;
3. and backs off geometrically past the usual finish (the 90th percentile), up to the cap, so
   a stuck or queued job does not cost a request every second.

When the provider will call a webhook at the end, none of that applies: the webhook
ends the wait (one status read per job instead of two or three), and polls are only the
safety net for a webhook that never comes, at the slowest pace (the cap).

With too little history it falls back to the plain geometric backoff. Every delay gets a
little jitter so that jobs submitted together do not poll in lockstep, and every delay is
clamped to ``[floor, cap]`` whatever was recorded.

What is learned must be the provider's time, not the planner's: a job seen finished at
the third poll may have finished just after the second. Learning the seen time would
feed back (later polls, longer "durations", later polls), so ``record`` takes the last
time the job was seen still running and learns an estimate inside that interval.
"""

from __future__ import annotations

import bisect
import math
import random
import statistics
from collections import deque

# Fewer finished jobs than this say too little about a model's durations to plan on.
MIN_HISTORY = 5
# Geometric growth of the cold-start backoff (the runner's historic schedule).
COLD_GROWTH = 1.5
# Growth per step past the usual finish: slower than the cold start, because a job in
# the tail is still likely to end soon.
TAIL_GROWTH = 1.3


class PollPlanner:
    """Per-model poll schedule from the durations of recently finished jobs.

    Pure: no I/O and no clock of its own (the caller passes the elapsed time), and the
    jitter comes from ``rng``, so a seeded ``random.Random`` makes it deterministic.
    The defaults were tuned with ``python -m bench --only polling`` (docs/benchmarks.md).
    """

    def __init__(
        self,
        *,
        initial: float = 2.0,
        floor: float = 0.25,
        cap: float = 5.0,
        history: int = 50,
        jitter: float = 0.1,
        first_quantile: float = 0.4,
        tail_quantile: float = 0.9,
        step_fraction: float = 0.16,
        rng: random.Random | None = None,
    ) -> None:
        self.bound(initial=initial, floor=floor, cap=cap)
        self.jitter = min(max(0.0, jitter), 1.0)
        self.first_quantile = first_quantile
        self.tail_quantile = tail_quantile
        self.step_fraction = step_fraction
        self._history = max(1, history)
        self._durations: dict[str, deque[float]] = {}
        self._rng = rng or random.Random()

    def bound(self, *, initial: float, floor: float, cap: float) -> None:
        """The first wait and the bounds of every wait; changed with the runner's limits
        at run time (``Worker.set_limits``) without forgetting the durations learnt."""
        self.initial = initial
        self.floor = max(0.0, floor)
        self.cap = max(cap, self.floor)

    def record(self, model: str, duration: float, *, pending_at: float | None = None) -> None:
        """Learn from a finished job of ``model``: ``duration`` is seconds from submit to
        the status request that saw it finished.

        ``pending_at`` (seconds from submit) is the last request that still saw it
        running, so the job really ended in ``(pending_at, duration]``. The planner then
        learns the median of its recent durations inside that interval (the midpoint if
        none falls there) instead of ``duration``, which would include its own detection
        delay and drift the schedule later with every job. Nonsense values (negative,
        NaN, infinite) are dropped: one bad clock reading must not skew the schedule.
        """
        if not (math.isfinite(duration) and duration >= 0):
            return
        learned = duration
        if pending_at is not None and math.isfinite(pending_at) and pending_at < duration:
            learned = self._estimate(model, max(0.0, pending_at), duration)
            if not math.isfinite(learned):  # a median of two huge values can overflow
                learned = duration
        self._durations.setdefault(model, deque(maxlen=self._history)).append(learned)

    def durations(self, model: str) -> list[float]:
        """The durations currently learned for ``model``, oldest first (for metrics/tests)."""
        return list(self._durations.get(model, ()))

    def next_delay(self, model: str, elapsed: float, polls: int, *, webhook: bool = False) -> float:
        """Seconds to wait before the next status request of a job of ``model`` that was
        submitted ``elapsed`` seconds ago and has been polled ``polls`` times.
        ``webhook``: the provider will call back when the job ends (then the cap)."""
        if webhook:
            return self.cap
        elapsed = max(0.0, elapsed) if math.isfinite(elapsed) else 0.0
        recent = sorted(self._durations.get(model, ()))
        late = 1 + self.jitter
        if len(recent) < MIN_HISTORY:
            delay = self.initial * COLD_GROWTH ** min(max(0, polls), 50)
        else:
            first = _quantile(recent, self.first_quantile)
            if elapsed < first:
                # Before the usual finish asking teaches nothing. The wait to the first
                # poll is jittered only earlier: later would just delay every job that
                # was already done.
                delay, late = first - elapsed, 1.0
            else:
                delay = self._planned(recent, elapsed)
        return self._clamp(delay * self._rng.uniform(1 - self.jitter, late))

    def _planned(self, recent: list[float], elapsed: float) -> float:
        """The pause after the first poll: a steady step through the bulk of the
        durations, growing in the tail."""
        step = self.step_fraction * _quantile(recent, 0.5)
        tail = _quantile(recent, self.tail_quantile)
        if elapsed <= tail:
            return step
        # Past the usual finish: each further step waits longer.
        overdue = (elapsed - tail) / max(step, self.floor, 1e-3)
        growth: float = TAIL_GROWTH ** min(overdue, 50.0)
        return step * growth

    def _estimate(self, model: str, low: float, high: float) -> float:
        """Where in ``(low, high]`` the job most likely ended, judged by the jobs seen so
        far: their median inside the interval, else its midpoint."""
        ordered = sorted(self._durations.get(model, ()))
        inside = ordered[bisect.bisect_right(ordered, low) : bisect.bisect_right(ordered, high)]
        if inside:
            return float(statistics.median(inside))
        return low + (high - low) / 2

    def _clamp(self, delay: float) -> float:
        if not math.isfinite(delay):
            return self.cap
        return min(self.cap, max(self.floor, delay))


def _quantile(ordered: list[float], q: float) -> float:
    """Linear-interpolation quantile of an already sorted, non-empty list."""
    q = min(max(q, 0.0), 1.0)
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)
