"""The outbound call queue: an agent leases the next call task, calls, and reports the outcome.

Leasing takes the next task of a live campaign that may call now (its dates, its calling hours
in its own time zone, its daily cap): callbacks due now first (kept a while for the agent who
took them), then by expected value. The lease is one short transaction: on PostgreSQL the row
is taken with ``FOR UPDATE SKIP LOCKED``, on SQLite under the database's single write lock,
and a partial unique index makes it impossible for two agents to hold the same customer in any
campaign. A lease that lapses puts the task back in the queue.

Then the contact rules are applied again, now: the decision for the call is made by the same
DecisionService as at the counter (channel ``outbound``, stored and attributed to the agent).
A customer whom none of the campaign's offers may reach any more (an acceptance at a store this
morning, a complaint, the do-not-call list...) is not called: the task is closed as
``suppressed`` with the rule, and the next one is leased.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

import msgspec
from msgspec import Meta
from sqlalchemy import or_, select, text, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session, aliased

from nextbest.campaigns import (
    STRATEGIES,
    closed_reason,
    local_day,
    within_calling_hours,
)
from nextbest.clock import Clock
from nextbest.decisions import DecisionService
from nextbest.errors import BadInput, Conflict, NotFound, Unavailable
from nextbest.experiments import CONTROL_RULE
from nextbest.keys import Actor
from nextbest.outcomes import OutcomeService
from nextbest.policy import RULES
from nextbest.storage.campaign_models import (
    CallTask,
    Campaign,
    CampaignDay,
    DndNumber,
    TaskEvent,
)
from nextbest.storage.db import Database
from nextbest.storage.models import Decision, Outcome
from nextbest.storage.shown import decode_offers
from nextbest.wire import DecisionRequest, DecisionResponse, OutcomeRequest, OutcomeResponse

__all__ = [
    "TASK_OUTCOMES",
    "NextTask",
    "TaskOut",
    "TaskOutcomeOut",
    "TaskOutcomeRequest",
    "TaskService",
]

TaskOutcome = Literal[
    "presented",
    "accepted",
    "declined",
    "considering",
    "callback",
    "no_answer",
    "wrong_number",
    "do_not_call",
]
TASK_OUTCOMES: tuple[str, ...] = (
    "presented",
    "accepted",
    "declined",
    "considering",
    "callback",
    "no_answer",
    "wrong_number",
    "do_not_call",
)
# What the customer said to one offer: needs the offer, and is a decision outcome (sales and
# provisioning follow as at the counter).
OFFER_OUTCOMES = frozenset({"presented", "accepted", "declined", "considering"})
# Also recorded against the decision (the top offer unless told), so the contact rules see a
# callback request and reports see the attempt.
LEDGER_OUTCOMES = OFFER_OUTCOMES | {"callback", "no_answer"}
# Cuts made by ranking, not by the contact or eligibility rules: a campaign offer cut this way
# could still be sold, so the call goes ahead with the decision's offers.
RANKING_CUTS = frozenset({"low_probability", "one_per_service", "limit", CONTROL_RULE})
_RULE_ORDER = {code: i for i, code in enumerate(RULES)}
# Tasks closed by the rules within one request before answering "ask again" (keeps a request
# short when a campaign's targets went stale).
MAX_SUPPRESSED_PER_REQUEST = 25
_LEASE_TRIES = 8


class _In(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class _Out(msgspec.Struct, kw_only=True):
    pass


class TaskOutcomeRequest(_In, kw_only=True):
    outcome: TaskOutcome
    # Required for presented / accepted / declined / considering; for callback and no_answer
    # the decision's first offer is used unless another is named.
    offer_id: Annotated[str, Meta(min_length=1, max_length=64)] | None = None
    reason: Annotated[str, Meta(max_length=500)] | None = None
    callback_at: datetime | None = None


class CampaignBrief(_Out, kw_only=True):
    id: str
    name: str
    strategy: str
    strategy_description: str
    offers: list[str]


class TaskOut(_Out, kw_only=True):
    task_id: int
    campaign: CampaignBrief
    # The number to dial (the screen shows the decision's masked one).
    dial: str
    attempt: int  # 1 for the first call, 2 for the next try...
    no_answers: int
    callback: bool  # the customer asked for this call
    lease_until: datetime
    decision: DecisionResponse
    # The decision's offers that are the campaign's (empty when the ranking preferred others).
    campaign_offers: list[str]


class NextTask(_Out, kw_only=True):
    task: TaskOut | None
    # Why there is no task (outside calling hours, queue empty...), when there is none.
    notice: str | None = None
    # Tasks closed on the way because the contact rules no longer allow the call.
    suppressed: int = 0


class TaskOutcomeOut(_Out, kw_only=True):
    task_id: int
    status: str  # queued (callback, retry) or closed
    result: str | None
    due_at: datetime | None  # when it comes back, if queued
    no_answers: int
    outcome: OutcomeResponse | None = None  # the decision outcome recorded, if any
    dnd_added: bool = False


class _Leased(msgspec.Struct, frozen=True, kw_only=True):
    task_id: int
    lease_no: int
    campaign_id: str
    campaign_name: str
    strategy: str
    offers: tuple[str, ...]
    msisdn: str
    day: str
    callback: bool
    no_answers: int
    lease_until: datetime


def _retryable(exc: DBAPIError) -> bool:
    """A unique-index race (two leases of one customer) or a PostgreSQL deadlock/serialization
    failure: the transaction is rolled back and the lease is tried again."""
    if isinstance(exc, IntegrityError):
        return True
    code = getattr(exc.orig, "sqlstate", None)
    return code in ("40001", "40P01")


class TaskService:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        decisions: DecisionService,
        outcomes: OutcomeService,
        *,
        lease_seconds: float,
        callback_grace_seconds: float,
    ) -> None:
        self.db = db
        self.clock = clock
        self.decisions = decisions
        self.outcomes = outcomes
        self.lease = timedelta(seconds=lease_seconds)
        self.grace = timedelta(seconds=callback_grace_seconds)

    # -- leasing --

    def next(self, actor: Actor, lang: Literal["en", "zh"] = "en") -> NextTask:
        suppressed = 0
        for _ in range(MAX_SUPPRESSED_PER_REQUEST):
            leased, notice = self._lease(actor)
            if leased is None:
                return NextTask(task=None, notice=notice, suppressed=suppressed)
            try:
                decision = self.decisions.decide(
                    actor,
                    DecisionRequest(msisdn=leased.msisdn, channel="outbound", lang=lang),
                    campaign_id=leased.campaign_id,
                )
            except BaseException:
                self._release(leased)  # back to the queue at once, not when the lease lapses
                raise
            task = self._settle(actor, leased, decision)
            if task is not None:
                return NextTask(task=task, suppressed=suppressed)
            suppressed += 1
        return NextTask(
            task=None,
            notice=f"{suppressed} tasks in a row were closed by the contact rules; ask again",
            suppressed=suppressed,
        )

    def _lease(self, actor: Actor) -> tuple[_Leased | None, str | None]:
        for _ in range(_LEASE_TRIES):
            try:
                with self.db.write() as session:
                    return self._lease_in(session, actor, self.clock.now())
            except DBAPIError as exc:
                if not _retryable(exc):
                    raise
        raise Unavailable("the call queue is busy; try again")

    def _lease_in(
        self, session: Session, actor: Actor, now: datetime
    ) -> tuple[_Leased | None, str | None]:
        self._reclaim(session, now)
        live = list(session.scalars(select(Campaign).where(Campaign.status == "live")))
        if not live:
            return None, "no campaign is live"
        closed = {c.id: reason for c in live if (reason := closed_reason(c, now)) is not None}
        open_ = {c.id: c for c in live if c.id not in closed}
        if not open_:
            return None, "no live campaign may call now: " + "; ".join(closed.values())
        days = {c.id: local_day(c, now).isoformat() for c in open_.values()}
        calls = {
            (campaign_id, day): count
            for campaign_id, day, count in session.execute(
                select(CampaignDay.campaign_id, CampaignDay.day, CampaignDay.calls).where(
                    CampaignDay.campaign_id.in_(list(open_)),
                    CampaignDay.day.in_(set(days.values())),
                )
            )
        }
        # Callbacks are promises to the customer: they are kept even when the day's cap is
        # reached (and count towards it).
        task = self._pick(session, actor, list(open_), now, callback=True)
        if task is not None:
            self._count_call(session, open_[task.campaign_id], days[task.campaign_id], capped=False)
        else:
            under_cap = [
                cid for cid, c in open_.items() if calls.get((cid, days[cid]), 0) < c.daily_cap
            ]
            while under_cap and task is None:
                task = self._pick(session, actor, under_cap, now, callback=False)
                if task is None:
                    break
                campaign = open_[task.campaign_id]
                if not self._count_call(session, campaign, days[campaign.id], capped=True):
                    under_cap.remove(campaign.id)  # another agent took the last call of the day
                    task = None
            if task is None:
                capped = [cid for cid in open_ if cid not in under_cap]
                notice = "no call task is due now"
                if capped:
                    notice += "; daily cap reached for " + ", ".join(sorted(capped))
                if closed:
                    notice += "; " + "; ".join(closed.values())
                return None, notice
        campaign = open_[task.campaign_id]
        task.status = "leased"
        task.agent_id = actor.user_id
        task.lease_until = now + self.lease
        task.leases += 1
        task.updated_at = now
        session.flush()  # the one-lease-per-customer index answers here
        self._log(session, task, "leased", actor.user_id, now)
        return _Leased(
            task_id=task.id,
            lease_no=task.leases,
            campaign_id=campaign.id,
            campaign_name=campaign.name,
            strategy=campaign.strategy,
            offers=tuple(campaign.offers.split(";")),
            msisdn=task.msisdn,
            day=days[campaign.id],
            callback=task.callback,
            no_answers=task.no_answers,
            lease_until=task.lease_until,
        ), None

    def _pick(
        self,
        session: Session,
        actor: Actor,
        campaign_ids: list[str],
        now: datetime,
        *,
        callback: bool,
    ) -> CallTask | None:
        held = aliased(CallTask)
        customer_busy = (
            select(held.id).where(held.msisdn == CallTask.msisdn, held.status == "leased").exists()
        )
        query = select(CallTask).where(
            CallTask.status == "queued",
            CallTask.callback.is_(callback),
            CallTask.campaign_id.in_(campaign_ids),
            CallTask.due_at <= now,
            ~customer_busy,
        )
        if callback:
            query = query.where(
                or_(
                    CallTask.preferred_agent == actor.user_id,
                    CallTask.preferred_agent.is_(None),
                    CallTask.reserved_until <= now,
                )
            ).order_by(CallTask.due_at, CallTask.id)
        else:
            query = query.order_by(CallTask.priority.desc(), CallTask.id.desc())
        query = query.limit(1).with_for_update(skip_locked=True, of=CallTask)
        return session.scalars(query).first()

    @staticmethod
    def _count_call(session: Session, campaign: Campaign, day: str, *, capped: bool) -> bool:
        """One more call today; False if ``capped`` and the daily cap is reached."""
        connection = session.connection()
        connection.execute(
            text(
                "INSERT INTO campaign_days (campaign_id, day, calls) VALUES (:c, :d, 0) "
                "ON CONFLICT DO NOTHING"
            ),
            {"c": campaign.id, "d": day},
        )
        statement = update(CampaignDay).where(
            CampaignDay.campaign_id == campaign.id, CampaignDay.day == day
        )
        if capped:
            statement = statement.where(CampaignDay.calls < campaign.daily_cap)
        result = connection.execute(statement.values(calls=CampaignDay.calls + 1))
        return result.rowcount == 1

    @staticmethod
    def _uncount_call(session: Session, campaign_id: str, day: str) -> None:
        session.connection().execute(
            update(CampaignDay)
            .where(
                CampaignDay.campaign_id == campaign_id,
                CampaignDay.day == day,
                CampaignDay.calls > 0,
            )
            .values(calls=CampaignDay.calls - 1)
        )

    def _reclaim(self, session: Session, now: datetime) -> None:
        """Lapsed leases go back to the queue (or close, if their campaign ended meanwhile)."""
        lapsed = list(
            session.scalars(
                select(CallTask)
                .where(CallTask.status == "leased", CallTask.lease_until < now)
                .order_by(CallTask.id)
                .limit(100)
                .with_for_update(skip_locked=True, of=CallTask)
            )
        )
        if not lapsed:
            return
        ended = set(
            session.scalars(
                select(Campaign.id).where(
                    Campaign.id.in_({t.campaign_id for t in lapsed}), Campaign.status == "ended"
                )
            )
        )
        for task in lapsed:
            task.lease_until = None
            task.updated_at = now
            if task.campaign_id in ended:
                task.status, task.result, task.closed_at = "closed", "ended", now
            else:
                task.status = "queued"
            self._log(session, task, "lapsed", task.agent_id, now)
        session.flush()

    def _release(self, leased: _Leased) -> None:
        now = self.clock.now()
        with self.db.write() as session:
            task = session.get(CallTask, leased.task_id, with_for_update=True)
            if task is None or not self._holds(task, leased):
                return
            task.status, task.lease_until, task.updated_at = "queued", None, now
            self._uncount_call(session, leased.campaign_id, leased.day)
            self._log(session, task, "released", task.agent_id, now)

    @staticmethod
    def _holds(task: CallTask, leased: _Leased) -> bool:
        return task.status == "leased" and task.leases == leased.lease_no

    def _settle(self, actor: Actor, leased: _Leased, decision: DecisionResponse) -> TaskOut | None:
        """Hand the task over with its decision, or close it if the rules now forbid the call."""
        campaign_offers = [o.offer_id for o in decision.offers if o.offer_id in leased.offers]
        rule: str | None = None
        detail = ""
        if not campaign_offers:
            removed = {s.offer_id: s for s in decision.suppressed if s.offer_id in leased.offers}
            by_rule = [s for s in removed.values() if s.rule not in RANKING_CUTS]
            if not decision.offers or (by_rule and len(by_rule) == len(removed)):
                candidates = by_rule or list(removed.values()) or list(decision.suppressed)
                first = min(
                    candidates,
                    key=lambda s: _RULE_ORDER.get(s.rule, len(_RULE_ORDER)),
                    default=None,
                )
                rule = first.rule if first else "no_offer"
                detail = first.detail if first else (decision.notice or "no offer fits")
        now = self.clock.now()
        with self.db.write() as session:
            task = session.get(CallTask, leased.task_id, with_for_update=True)
            if task is None or not self._holds(task, leased):
                return None  # the lease lapsed meanwhile; someone else has it now
            task.decision_id = decision.decision_id
            task.updated_at = now
            if rule is not None:
                task.status, task.result, task.closed_at = "closed", "suppressed", now
                task.rule, task.detail, task.lease_until = rule, detail, None
                self._uncount_call(session, leased.campaign_id, leased.day)
                self._log(session, task, "suppressed", actor.user_id, now, f"{rule}: {detail}")
                return None
        return TaskOut(
            task_id=leased.task_id,
            campaign=CampaignBrief(
                id=leased.campaign_id,
                name=leased.campaign_name,
                strategy=leased.strategy,
                strategy_description=STRATEGIES.get(leased.strategy, ("", ""))[0],
                offers=list(leased.offers),
            ),
            dial=leased.msisdn,
            attempt=leased.lease_no,
            no_answers=leased.no_answers,
            callback=leased.callback,
            lease_until=leased.lease_until,
            decision=decision,
            campaign_offers=campaign_offers,
        )

    # -- outcomes --

    def record(
        self, actor: Actor, task_id: int, request: TaskOutcomeRequest
    ) -> tuple[int, TaskOutcomeOut]:
        """(status code, answer): 201 recorded now, 200 the same outcome sent again."""
        now = self.clock.now()
        with self.db.read() as session:
            task = session.get(CallTask, task_id)
            if task is None:
                raise NotFound(f"task {task_id} not found", field="task_id")
            campaign = session.get(Campaign, task.campaign_id)
            assert campaign is not None
            shown = (
                decode_offers(
                    session.scalar(select(Decision.offers).where(Decision.id == task.decision_id))
                )
                if task.decision_id
                else {}
            )
            top_offer = min(shown, key=lambda offer_id: shown[offer_id].rank, default=None)
            if (
                task.status != "leased"
                and task.agent_id == actor.user_id
                and task.outcome_lease == task.leases
                and self._recorded(session, task, request, top_offer)
            ):
                return 200, _state(task, None)  # a retry of the request that was recorded
        if task.status != "leased" or task.agent_id != actor.user_id:
            raise Conflict(_not_yours(task, actor), field="task_id")
        if task.decision_id is None:
            raise Conflict(f"task {task_id} is still being prepared", field="task_id")
        self._check(request, campaign, now)
        recorded: OutcomeResponse | None = None
        if request.outcome in LEDGER_OUTCOMES:
            offer_id = request.offer_id or top_offer
            assert offer_id is not None  # a task is handed over only with offers
            result = self.outcomes.record(
                actor,
                task.decision_id,
                OutcomeRequest(
                    offer_id=offer_id,
                    outcome=request.outcome,  # type: ignore[arg-type]
                    reason=request.reason,
                    callback_at=request.callback_at,
                ),
                idempotency_key=f"task-{task.id}-{task.leases}-{request.outcome}-{offer_id}",
            )
            recorded = result.response
        lease_no = task.leases
        with self.db.write() as session:
            task = session.get(CallTask, task_id, with_for_update=True)
            assert task is not None
            if task.status != "leased" or task.agent_id != actor.user_id or task.leases != lease_no:
                raise Conflict(
                    f"task {task_id}: the lease lapsed while the outcome was recorded"
                    + (f" (decision outcome {recorded.outcome_id} stands)" if recorded else ""),
                    field="task_id",
                )
            campaign = session.get(Campaign, task.campaign_id)
            assert campaign is not None
            dnd_added = self._apply(session, task, campaign, request, actor, now)
            self._log(
                session,
                task,
                request.outcome,
                actor.user_id,
                now,
                request.reason or "",
            )
            return 201, _state(task, recorded, dnd_added)

    @staticmethod
    def _recorded(
        session: Session, task: CallTask, request: TaskOutcomeRequest, top_offer: str | None
    ) -> bool:
        """Whether ``request`` is the one that ended the task's last lease (sent again)."""
        if task.last_outcome != request.outcome:
            return False
        if request.outcome == "callback":
            return task.callback and task.due_at == request.callback_at
        if request.outcome in LEDGER_OUTCOMES:
            offer_id = request.offer_id or top_offer
            found = session.scalar(
                select(Outcome.id).where(
                    Outcome.decision_id == task.decision_id,
                    Outcome.offer_id == offer_id,
                    Outcome.outcome == request.outcome,
                )
            )
            return found is not None
        return True

    def _check(self, request: TaskOutcomeRequest, campaign: Campaign, now: datetime) -> None:
        outcome = request.outcome
        if outcome in OFFER_OUTCOMES and request.offer_id is None:
            raise BadInput(f"offer_id: required when the outcome is {outcome}", field="offer_id")
        if outcome in ("wrong_number", "do_not_call") and request.offer_id is not None:
            raise BadInput(f"offer_id: not used with the outcome {outcome}", field="offer_id")
        if outcome != "callback":
            if request.callback_at is not None:
                raise BadInput(
                    "callback_at: only allowed with the outcome callback", field="callback_at"
                )
            return
        at = request.callback_at
        if at is None:
            raise BadInput("callback_at: required when the outcome is callback", "callback_at")
        if at.tzinfo is None:
            raise BadInput(
                "callback_at: needs a UTC offset, e.g. 2026-11-24T10:00:00+08:00", "callback_at"
            )
        if at <= now:
            raise BadInput("callback_at: must be in the future", "callback_at")
        day = local_day(campaign, at)
        if not campaign.starts_on <= day <= campaign.ends_on:
            raise BadInput(
                f"callback_at: {day} is outside the campaign's dates "
                f"{campaign.starts_on} to {campaign.ends_on}",
                "callback_at",
            )
        if not within_calling_hours(campaign, at):
            raise BadInput(
                f"callback_at: outside the calling hours {campaign.calling_from}-"
                f"{campaign.calling_until} ({campaign.timezone}); pick a time within them",
                "callback_at",
            )

    def _apply(
        self,
        session: Session,
        task: CallTask,
        campaign: Campaign,
        request: TaskOutcomeRequest,
        actor: Actor,
        now: datetime,
    ) -> bool:
        """Move the task on from its outcome; True if the number joined the do-not-call list."""
        outcome = request.outcome
        task.last_outcome = outcome
        task.outcome_lease = task.leases
        task.lease_until = None
        task.updated_at = now
        running = campaign.status in ("live", "paused")
        if outcome == "callback" and running:
            assert request.callback_at is not None
            task.status, task.callback = "queued", True
            task.due_at = request.callback_at
            task.preferred_agent = actor.user_id
            task.reserved_until = request.callback_at + self.grace
            return False
        if outcome == "no_answer":
            task.no_answers += 1
            if task.no_answers < campaign.max_attempts and running:
                task.status, task.callback = "queued", False
                task.due_at = now + timedelta(minutes=campaign.retry_delay_minutes)
                task.preferred_agent = task.reserved_until = None
                return False
        task.status, task.closed_at = "closed", now
        if outcome in ("callback", "no_answer"):
            task.result = "no_answer" if outcome == "no_answer" and running else "ended"
        else:
            task.result = outcome
        if outcome == "do_not_call" and session.get(DndNumber, task.msisdn) is None:
            session.add(
                DndNumber(
                    msisdn=task.msisdn,
                    added_at=now,
                    added_by=actor.user_id,
                    source=f"task {task.id} of campaign {task.campaign_id}",
                )
            )
            return True
        return False

    @staticmethod
    def _log(
        session: Session,
        task: CallTask,
        kind: str,
        user_id: str | None,
        now: datetime,
        detail: str = "",
    ) -> None:
        session.add(
            TaskEvent(
                task_id=task.id,
                campaign_id=task.campaign_id,
                kind=kind,
                user_id=user_id,
                decision_id=task.decision_id,
                detail=detail,
                at=now,
            )
        )


def _not_yours(task: CallTask, actor: Actor) -> str:
    if task.status == "closed":
        return f"task {task.id} is closed ({task.result})"
    if task.status == "leased":
        return f"task {task.id} is leased to another agent"
    if task.agent_id == actor.user_id and task.outcome_lease == task.leases:
        return (
            f"task {task.id} is back in the queue after your {task.last_outcome}, due "
            f"{task.due_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
        )
    if task.agent_id == actor.user_id:
        return f"task {task.id}: your lease lapsed and the task went back to the queue"
    return f"task {task.id} is not leased to you: lease it with POST /v1/tasks/next"


def _state(
    task: CallTask, outcome: OutcomeResponse | None, dnd_added: bool = False
) -> TaskOutcomeOut:
    return TaskOutcomeOut(
        task_id=task.id,
        status=task.status,
        result=task.result,
        due_at=task.due_at.astimezone(UTC) if task.status == "queued" else None,
        no_answers=task.no_answers,
        outcome=outcome,
        dnd_added=dnd_added,
    )
