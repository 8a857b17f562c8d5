"""The outbound call queue: leases, the contact rules at lease time, callbacks, retries,
calling hours, the daily cap, the do-not-call list, and 20 agents working one queue at once
(SQLite and PostgreSQL)."""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest
from conftest import STANDARD_AFFINITY, STANDARD_CONTACTS, STANDARD_PROFILES, write_extract
from helpers import Api, api
from sqlalchemy import func, select
from test_campaigns import CLERK, Floor, agent, callable_rows

from nextbest.clock import FixedClock
from nextbest.errors import BadInput, Conflict
from nextbest.keys import Actor
from nextbest.settings import Settings
from nextbest.storage.campaign_models import CallTask, DndNumber, TaskEvent
from nextbest.storage.db import Database
from nextbest.storage.models import Decision, Outcome, ProvisioningJob, Subscription
from nextbest.tasks import NextTask, TaskOut, TaskOutcomeRequest
from nextbest.wire import DecisionRequest, OutcomeRequest

A, B = agent(1), agent(2)


@pytest.fixture
def extract(tmp_path: Path) -> Path:
    profiles, affinity = callable_rows(6)
    return write_extract(
        tmp_path / "x",
        STANDARD_PROFILES + profiles,
        STANDARD_AFFINITY + affinity,
        STANDARD_CONTACTS,
    )


@pytest.fixture
def floor(db: Database, clock: FixedClock, extract: Path) -> Floor:
    return Floor(db, clock, extract)


def lease(floor: Floor, who: Actor = A) -> TaskOut:
    got = floor.tasks.next(who)
    assert got.task is not None, got.notice
    return got.task


def report(floor: Floor, task: TaskOut, outcome: str, who: Actor = A, **fields: object) -> str:
    _, out = floor.tasks.record(
        who,
        task.task_id,
        TaskOutcomeRequest(outcome=outcome, **fields),  # type: ignore[arg-type]
    )
    return out.result or out.status


def test_lease_hands_over_the_best_task_with_a_stored_decision(floor: Floor) -> None:
    # 13700000005 has crbt_open affinity 0.7 (the best), 13700000002 0.4, 13900000001 0.62.
    floor.live("c-1", ["crbt_open"], ["13700000002", "13700000005", "13900000001"])
    task = lease(floor)
    assert task.dial == "13700000005"
    assert task.campaign.id == "c-1" and task.campaign.strategy == "direct_recommendation"
    assert task.attempt == 1 and not task.callback
    assert task.lease_until == floor.clock.now() + timedelta(seconds=600)
    assert task.campaign_offers == ["crbt_open"]
    decision = task.decision
    assert decision.channel == "outbound" and decision.msisdn == "137****0005"
    script = decision.offers[0].script
    assert script.opening and script.closing and script.objections
    with floor.db.read() as session:
        stored = session.get(Decision, decision.decision_id)
        assert stored is not None
        assert (stored.campaign_id, stored.user_id, stored.role) == ("c-1", "agent-1", "agent")
    assert lease(floor, B).dial == "13900000001"  # next by expected value
    assert lease(floor, agent(3)).dial == "13700000002"
    assert floor.tasks.next(agent(4)).notice == "no call task is due now"


def test_two_agents_never_hold_the_same_customer(floor: Floor) -> None:
    floor.live("c-1", ["crbt_open"], ["13700000005"])
    floor.live("c-2", ["club_vip"], ["13700000005", "13700000001"])
    first = lease(floor, A)
    assert first.dial == "13700000005"
    second = lease(floor, B)
    assert second.dial == "13700000001"  # not 13700000005 of c-2: A holds that customer
    assert floor.tasks.next(agent(3)).task is None


