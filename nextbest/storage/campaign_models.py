"""Tables of campaigns and the outbound call queue (nextbest/campaigns.py, nextbest/tasks.py),
and the permanent do-not-call list every decision honours.

A campaign's target list is kept as the planner loaded or selected it (``campaign_targets``);
launching the campaign turns every target into one ``call_tasks`` row, which then ends in
exactly one final ``result``: called (the outcome), held out as control, or removed by a rule.
"""

from __future__ import annotations

from datetime import date, datetime

import msgspec
from sqlalchemy import (
    Boolean,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from nextbest.records import Profile
from nextbest.storage.models import Base, BigId, UtcDateTime

__all__ = [
    "CallTask",
    "Campaign",
    "CampaignDay",
    "CampaignEvent",
    "CampaignTarget",
    "DndNumber",
    "TaskEvent",
    "flag_dnd",
]


class Campaign(Base):
    __tablename__ = "campaigns"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    owner: Mapped[str] = mapped_column(String(64))
    strategy: Mapped[str] = mapped_column(String(32))
    # Offer ids in the planner's order, ';'-separated.
    offers: Mapped[str] = mapped_column(Text)
    # draft, submitted, approved, rejected, live, paused, ended
    status: Mapped[str] = mapped_column(String(16))
    starts_on: Mapped[date] = mapped_column(Date)
    ends_on: Mapped[date] = mapped_column(Date)
    # Local times (HH:MM, until may be 24:00) in ``timezone``; dates are local too.
    calling_from: Mapped[str] = mapped_column(String(5))
    calling_until: Mapped[str] = mapped_column(String(5))
    timezone: Mapped[str] = mapped_column(String(64))
    daily_cap: Mapped[int] = mapped_column(Integer)
    control_share: Mapped[float] = mapped_column(Float)
    retry_delay_minutes: Mapped[int] = mapped_column(Integer)
    max_attempts: Mapped[int] = mapped_column(Integer)
    # Where the targets came from: '' (none yet), list, selection; the selection as JSON.
    target_source: Mapped[str] = mapped_column(String(16), default="")
    selection: Mapped[str] = mapped_column(Text, default="")
    targets: Mapped[int] = mapped_column(Integer, default=0)
    # The data version a selection ran on, and the one the queue was built from.
    targets_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    launched_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    submitted_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    approved_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())

    __table_args__ = (Index("campaigns_by_status", "status"),)


class CampaignEvent(Base):
    """One transition of a campaign's life cycle: who moved it, when, from what to what."""

    __tablename__ = "campaign_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    campaign_id: Mapped[str] = mapped_column(String(40), ForeignKey("campaigns.id"))
    from_status: Mapped[str] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    user_id: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column(UtcDateTime())
    note: Mapped[str] = mapped_column(Text, default="")

    __table_args__ = (Index("campaign_events_by_campaign", "campaign_id", "id"),)


class CampaignTarget(Base):
    """A number on a campaign's target list; ``line`` is its line in the uploaded list (0 when
    it was selected from the warehouse profiles)."""

    __tablename__ = "campaign_targets"

    campaign_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True
    )
    msisdn: Mapped[str] = mapped_column(String(16), primary_key=True)
    line: Mapped[int] = mapped_column(Integer, default=0)

    __table_args__ = ({"sqlite_with_rowid": False},)


class CampaignDay(Base):
    """Calls a campaign made on one local day, against its daily cap."""

    __tablename__ = "campaign_days"

    campaign_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    day: Mapped[str] = mapped_column(String(10), primary_key=True)  # YYYY-MM-DD, local
    calls: Mapped[int] = mapped_column(Integer, default=0)


class CallTask(Base):
    """One target of a launched campaign: queued, leased to an agent, or closed with a result.

    Results: accepted, declined, considering, presented, wrong_number, do_not_call, no_answer
    (attempts used up), suppressed (a rule removed the customer; ``rule`` says which), control
    (held out to measure lift; never called), ended (the campaign ended first).
    """

    __tablename__ = "call_tasks"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    campaign_id: Mapped[str] = mapped_column(String(40), ForeignKey("campaigns.id"))
    msisdn: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))  # queued, leased, closed
    result: Mapped[str | None] = mapped_column(String(16), nullable=True)
    rule: Mapped[str | None] = mapped_column(String(40), nullable=True)
    detail: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Expected value of calling (acceptance estimate x offer value): the queue's order.
    priority: Mapped[float] = mapped_column(Float)
    due_at: Mapped[datetime] = mapped_column(UtcDateTime())
    # A callback the customer asked for: first in the queue when due, kept for
    # ``preferred_agent`` until ``reserved_until``.
    callback: Mapped[bool] = mapped_column(Boolean, default=False)
    preferred_agent: Mapped[str | None] = mapped_column(String(64), nullable=True)
    reserved_until: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    # The agent holding the task (while leased) or who held it last.
    agent_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    leases: Mapped[int] = mapped_column(Integer, default=0)
    no_answers: Mapped[int] = mapped_column(Integer, default=0)
    decision_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    # The last outcome an agent reported, and for which lease (a retried request replays it).
    last_outcome: Mapped[str | None] = mapped_column(String(16), nullable=True)
    outcome_lease: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())
    closed_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)

    __table_args__ = (
        Index("one_task_per_target", "campaign_id", "msisdn", unique=True),
        # Two agents never hold the same customer, whatever the campaign: the database says no.
        Index(
            "one_lease_per_customer",
            "msisdn",
            unique=True,
            sqlite_where=text("status = 'leased'"),
            postgresql_where=text("status = 'leased'"),
        ),
        Index("call_tasks_queue", "status", "callback", "priority", "id"),
        Index("call_tasks_leases", "status", "lease_until"),
        Index("call_tasks_by_campaign", "campaign_id", "status"),
    )


class TaskEvent(Base):
    """What happened to a task: leased, suppressed, an outcome, a lease that lapsed."""

    __tablename__ = "call_task_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    task_id: Mapped[int] = mapped_column(BigId, ForeignKey("call_tasks.id"))
    campaign_id: Mapped[str] = mapped_column(String(40))
    kind: Mapped[str] = mapped_column(String(16))
    user_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    decision_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    detail: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[datetime] = mapped_column(UtcDateTime())

    __table_args__ = (Index("call_task_events_by_task", "task_id", "id"),)


class DndNumber(Base):
    """A number that asked never to be called again (an outbound call's do_not_call). For good:
    nothing here removes a number."""

    __tablename__ = "dnd_numbers"

    msisdn: Mapped[str] = mapped_column(String(16), primary_key=True)
    added_at: Mapped[datetime] = mapped_column(UtcDateTime())
    added_by: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(Text, default="")


_DND_SQL = "SELECT 1 FROM dnd_numbers WHERE msisdn = ?"


def flag_dnd(msisdn: str, profile: Profile | None) -> Profile:
    """``profile`` with the ``dnd`` flag (a number the warehouse does not know gets a bare
    profile carrying the flag, so the rules cannot miss it)."""
    if profile is None:
        return Profile(msisdn=msisdn, segment="", brand="", flags=("dnd",))
    if "dnd" in profile.flags:
        return profile
    return msgspec.structs.replace(profile, flags=(*profile.flags, "dnd"))
