"""The kinds of failure of DESIGN.md, as exceptions that carry a user-facing message.

Every failure a user can see is one of these kinds, because the kind decides the two
things that matter to them: whether they were charged (only the user's own input and
quota errors happen before a reservation; everything after one is refunded) and whether
retrying later can help.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorKind(StrEnum):
    USER_INPUT = "user_input"
    QUOTA = "quota"
    MODERATION = "moderation"
    PROVIDER_UNAVAILABLE = "provider_unavailable"
    # The chat platform would not take the finished image (the bot was removed from the
    # channel, the channel was archived): the provider did its part, so logs, metrics and
    # the dashboard must not blame it.
    PLATFORM = "platform"
    INTERNAL = "internal"
    # Not a failure: the asker (or an admin) stopped the job, which is refunded. Its own
    # kind so that history, the dashboard and the failure metric do not count a change
    # of mind as bad input.
    CANCELED = "canceled"


class KontextError(Exception):
    """Base of every failure the bot reports to a person.

    ``user_message`` is written for the person who typed the command; ``str(self)`` is
    for logs. Neither may contain secrets.
    """

    kind: ErrorKind = ErrorKind.INTERNAL

    def __init__(self, user_message: str, *, detail: str | None = None) -> None:
        super().__init__(detail or user_message)
        self.user_message = user_message


class UserInputError(KontextError):
    """The request itself is wrong (prompt, option, attachment): shown, nothing charged."""

    kind = ErrorKind.USER_INPUT


class QuotaError(KontextError):
    """The user's balance cannot pay for the request: shown with balance and refill time."""

    kind = ErrorKind.QUOTA

    def __init__(
        self, user_message: str, *, balance: int, cost: int, refill_at: str | None
    ) -> None:
        super().__init__(user_message)
        self.balance = balance
        self.cost = cost
        self.refill_at = refill_at


class ModerationError(KontextError):
    """The provider refused the content: shown and refunded; retrying the same will not help."""

    kind = ErrorKind.MODERATION


class ProviderUnavailable(KontextError):
    """The provider could not do the work now (429, 5xx, timeout, network, its own limits).

    ``retryable`` tells the retry policy whether the same call may be repeated safely;
    ``retry_after`` is the provider's own hint in seconds, when it gave one;
    ``maybe_created`` marks a create whose outcome is unknown.
    """

    kind = ErrorKind.PROVIDER_UNAVAILABLE

    def __init__(
        self,
        user_message: str,
        *,
        detail: str | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
        maybe_created: bool = False,
    ) -> None:
        super().__init__(user_message, detail=detail)
        self.retryable = retryable
        self.retry_after = retry_after
        # A create whose answer was lost: the work may exist at the provider, so it must
        # not be sent anywhere again (no retry, no failover).
        self.maybe_created = maybe_created


class DeliveryImpossible(KontextError):
    """The result can never be posted where it was asked for (the bot was removed from
    the channel, the channel was archived or deleted): retrying cannot help, so the job
    fails at once, is refunded, and the user is told privately. Its kind is the
    platform's, as for any delivery that failed: not the user's fault, refunded."""

    kind = ErrorKind.PLATFORM


class DeliveryDeferred(Exception):
    """The platform said "not yet" (HTTP 429, Slack's ``ratelimited``): the result is
    paid for and kept on disk, so the runner waits ``retry_after`` seconds and posts it
    again, until the delivery deadline, instead of refunding it. Not a ``KontextError``:
    nobody is told of a failure, because there is none yet."""

    def __init__(self, platform: str, method: str, retry_after: float) -> None:
        super().__init__(f"{platform} {method} rate limited; retry after {retry_after:g} s")
        self.platform = platform
        self.method = method
        self.retry_after = max(0.0, retry_after)


class InternalError(KontextError):
    """A fault of the bot itself: logged with the job id, the user sees only that id."""

    kind = ErrorKind.INTERNAL


class ConfigError(Exception):
    """The configuration cannot be used; the message names the key and the problem."""