def test_a_lapsed_lease_returns_to_the_queue(
    db: Database, clock: FixedClock, extract: Path
) -> None:
    floor = Floor(db, clock, extract, lease_seconds=300)
    floor.live("c-1", ["crbt_open"], ["13700000005"])
    task = lease(floor, A)
    assert floor.tasks.next(B).task is None
    clock.advance(seconds=301)
    again = lease(floor, B)
    assert (again.task_id, again.attempt) == (task.task_id, 2)
    with pytest.raises(Conflict, match="leased to another agent"):
        report(floor, task, "declined", offer_id="crbt_open")
    assert report(floor, again, "declined", B, offer_id="crbt_open") == "declined"
    with db.read() as session:
        kinds = list(
            session.scalars(
                select(TaskEvent.kind)
                .where(TaskEvent.task_id == task.task_id)
                .order_by(TaskEvent.id)
            )
        )
    assert kinds == ["leased", "lapsed", "leased", "declined"]


def test_contact_rules_are_checked_again_at_lease_time(floor: Floor) -> None:
    floor.live("c-1", ["crbt_open"], ["13900000001", "13700000000"])
    floor.live("c-2", ["club_vip"], ["13700000000"])
    # This morning 13900000001 took the ring-back tone at a store.
    decision = floor.decisions.decide(CLERK, DecisionRequest(msisdn="13900000001", channel="store"))
    floor.outcomes.record(
        CLERK, decision.decision_id, OutcomeRequest(offer_id="crbt_open", outcome="accepted")
    )
    got = floor.tasks.next(A)
    assert got.suppressed == 1  # 13900000001 was closed, not called
    assert got.task is not None and got.task.dial == "13700000000"
    closed = floor.tasks_of("c-1")["13900000001"]
    assert (closed.status, closed.result, closed.rule) == ("closed", "suppressed", "held")
    # A reaches 13700000000 for c-1; c-2 may not call them again within 60 days.
    assert report(floor, got.task, "declined", offer_id="crbt_open") == "declined"
    nothing = floor.tasks.next(B)
    assert nothing.task is None and nothing.suppressed == 1
    assert floor.tasks_of("c-2")["13700000000"].rule == "recontact"
    queue = floor.campaigns.queue("c-1")
    assert queue.calls_today == 1  # suppressed tasks are not calls


def test_callback_comes_back_first_at_its_time_to_the_same_agent(floor: Floor) -> None:
    floor.live("c-1", ["crbt_open"], ["13700000005", "13700000004", "13700000002"])
    task = lease(floor, A)
    assert task.dial == "13700000005"
    at = datetime(2026, 11, 19, 7, 0, tzinfo=UTC)  # 15:00 in Shanghai
    _, out = floor.tasks.record(
        A, task.task_id, TaskOutcomeRequest(outcome="callback", callback_at=at)
    )
    assert (out.status, out.due_at) == ("queued", at)
    assert out.outcome is not None and out.outcome.offer_id == "crbt_open"  # the top offer
    # Sent again (a retry): the same answer, nothing written; another time is refused.
    again = TaskOutcomeRequest(outcome="callback", callback_at=at.astimezone(UTC))
    assert floor.tasks.record(A, task.task_id, again)[0] == 200
    other_time = TaskOutcomeRequest(outcome="callback", callback_at=at + timedelta(hours=1))
    with pytest.raises(
        Conflict, match="back in the queue after your callback, due 2026-11-19 07:00"
    ):
        floor.tasks.record(A, task.task_id, other_time)
    other = lease(floor, B)
    assert other.dial == "13700000004"  # not before its time
    report(floor, other, "declined", B, offer_id="crbt_open")
    floor.clock.at = at
    assert lease(floor, agent(3)).dial == "13700000002"  # kept for A within the grace
    back = lease(floor, A)
    assert (back.dial, back.callback, back.attempt) == ("13700000005", True, 2)
    # The customer asked for this call: the 60-day re-contact rule does not stop it.
    assert back.campaign_offers == ["crbt_open"]
    assert report(floor, back, "accepted", offer_id="crbt_open") == "accepted"


