"""Adaptive status polling: ask the provider when the answer is likely to have changed.

A fixed short interval (Replicate's client polls every 0.5 s) spends a dozen status
requests on a job that takes six seconds. FLUX.1 Kontext jobs of one model take similar
times, so the planner learns the recent durations per model and:

1. polls first shortly before most jobs finish (a low quantile of recent durations),
2. then polls at a steady step sized to the spread of durations (a fraction of their
   median), which bounds the detection delay where most jobs end,
3. and backs off geometrically past the usual finish (the long tail), up to a cap.

With no history yet it falls back to the plain geometric backoff. Every delay gets a
little jitter so that jobs submitted together do not poll in lockstep.
"""

from __future__ import annotations

import math
import random
from collections import deque

MIN_HISTORY = 5


class PollPlanner:
    def __init__(
        self,
        *,
        initial: float = 2.0,
        floor: float = 0.25,
        cap: float = 5.0,
        history: int = 50,
        jitter: float = 0.1,
        first_quantile: float = 0.15,
        tail_quantile: float = 0.9,
        step_fraction: float = 0.2,
        rng: random.Random | None = None,
    ) -> None:
        self.initial = initial
        self.floor = floor
        self.cap = max(cap, floor)
        self.jitter = jitter
        self.first_quantile = first_quantile
        self.tail_quantile = tail_quantile
        self.step_fraction = step_fraction
        self._history = history
        self._durations: dict[str, deque[float]] = {}
        self._rng = rng or random.Random()

    def record(self, model: str, duration: float) -> None:
        """Learn from a finished job (seconds from submit to its final status)."""
        if math.isfinite(duration) and duration >= 0:
            self._durations.setdefault(model, deque(maxlen=self._history)).append(duration)

    def durations(self, model: str) -> list[float]:
        return list(self._durations.get(model, ()))

    def next_delay(self, model: str, elapsed: float, polls: int) -> float:
        """Seconds to wait before the next status request of a job of ``model`` that was
        submitted ``elapsed`` seconds ago and has been polled ``polls`` times."""
        elapsed = max(0.0, elapsed) if math.isfinite(elapsed) else 0.0
        recent = sorted(self._durations.get(model, ()))
        if len(recent) < MIN_HISTORY:
            growth: float = 1.5 ** min(max(0, polls), 50)
            delay = self.initial * growth
        else:
            delay = self._planned(recent, elapsed)
        return self._clamp(delay * self._rng.uniform(1 - self.jitter, 1 + self.jitter))

    def _planned(self, recent: list[float], elapsed: float) -> float:
        first = _quantile(recent, self.first_quantile)
        if elapsed < first:
            return first - elapsed
        step = self.step_fraction * _quantile(recent, 0.5)
        tail = _quantile(recent, self.tail_quantile)
        if elapsed <= tail:
            return step
        # Past the usual finish: each further poll waits longer.
        overdue = (elapsed - tail) / max(step, self.floor)
        backoff: float = 1.3 ** min(overdue, 20.0)
        return step * backoff

    def _clamp(self, delay: float) -> float:
        if not math.isfinite(delay):
            return self.cap
        return min(self.cap, max(self.floor, delay))


def _quantile(ordered: list[float], q: float) -> float:
    """Linear-interpolation quantile of an already sorted, non-empty list."""
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)
