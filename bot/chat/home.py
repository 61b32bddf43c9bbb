"""What a platform's home screen says (Slack's App Home, issue 28): the person's credits,
their last edits with the result to continue from, and for admins the shared budget.

Decided here, once, as data and texts; the adapter only lays it out (Block Kit for
Slack). Reading it is free and changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from bot.chat.credit_status import BudgetStatus
from bot.domain import Job, JobState

# The Home tab shows this many of the person's newest edits.
HOME_EDITS = 5


@dataclass(frozen=True)
class HomeEdit:
    """One of the last edits: its line of text, where its posted result is (the
    platform's file id and link, when delivered and not deleted), and whether Re-roll and
    Edit again apply to it (a delivered result, as on a history answer)."""

    job_id: str
    text: str
    file_id: str | None = None
    link: str | None = None
    buttons: bool = False


@dataclass(frozen=True)
class HomeAdmin:
    """An admin's part: the shared budget in words, and the dashboard's address when
    the operator configured one."""

    text: str
    budget: BudgetStatus
    dashboard_url: str | None = None


@dataclass(frozen=True)
class HomeScreen:
    credits: str  # the balance, images left, the allowance and when it refills
    edits: tuple[HomeEdit, ...]
    # The friendly words shown instead of edits to someone with none yet.
    empty: str | None
    admin: HomeAdmin | None = None


def home_edit(job: Job, text: str) -> HomeEdit:
    """An edit as the home screen shows it; the result's file only while it is posted."""
    where: Mapping[str, object] = job.delivered or {}
    delivered = job.state == JobState.SUCCEEDED and bool(where)
    file_id = where.get("file") if delivered else None
    link = where.get("link") if delivered else None
    return HomeEdit(
        job_id=job.id,
        text=text,
        file_id=str(file_id) if file_id else None,
        link=str(link) if link else None,
        buttons=delivered,
    )