def test_an_unclaimed_callback_goes_to_any_agent_after_the_grace(floor: Floor) -> None:
    floor.live("c-1", ["crbt_open"], ["13700000005", "13700000002"])
    task = lease(floor, A)
    at = datetime(2026, 11, 19, 7, 0, tzinfo=UTC)
    floor.tasks.record(A, task.task_id, TaskOutcomeRequest(outcome="callback", callback_at=at))
    floor.clock.at = at + timedelta(seconds=901)
    assert lease(floor, B).dial == "13700000005"  # callbacks first, now for anyone


def test_callback_must_fall_within_calling_hours_and_dates(floor: Floor) -> None:
    floor.live("c-1", ["crbt_open"], ["13700000005"], ends_on=datetime(2026, 11, 25).date())
    task = lease(floor, A)
    cases = [
        (datetime(2026, 11, 19, 13, 0, tzinfo=UTC), "outside the calling hours 09:00-20:00"),
        (datetime(2026, 11, 26, 3, 0, tzinfo=UTC), "outside the campaign's dates"),
        (datetime(2026, 11, 19, 1, 0, tzinfo=UTC), "must be in the future"),
        (None, "required when the outcome is callback"),
    ]
    for at, message in cases:
        with pytest.raises(BadInput, match=message) as refused:
            floor.tasks.record(
                A, task.task_id, TaskOutcomeRequest(outcome="callback", callback_at=at)
            )
        assert refused.value.field == "callback_at"
    with pytest.raises(BadInput, match="offer_id: required when the outcome is accepted"):
        floor.tasks.record(A, task.task_id, TaskOutcomeRequest(outcome="accepted"))
    with floor.db.read() as session:  # nothing of a refused outcome reached the ledger
        assert session.scalar(select(func.count()).select_from(Outcome)) == 0


def test_no_answer_retries_after_the_delay_then_gives_up(floor: Floor) -> None:
    floor.live("c-1", ["crbt_open"], ["13700000005"], retry_delay_minutes=30, max_attempts=2)
    task = lease(floor, A)
    _, out = floor.tasks.record(A, task.task_id, TaskOutcomeRequest(outcome="no_answer"))
    assert (out.status, out.no_answers) == ("queued", 1)
    assert out.due_at == floor.clock.now() + timedelta(minutes=30)
    floor.clock.advance(minutes=29)
    assert floor.tasks.next(B).task is None
    floor.clock.advance(minutes=1)
    retry = lease(floor, B)
    assert (retry.task_id, retry.attempt, retry.no_answers) == (task.task_id, 2, 1)
    assert report(floor, retry, "no_answer", B) == "no_answer"
    closed = floor.tasks_of("c-1")["13700000005"]
    assert (closed.status, closed.result, closed.no_answers) == ("closed", "no_answer", 2)


def test_never_outside_calling_hours(floor: Floor) -> None:
    floor.live("c-sh", ["crbt_open"], ["13700000005"])
    floor.live("c-ldn", ["crbt_open"], ["13700000004"], timezone="Europe/London")
    assert lease(floor, A).dial == "13700000005"  # 10:00 in Shanghai, 02:00 in London
    nothing = floor.tasks.next(B)
    assert nothing.task is None
    assert nothing.notice == (
        "no call task is due now; campaign c-ldn calls 09:00-20:00 (Europe/London)"
    )
    floor.clock.at = datetime(2026, 11, 19, 12, 30, tzinfo=UTC)  # 20:30 / 12:30
    assert lease(floor, B).dial == "13700000004"
    floor.clock.at = datetime(2026, 11, 19, 21, 0, tzinfo=UTC)  # 05:00 / 21:00
    assert floor.tasks.next(agent(3)).notice == (
        "no live campaign may call now: campaign c-sh calls 09:00-20:00 (Asia/Shanghai); "
        "campaign c-ldn calls 09:00-20:00 (Europe/London)"
    )


