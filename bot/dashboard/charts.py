"""The geometry of the overview's charts, computed here and drawn by the templates as
inline SVG: no JavaScript and no chart library, so the page works on a locked-down host
and under a Content-Security-Policy that allows no script at all.

A chart is data (bars of segments with their values); the template escapes every label.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

# Known platforms keep their colour from day to day; others take the rest in order.
PALETTE = ("#5865f2", "#e01e5a", "#2eb67d", "#ecb22e", "#36c5f0", "#8d6e63", "#9e9e9e")
KNOWN = {"discord": 0, "slack": 1, "console": 6}

WIDTH = 900
HEIGHT = 240
LEFT = 56  # room for the value axis labels
BOTTOM = 28  # room for the day labels
TOP = 10


def day_label(day: int) -> str:
    return datetime.fromtimestamp(day * 86400, UTC).strftime("%Y-%m-%d")


def colours(series: Sequence[str]) -> dict[str, str]:
    free = [c for i, c in enumerate(PALETTE) if i not in KNOWN.values()]
    found: dict[str, str] = {}
    for name in sorted(series):
        found[name] = PALETTE[KNOWN[name]] if name in KNOWN else free[len(found) % len(free)]
    return found


@dataclass(frozen=True)
class Segment:
    series: str
    value: int
    y: float
    height: float
    colour: str


@dataclass(frozen=True)
class Bar:
    day: str
    total: int
    x: float
    width: float
    segments: tuple[Segment, ...]


@dataclass(frozen=True)
class Tick:
    value: int
    y: float


@dataclass(frozen=True)
class StackedChart:
    width: int
    height: int
    left: int
    baseline: float
    bars: tuple[Bar, ...]  # one per day with spend; days without spend have no mark
    ticks: tuple[Tick, ...]
    labels: tuple[tuple[str, float], ...]  # (day, x) under some bars
    legend: tuple[tuple[str, str], ...]  # (series, colour)


def _nice_top(value: int) -> int:
    """The smallest 1, 2 or 5 times a power of ten at or above ``value`` (axis top)."""
    step = 1
    while True:
        for factor in (1, 2, 5):
            if step * factor >= value:
                return step * factor
        step *= 10


def stacked_by_day(values: Mapping[tuple[int, str], int], days: Sequence[int]) -> StackedChart:
    """One bar per day of ``days`` with a positive total, stacked by series.

    A day's net spend can be negative (refunds booked on the day after their
    reservation); its bar is drawn from the positive segments only, while its total says
    what the ledger says.
    """
    series = sorted({name for (_, name) in values})
    palette = colours(series)
    totals = {day: sum(values.get((day, name), 0) for name in series) for day in days}
    drawn_max = max([sum(max(values.get((day, n), 0), 0) for n in series) for day in days] + [1])
    top = _nice_top(drawn_max)
    plot_height = HEIGHT - TOP - BOTTOM
    baseline = float(HEIGHT - BOTTOM)
    slot = (WIDTH - LEFT) / max(len(days), 1)
    bars: list[Bar] = []
    labels: list[tuple[str, float]] = []
    for i, day in enumerate(days):
        x = LEFT + i * slot
        if i % 5 == 0 or i == len(days) - 1:
            labels.append((day_label(day)[5:], x + slot / 2))
        if totals[day] <= 0:
            continue
        y = baseline
        segments: list[Segment] = []
        for name in series:
            value = values.get((day, name), 0)
            if value <= 0:
                continue
            height = value / top * plot_height
            y -= height
            segments.append(Segment(name, value, round(y, 2), round(height, 2), palette[name]))
        bars.append(
            Bar(
                day_label(day),
                totals[day],
                round(x + slot * 0.15, 2),
                round(slot * 0.7, 2),
                tuple(segments),
            )
        )
    ticks = tuple(Tick(top * k // 4, round(baseline - plot_height * k / 4, 2)) for k in range(5))
    return StackedChart(
        WIDTH,
        HEIGHT,
        LEFT,
        baseline,
        tuple(bars),
        ticks,
        tuple(labels),
        tuple((name, palette[name]) for name in series),
    )


@dataclass(frozen=True)
class Gauge:
    """The shared budget's use: ``used`` of ``limit`` credits (limit 0: no limit)."""

    used: int
    limit: int
    width: int = 600
    height: int = 22

    @property
    def fraction(self) -> float:
        return min(self.used / self.limit, 1.0) if self.limit > 0 else 0.0

    @property
    def filled(self) -> float:
        return round(self.width * self.fraction, 2)

    @property
    def colour(self) -> str:
        return "#d32f2f" if self.fraction >= 0.9 else "#2e7d32"
