"""The hold-or-fail decision on a create no provider took (bot.jobs.failover.hold_delay)."""

from __future__ import annotations

import pytest

from bot.errors import ProviderUnavailable
from bot.jobs.failover import MAX_HOLD_SECONDS, hold_delay


def busy(retry_after: float | None = None, *, retryable: bool = True) -> ProviderUnavailable:
    return ProviderUnavailable("busy", retryable=retryable, retry_after=retry_after)


def decide(exc: ProviderUnavailable, age: float = 0.0) -> float | None:
    return hold_delay(exc, age=age, hold_seconds=5.0, job_timeout=300.0)


def test_back_pressure_holds_for_the_providers_retry_after() -> None:
    assert decide(busy(12.0)) == 12.0


def test_without_retry_after_the_configured_hold_applies() -> None:
    assert decide(busy()) == 5.0


@pytest.mark.parametrize(("asked", "held"), [(0.2, 1.0), (3600.0, MAX_HOLD_SECONDS)])
def test_the_hold_is_bounded(asked: float, held: float) -> None:
    assert decide(busy(asked)) == held


def test_a_refusal_that_is_not_back_pressure_fails_the_job() -> None:
    assert decide(busy(12.0, retryable=False)) is None


def test_a_job_that_could_not_finish_in_time_after_the_hold_fails() -> None:
    assert decide(busy(10.0), age=289.0) == 10.0
    assert decide(busy(10.0), age=290.0) is None