def test_the_daily_cap_holds_until_the_next_local_day(floor: Floor) -> None:
    floor.live("c-1", ["crbt_open"], ["13700000005", "13700000004", "13700000003"], daily_cap=2)
    first, second = lease(floor, A), lease(floor, B)
    report(floor, first, "declined", A, offer_id="crbt_open")
    report(floor, second, "declined", B, offer_id="crbt_open")
    capped = floor.tasks.next(A)
    assert capped.task is None and "daily cap reached for c-1" in (capped.notice or "")
    floor.clock.advance(days=1)
    assert lease(floor, A).dial == "13700000003"


def test_do_not_call_is_for_good_and_every_decision_honours_it(floor: Floor) -> None:
    floor.live("c-1", ["crbt_open"], ["13700000005"])
    floor.live("c-2", ["club_vip"], ["13700000005"])
    task = lease(floor, A)
    _, out = floor.tasks.record(A, task.task_id, TaskOutcomeRequest(outcome="do_not_call"))
    assert (out.result, out.dnd_added, out.outcome) == ("do_not_call", True, None)
    with floor.db.read() as session:
        row = session.get(DndNumber, "13700000005")
        assert row is not None and row.added_by == "agent-1"
    floor.clock.advance(days=400)
    later = floor.decisions.decide(CLERK, DecisionRequest(msisdn="13700000005", channel="outbound"))
    assert later.offers == [] and later.notice == "Customer is on the do-not-disturb list"
    store = floor.decisions.decide(CLERK, DecisionRequest(msisdn="13700000005", channel="store"))
    assert all(s.rule == "dnd" for s in store.suppressed if s.offer_id == "crbt_open")
    # A number the warehouse does not know is honoured as well.
    with floor.db.write() as session:
        session.add(DndNumber(msisdn="13600000000", added_at=floor.clock.now(), added_by="x"))
    unknown = floor.decisions.decide(
        CLERK, DecisionRequest(msisdn="13600000000", channel="outbound")
    )
    assert unknown.offers == [] and not unknown.known


def test_outcomes_go_through_the_decision_ledger(floor: Floor) -> None:
    floor.live("c-1", ["crbt_open"], ["13700000005", "13700000004"])
    task = lease(floor, A)
    status, out = floor.tasks.record(
        A, task.task_id, TaskOutcomeRequest(outcome="accepted", offer_id="crbt_open")
    )
    assert (status, out.status, out.result) == (201, "closed", "accepted")
    assert out.outcome is not None and out.outcome.subscription is not None
    assert out.outcome.subscription.status == "pending"
    # The same request again (a retry) answers the same and writes nothing.
    status, again = floor.tasks.record(
        A, task.task_id, TaskOutcomeRequest(outcome="accepted", offer_id="crbt_open")
    )
    assert (status, again.result) == (200, "accepted")
    with pytest.raises(Conflict, match=r"closed \(accepted\)"):
        report(floor, task, "declined", offer_id="crbt_open")
    other = lease(floor, A)
    assert report(floor, other, "wrong_number") == "wrong_number"
    with floor.db.read() as session:
        assert session.scalar(select(func.count()).select_from(Subscription)) == 1
        assert session.scalar(select(func.count()).select_from(ProvisioningJob)) == 1
        rows = session.execute(select(Outcome.outcome, Outcome.channel, Outcome.user_id)).all()
    assert rows == [("accepted", "outbound", "agent-1")]


def test_control_group_is_never_called(db: Database, clock: FixedClock, tmp_path: Path) -> None:
    profiles, affinity = callable_rows(24)
    floor = Floor(db, clock, write_extract(tmp_path / "x", profiles, affinity))
    numbers = [str(p[0]) for p in profiles]
    floor.live("c-ctl", ["crbt_open"], numbers, control_share=0.3)
    control = {m for m, t in floor.tasks_of("c-ctl").items() if t.result == "control"}
    assert control
    called = set()
    while (got := floor.tasks.next(A)).task is not None:
        called.add(got.task.dial)
        report(floor, got.task, "declined", offer_id="crbt_open")
    assert called == set(numbers) - control


# --- HTTP --------------------------------------------------------------------------------------


@pytest.fixture
def web(settings: Settings, db: Database, clock: FixedClock, extract: Path) -> Iterator[Api]:
    with api(settings, db, clock, extract) as e:
        yield e


def test_http_agents_lease_and_report(web: Api) -> None:
    client = web.client
    admin, supervisor = web.headers("admin"), web.headers("supervisor")
    body = {
        "id": "c-http",
        "name": "Music for fashion leaders",
        "strategy": "direct_recommendation",
        "offers": ["crbt_open"],
        "starts_on": "2026-11-19",
        "ends_on": "2026-12-19",
        "control_share": 0,
    }
    assert client.post("/v1/campaigns", json=body, headers=admin).status_code == 201
    client.put("/v1/campaigns/c-http/targets", json={"list": "13700000005"}, headers=admin)
    for action, who in (("submit", admin), ("approve", supervisor), ("launch", admin)):
        moved = client.post(
            "/v1/campaigns/c-http/transitions", json={"action": action}, headers=who
        )
        assert moved.status_code == 200, moved.text
    for role in ("clerk", "supervisor", "admin"):
        assert client.post("/v1/tasks/next", headers=web.headers(role)).status_code == 403
    got = client.post("/v1/tasks/next?lang=zh", headers=web.headers("agent"))
    assert got.status_code == 200, got.text
    task = got.json()["task"]
    assert task["dial"] == "13700000005"
    assert task["decision"]["offers"][0]["script"]["lang"] == "en"  # no zh outbound script
    assert task["campaign"]["strategy_description"].startswith("Direct recommendation")
    bad = client.post(
        f"/v1/tasks/{task['task_id']}/outcome",
        json={"outcome": "hung_up"},
        headers=web.headers("agent"),
    )
    assert bad.status_code == 400 and bad.json()["field"] == "outcome"
    done = client.post(
        f"/v1/tasks/{task['task_id']}/outcome",
        json={"outcome": "declined", "offer_id": "crbt_open", "reason": "too expensive"},
        headers=web.headers("agent"),
    )
    assert done.status_code == 201, done.text
    assert done.json()["result"] == "declined"
    assert done.json()["outcome"]["outcome"] == "declined"
    empty = client.post("/v1/tasks/next", headers=web.headers("agent"))
    assert empty.json() == {"task": None, "notice": "no call task is due now", "suppressed": 0}
    missing = client.post(
        "/v1/tasks/999/outcome", json={"outcome": "no_answer"}, headers=web.headers("agent")
    )
    assert missing.status_code == 404


# --- 20 agents at once -------------------------------------------------------------------------


FINAL = {"accepted", "declined", "presented", "considering", "wrong_number", "do_not_call"}


def test_twenty_agents_work_one_queue_concurrently(
    settings: Settings, clock: FixedClock, tmp_path: Path
) -> None:
    """Every agent leases and closes tasks as fast as it can. No customer is ever held by two
    agents at once, no task is lost, and every task ends in exactly one final state."""
    profiles, affinity = callable_rows(80)
    extract = write_extract(tmp_path / "x", profiles, affinity)
    db = Database(msgspec.structs.replace(settings, db_pool_size=12))
    db.create_schema()
    try:
        floor = Floor(db, clock, extract)
        numbers = [str(p[0]) for p in profiles]
        # Two campaigns share 30 customers: the lease must keep them apart across campaigns.
        floor.live("c-a", ["crbt_open"], numbers, retry_delay_minutes=0, max_attempts=2)
        floor.live("c-b", ["club_vip"], numbers[:30], retry_delay_minutes=0, max_attempts=2)
        _run_agents(floor, 20)
        _check_books(floor, total=110)
    finally:
        db.dispose()


class _Books:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seq = itertools.count()
        # msisdn -> [(leased at, released from)] in the order of the global sequence
        self.holds: dict[str, list[tuple[int, int]]] = defaultdict(list)
        self.closed_by_agent: Counter[int] = Counter()
        self.leases = 0
        self.suppressed = 0
        self.ledger_outcomes = 0
        self.in_flight = 0
        self.errors: list[BaseException] = []
        self.stop = threading.Event()

    def tick(self) -> int:
        with self.lock:
            return next(self.seq)


def _run_agents(floor: Floor, count: int) -> None:
    books = _Books()
    start = threading.Barrier(count)

    def work(n: int) -> None:
        who = agent(n)
        rng = random.Random(n)
        start.wait()
        try:
            while not books.stop.is_set():
                got: NextTask = floor.tasks.next(who)
                leased_at = books.tick()
                with books.lock:
                    books.suppressed += got.suppressed
                    if got.task is not None:
                        books.in_flight += 1
                    # Only an agent holding a task can put one back (a retry): with none held,
                    # an empty answer means the queue is done.
                    done = got.task is None and books.in_flight == 0
                if done:
                    return
                if got.task is None:
                    time.sleep(0.02)
                    continue
                task = got.task
                outcome = rng.choice(
                    ["accepted", "declined", "presented", "no_answer", "no_answer", "wrong_number"]
                )
                offer = (task.campaign_offers or [task.decision.offers[0].offer_id])[0]
                request = TaskOutcomeRequest(
                    outcome=outcome,  # type: ignore[arg-type]
                    offer_id=offer if outcome in ("accepted", "declined", "presented") else None,
                )
                released_from = books.tick()
                _, out = floor.tasks.record(who, task.task_id, request)
                with books.lock:
                    books.leases += 1
                    books.holds[task.dial].append((leased_at, released_from))
                    books.ledger_outcomes += outcome != "wrong_number"
                    if out.status == "closed":
                        books.closed_by_agent[task.task_id] += 1
                    books.in_flight -= 1
        except BaseException as exc:  # reported by the main thread
            with books.lock:
                books.errors.append(exc)
            books.stop.set()

    threads = [threading.Thread(target=work, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 180
    for thread in threads:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
    books.stop.set()
    assert not any(t.is_alive() for t in threads)
    assert books.errors == []
    floor.books = books  # type: ignore[attr-defined]
    # No customer leased twice: each hold began after the previous one was given back.
    for msisdn, holds in books.holds.items():
        holds.sort()
        for (_, released), (leased, _) in itertools.pairwise(holds):
            assert leased > released, msisdn


def _check_books(floor: Floor, *, total: int) -> None:
    books: _Books = floor.books  # type: ignore[attr-defined]
    with floor.db.read() as session:
        tasks = list(session.scalars(select(CallTask)))
        leases = session.scalar(
            select(func.count()).select_from(TaskEvent).where(TaskEvent.kind == "leased")
        )
        decisions = session.scalar(
            select(func.count()).select_from(Decision).where(Decision.campaign_id.is_not(None))
        )
        outcomes = session.scalar(select(func.count()).select_from(Outcome))
    assert len(tasks) == total  # none lost, none made up
    assert {t.status for t in tasks} == {"closed"}
    results = Counter(t.result for t in tasks)
    assert set(results) <= FINAL | {"no_answer", "suppressed"}
    assert sum(results.values()) == total
    # Closed by exactly one agent's outcome, or by the rules at lease time (never both).
    by_rules = [t for t in tasks if t.result == "suppressed"]
    assert len(by_rules) == books.suppressed
    assert all(books.closed_by_agent[t.id] == 0 for t in by_rules)
    assert all(books.closed_by_agent[t.id] == 1 for t in tasks if t.result != "suppressed")
    assert sum(books.closed_by_agent.values()) + books.suppressed == total
    # Every lease made one stored decision; every reported call one ledger outcome.
    assert leases == decisions == books.leases + books.suppressed
    assert outcomes == books.ledger_outcomes
    # Customers reached for c-a were not called again for c-b (the 60-day rule, at lease).
    assert results["suppressed"] > 0
