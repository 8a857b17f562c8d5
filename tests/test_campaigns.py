"""Campaigns: target lists, selection, rehearsal, the approval life cycle, and the launch that
fills the call queue. Service tests run on SQLite and PostgreSQL; HTTP tests check roles,
status codes and the fields errors name."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    NOW,
    STANDARD_AFFINITY,
    STANDARD_CONTACTS,
    STANDARD_PROFILES,
    profile,
    write_extract,
)
from helpers import Api, api
from sqlalchemy import func, select

from nextbest.campaigns import (
    CampaignIn,
    CampaignOut,
    CampaignService,
    SelectionIn,
    TransitionIn,
    closed_reason,
    in_control,
    judge,
    narrowed,
    parse_target_list,
    rules_profile,
)
from nextbest.catalog import Catalog
from nextbest.clock import FixedClock
from nextbest.decisions import DecisionService
from nextbest.errors import BadInput, Conflict, Unprocessable
from nextbest.keys import Actor
from nextbest.loader import load_extract
from nextbest.outcomes import OutcomeService
from nextbest.records import ContactEvent
from nextbest.settings import Settings
from nextbest.storage.campaign_models import CallTask, Campaign, CampaignEvent
from nextbest.storage.db import Database
from nextbest.storage.warehouse import WarehouseReader
from nextbest.tasks import TaskService

PLANNER = Actor(key_id=1, user_id="admin-dai", role="admin")
SUPERVISOR = Actor(key_id=2, user_id="sup-chen", role="supervisor")
CLERK = Actor(key_id=3, user_id="clerk-ana", role="clerk", store_id="NJ-0001")
TODAY = date(2026, 11, 19)  # conftest NOW is 10:00 on this day in Shanghai


def agent(n: int) -> Actor:
    return Actor(key_id=100 + n, user_id=f"agent-{n}", role="agent")


def callable_rows(
    count: int, first: int = 13700000000
) -> tuple[list[list[object]], list[list[object]]]:
    """Profiles every rule lets us call about crbt_open and club_vip (GoTone fashion leaders,
    ring-back tone potential, outbound-friendly), with affinities that differ by number."""
    profiles: list[list[object]] = []
    affinity: list[list[object]] = []
    for i in range(count):
        msisdn = str(first + i)
        profiles.append(
            [
                msisdn,
                "fashionable_high_end",
                "gotone",
                "Nanjing" if i % 2 else "Suzhou",
                "NJ-0001",
                "100",
                "mms;data",
                "",
                "crbt:potential",
                "outbound;store",
                "",
            ]
        )
        affinity.append([msisdn, "crbt_open", f"{0.2 + (i % 7) / 10:.2f}"])
        affinity.append([msisdn, "club_vip", f"{0.1 + (i % 5) / 10:.2f}"])
    return profiles, affinity


class Floor:
    """A loaded database with the campaign and queue services at a fixed clock."""

    def __init__(
        self,
        db: Database,
        clock: FixedClock,
        extract: Path,
        *,
        lease_seconds: float = 600.0,
        grace_seconds: float = 900.0,
    ) -> None:
        self.db = db
        self.clock = clock
        load_extract(db, extract, clock)
        self.reader = WarehouseReader(db, cache_size=1000, version_check_seconds=0)
        self.decisions = DecisionService(db, self.reader, clock)
        self.outcomes = OutcomeService(db, self.reader, clock)
        self.campaigns = CampaignService(db, self.reader, clock)
        self.tasks = TaskService(
            db,
            clock,
            self.decisions,
            self.outcomes,
            lease_seconds=lease_seconds,
            callback_grace_seconds=grace_seconds,
        )

    def draft(self, campaign_id: str, offers: Sequence[str], **fields: Any) -> CampaignOut:
        values: dict[str, Any] = {
            "name": f"Campaign {campaign_id}",
            "strategy": "direct_recommendation",
            "starts_on": TODAY,
            "ends_on": TODAY + timedelta(days=30),
            "control_share": 0.0,
        }
        values.update(fields)
        return self.campaigns.create(
            PLANNER, CampaignIn(id=campaign_id, offers=list(offers), **values)
        )

    def move(self, campaign_id: str, *actions: str, by: Actor | None = None) -> CampaignOut:
        out = self.campaigns.get(campaign_id)
        for action in actions:
            actor = by or (SUPERVISOR if action in ("approve", "reject") else PLANNER)
            out = self.campaigns.transition(actor, campaign_id, TransitionIn(action=action))  # type: ignore[arg-type]
        return out

    def live(
        self, campaign_id: str, offers: Sequence[str], numbers: Sequence[str], **fields: Any
    ) -> CampaignOut:
        self.draft(campaign_id, offers, **fields)
        self.campaigns.load_targets(PLANNER, campaign_id, "\n".join(numbers).encode())
        return self.move(campaign_id, "submit", "approve", "launch")

    def tasks_of(self, campaign_id: str) -> dict[str, CallTask]:
        with self.db.read() as session:
            rows = session.scalars(select(CallTask).where(CallTask.campaign_id == campaign_id))
            return {t.msisdn: t for t in rows}


@pytest.fixture
def floor(db: Database, clock: FixedClock, standard_extract: Path) -> Floor:
    return Floor(db, clock, standard_extract)


# --- pure: target lists, control group, calling hours ------------------------------------------


def test_target_list_reports_bad_and_duplicate_lines_by_number() -> None:
    text = "\n".join(
        [
            "13900000001",
            "+86 139 0000 0003",
            "",
            "1390000000",  # one digit short
            "13900000001",  # again
            "hello",
            "139-0000-0004",
            "86 13900000003",  # a duplicate written differently
        ]
    )
    kept, rejected, count = parse_target_list(text)
    assert kept == [(1, "13900000001"), (2, "13900000003"), (7, "13900000004")]
    assert count == 4
    assert [(r.line, r.reason) for r in rejected] == [
        (4, "not a mobile number (11 digits starting with 13-19, optionally +86)"),
        (5, "duplicate of line 1"),
        (6, "not a mobile number (11 digits starting with 13-19, optionally +86)"),
        (8, "duplicate of line 2"),
    ]


def test_target_list_may_be_a_csv_with_an_msisdn_column() -> None:
    text = '\ufeffsegment,msisdn,note\nx,"13900000001",a\ny,13900000002\nz,\n'
    kept, rejected, count = parse_target_list(text)
    assert kept == [(2, "13900000001"), (3, "13900000002")]
    assert [(r.line, r.value) for r in rejected] == [(4, "z,")]
    assert count == 1


def test_control_group_is_stable_per_campaign_and_near_its_share() -> None:
    numbers = [str(13500000000 + i) for i in range(20_000)]
    first = {n for n in numbers if in_control("c-one", n, 0.1)}
    assert first == {n for n in numbers if in_control("c-one", n, 0.1)}
    assert 0.09 < len(first) / len(numbers) < 0.11
    other = {n for n in numbers if in_control("c-two", n, 0.1)}
    assert len(first & other) < len(first) * 0.2  # another campaign draws another group
    assert not any(in_control("c-one", n, 0.0) for n in numbers[:1000])


def _campaign(**fields: Any) -> Campaign:
    values: dict[str, Any] = {
        "id": "c",
        "starts_on": TODAY,
        "ends_on": TODAY + timedelta(days=2),
        "calling_from": "09:00",
        "calling_until": "20:00",
        "timezone": "Asia/Shanghai",
    }
    values.update(fields)
    return Campaign(**values)


def test_calling_hours_are_the_campaigns_own_local_time() -> None:
    shanghai = _campaign()
    at = datetime(2026, 11, 19, 0, 59, tzinfo=UTC)  # 08:59 in Shanghai
    assert "calls 09:00-20:00 (Asia/Shanghai)" in (closed_reason(shanghai, at) or "")
    assert closed_reason(shanghai, at + timedelta(minutes=1)) is None  # 09:00
    assert closed_reason(shanghai, datetime(2026, 11, 19, 11, 59, tzinfo=UTC)) is None
    assert closed_reason(shanghai, datetime(2026, 11, 19, 12, 0, tzinfo=UTC)) is not None
    # 10:00 in Shanghai is 02:00 in London: closed there.
    london = _campaign(timezone="Europe/London")
    assert closed_reason(london, datetime(2026, 11, 19, 2, 0, tzinfo=UTC)) is not None
    assert closed_reason(london, datetime(2026, 11, 19, 10, 0, tzinfo=UTC)) is None
    # Dates are local too: 23:30 UTC on the last day is already the day after in Shanghai.
    late = datetime(2026, 11, 21, 23, 30, tzinfo=UTC)
    assert "ended on 2026-11-21" in (closed_reason(_campaign(calling_until="24:00"), late) or "")
    early = datetime(2026, 11, 18, 15, 0, tzinfo=UTC)  # 23:00 the day before the start
    assert "starts on 2026-11-19" in (closed_reason(_campaign(calling_until="24:00"), early) or "")


def test_a_narrowed_catalog_judges_the_campaign_offers_as_the_whole_one(catalog: Catalog) -> None:
    """The rehearsal screens only the campaign's offers (fast); each must be judged exactly as
    within the whole catalog, which is what a decision screens."""
    offers = [o for o in catalog.offers if o.id in ("sms_100", "crbt_box", "club_vip")]
    view = narrowed(catalog, offers)
    assert [o.id for o in view.offers] == [o.id for o in offers]
    assert view.offer("sms_50") is not None  # look-ups still see every offer
    day = timedelta(days=1)
    profiles = [
        None,
        profile(),
        profile(subscriptions=("sms_50",)),  # same group as sms_100: exclusive
        profile(lifecycle={"crbt": "silent"}),
        profile(flags=("arrears",)),
        profile(segment="careful_calculator", brand="mzone"),
        profile(flags=("dnd",)),
    ]
    histories = [
        [],
        [ContactEvent(channel="store", kind="cancelled", offer_id="crbt_open", at=NOW - 10 * day)],
        [ContactEvent(channel="store", kind="declined", offer_id="sms_100", at=NOW - 5 * day)],
        [ContactEvent(channel="outbound", kind="contacted", at=NOW - 10 * day)],
        [ContactEvent(channel="store", kind="accepted", offer_id="sms_50", at=NOW - day)],
    ]
    rules = set()
    for someone in profiles:
        for history in histories:
            whole = judge(catalog, offers, someone, history, NOW)
            assert judge(view, offers, someone, history, NOW) == whole
            rules |= set(whole.offer_rules.values())
    assert {"exclusive", "lifecycle", "cancelled_recently", "declined_cooldown"} <= rules
    assert {"recontact", "dnd", "arrears", "unknown_subscriber"} <= rules


def test_rules_profile_reads_only_the_campaign_services_stages() -> None:
    row = ("13900000001", "seg", "gotone", "mms;data", "sms_50", "xcrbt:active;crbt:silent", "")
    built = rules_profile(row, (("crbt", "silent"),))
    assert built.lifecycle == {"crbt": "silent"}
    assert (built.handset, built.subscriptions, built.flags) == (("mms", "data"), ("sms_50",), ())
    from nextbest.campaigns import _stages

    assert _stages("xcrbt:active;crbt:silent", ["crbt", "sms"]) == (("crbt", "silent"),)
    assert _stages("crbt:potential", ["crbt"]) == (("crbt", "potential"),)
    assert _stages("", ["crbt"]) == ()


# --- drafting, targets and rehearsal (SQLite and PostgreSQL) -----------------------------------


def test_target_list_is_loaded_with_a_report_and_replaced_whole(floor: Floor) -> None:
    floor.draft("c-list", ["crbt_open"])
    body = "13900000001\n13900000002\nnot-a-number\n13900000001\n13900000009\n"
    report = floor.campaigns.load_targets(PLANNER, "c-list", body.encode())
    assert (report.loaded, report.rejected) == (3, 2)
    assert [(r.line, r.reason) for r in report.rejected_lines] == [
        (3, "not a mobile number (11 digits starting with 13-19, optionally +86)"),
        (4, "duplicate of line 1"),
    ]
    assert report.unknown == 1  # 13900000009 has no profile
    assert floor.campaigns.get("c-list").targets == 3
    # A list with no good number changes nothing.
    with pytest.raises(Unprocessable, match=r"no valid number.*line 1: not a mobile number"):
        floor.campaigns.load_targets(PLANNER, "c-list", b"oops\n")
    again = floor.campaigns.load_targets(PLANNER, "c-list", b"13900000003\n")
    assert again.loaded == 1
    assert floor.campaigns.get("c-list").targets == 1
    with pytest.raises(BadInput, match="line 2 is not UTF-8"):
        floor.campaigns.load_targets(PLANNER, "c-list", b"13900000003\n\xff\n")


def test_rehearsal_counts_each_rule_and_the_expected_accepts(floor: Floor) -> None:
    floor.draft("c-r", ["crbt_open", "sms_100"], daily_cap=2)
    numbers = ["13900000001", "13900000002", "13900000003", "13900000004", "13900000009"]
    floor.campaigns.load_targets(PLANNER, "c-r", "\n".join(numbers).encode())
    rehearsal = floor.campaigns.rehearse("c-r")
    assert (rehearsal.targets, rehearsal.unknown) == (5, 1)
    assert rehearsal.removed_by_rule == {
        "dnd": 1,  # 13900000002 (also complaint-flagged: the first rule counts)
        "recontact": 1,  # 13900000003, called 20 days ago
        "segment_not_for_channel": 1,  # 13900000004, tight-fisted
        "unknown_subscriber": 1,  # 13900000009
    }
    assert (rehearsal.removed, rehearsal.eligible, rehearsal.control) == (4, 1, 0)
    assert rehearsal.to_call == 1
    # 13900000001 leads with crbt_open (0.62 x value 30 beats sms_100's 0.20 x 20).
    assert rehearsal.expected_accepts == 0.62
    assert rehearsal.expected_revenue == pytest.approx(0.62 * 5)
    assert rehearsal.expected_value == pytest.approx(0.62 * 30)
    assert (rehearsal.calls_per_day, rehearsal.days_needed, rehearsal.fits) == (1, 1, True)
    assert rehearsal.campaign_days == 31
    by_offer = {o.offer_id: o for o in rehearsal.offers}
    assert (by_offer["crbt_open"].eligible, by_offer["crbt_open"].lead) == (1, 1)
    assert by_offer["sms_100"].eligible == 1
    assert by_offer["sms_100"].removed_by_rule["dnd"] == 1
    assert rehearsal.problems == []


def test_rehearsal_sees_outcomes_recorded_here(floor: Floor) -> None:
    floor.draft("c-seen", ["crbt_open"])
    floor.campaigns.load_targets(PLANNER, "c-seen", b"13900000001\n")
    assert floor.campaigns.rehearse("c-seen").to_call == 1
    from nextbest.wire import DecisionRequest, OutcomeRequest

    decision = floor.decisions.decide(CLERK, DecisionRequest(msisdn="13900000001", channel="store"))
    floor.outcomes.record(
        CLERK, decision.decision_id, OutcomeRequest(offer_id="crbt_open", outcome="accepted")
    )
    rehearsal = floor.campaigns.rehearse("c-seen")
    assert rehearsal.removed_by_rule == {"held": 1}
    assert rehearsal.to_call == 0


def test_selection_picks_profiles_by_segment_lifecycle_region_and_affinity(
    db: Database, clock: FixedClock, tmp_path: Path
) -> None:
    profiles, affinity = callable_rows(20)
    extract = write_extract(
        tmp_path / "x", STANDARD_PROFILES + profiles, STANDARD_AFFINITY + affinity
    )
    floor = Floor(db, clock, extract)
    floor.draft("c-sel", ["crbt_open"])
    report = floor.campaigns.select_targets(
        PLANNER,
        "c-sel",
        SelectionIn(
            segments=["fashionable_high_end"],
            regions=["Nanjing"],
            lifecycle={"crbt": ["potential"]},
            min_affinity=0.5,
        ),
    )
    expected = {
        p[0] for p, a in zip(profiles, affinity[::2], strict=True) if float(a[2]) >= 0.5
    } & {p[0] for p in profiles if p[3] == "Nanjing"}
    expected |= {"13900000001"}  # Nanjing, potential, crbt_open affinity 0.62
    assert report.loaded == len(expected)
    assert report.source == "selection"
    with db.read() as session:
        from nextbest.storage.campaign_models import CampaignTarget

        chosen = set(
            session.scalars(
                select(CampaignTarget.msisdn).where(CampaignTarget.campaign_id == "c-sel")
            )
        )
    assert chosen == expected
    out = floor.campaigns.get("c-sel")
    assert out.target_source == "selection"
    assert out.selection is not None and out.selection.min_affinity == 0.5
    with pytest.raises(BadInput, match=r"segments\[0\]: unknown segment 'nope'"):
        floor.campaigns.select_targets(PLANNER, "c-sel", SelectionIn(segments=["nope"]))
    with pytest.raises(BadInput, match=r"lifecycle.crbt\[0\]: unknown stage"):
        floor.campaigns.select_targets(PLANNER, "c-sel", SelectionIn(lifecycle={"crbt": ["x"]}))


def test_life_cycle_records_every_transition_and_enforces_approval(floor: Floor) -> None:
    floor.draft("c-life", ["crbt_open"])
    floor.campaigns.load_targets(PLANNER, "c-life", b"13900000001\n")
    with pytest.raises(Conflict, match="c-life is draft; launch applies to a approved"):
        floor.move("c-life", "launch")
    floor.move("c-life", "submit")
    from nextbest.campaigns import Forbidden

    with pytest.raises(Forbidden, match="admin-dai submitted campaign c-life and so may not"):
        floor.move("c-life", "approve", by=PLANNER)
    with pytest.raises(Forbidden, match="role 'agent' may not approve"):
        floor.move("c-life", "approve", by=agent(1))
    floor.move("c-life", "reject")
    floor.move("c-life", "revise", "submit")
    floor.clock.advance(minutes=5)
    out = floor.move("c-life", "approve", "launch", "pause", "resume", "end")
    assert out.status == "ended"
    assert out.submitted_by == "admin-dai" and out.approved_by == "sup-chen"
    steps = [(h.from_status, h.to_status, h.by) for h in out.history]
    assert steps == [
        ("", "draft", "admin-dai"),
        ("draft", "submitted", "admin-dai"),
        ("submitted", "rejected", "sup-chen"),
        ("rejected", "draft", "admin-dai"),
        ("draft", "submitted", "admin-dai"),
        ("submitted", "approved", "sup-chen"),
        ("approved", "live", "admin-dai"),
        ("live", "paused", "admin-dai"),
        ("paused", "live", "admin-dai"),
        ("live", "ended", "admin-dai"),
    ]
    assert out.history[5].at == floor.clock.now()
    assert out.history[0].at == floor.clock.now() - timedelta(minutes=5)


def test_submission_refuses_unknown_and_non_outbound_offers(floor: Floor) -> None:
    floor.draft("c-bad", ["crbt_open", "crbt_forever"])
    floor.campaigns.load_targets(PLANNER, "c-bad", b"13900000001\n")
    with pytest.raises(Unprocessable, match=r"offers\[1\]: unknown offer 'crbt_forever'") as bad:
        floor.move("c-bad", "submit")
    assert bad.value.field == "offers[1]"
    assert "offers[1]: unknown offer" in floor.campaigns.rehearse("c-bad").problems[0]
    floor.draft("c-store", ["mms_pkg"])
    floor.campaigns.load_targets(PLANNER, "c-store", b"13900000001\n")
    with pytest.raises(Unprocessable, match="'mms_pkg' is not sold on outbound") as store:
        floor.move("c-store", "submit")
    assert store.value.field == "offers[0]"
    floor.draft("c-empty", ["crbt_open"])
    with pytest.raises(Unprocessable, match="has no targets") as empty:
        floor.move("c-empty", "submit")
    assert empty.value.field == "targets"
    assert floor.campaigns.get("c-bad").status == "draft"


def test_launch_builds_one_task_per_target_with_control_and_removals(
    db: Database, clock: FixedClock, tmp_path: Path
) -> None:
    profiles, affinity = callable_rows(200)
    extract = write_extract(
        tmp_path / "x",
        STANDARD_PROFILES + profiles,
        STANDARD_AFFINITY + affinity,
        STANDARD_CONTACTS,
    )
    floor = Floor(db, clock, extract)
    numbers = [p[0] for p in profiles] + ["13900000002", "13900000003"]
    rehearsal_of = "c-launch"
    floor.draft(rehearsal_of, ["crbt_open"], control_share=0.2)
    floor.campaigns.load_targets(PLANNER, rehearsal_of, "\n".join(map(str, numbers)).encode())
    rehearsal = floor.campaigns.rehearse(rehearsal_of)
    floor.move(rehearsal_of, "submit", "approve", "launch")
    tasks = floor.tasks_of(rehearsal_of)
    assert len(tasks) == 202
    control = {m for m, t in tasks.items() if t.result == "control"}
    assert control == {str(m) for m in numbers[:200] if in_control(rehearsal_of, str(m), 0.2)}
    assert len(control) == rehearsal.control
    assert tasks["13900000002"].result == "suppressed"
    assert tasks["13900000002"].rule == "dnd"
    assert tasks["13900000003"].rule == "recontact"
    queued = [t for t in tasks.values() if t.status == "queued"]
    assert len(queued) == rehearsal.to_call == 200 - len(control)
    # The queue's order is the expected value: affinity x the offer's value.
    top = max(queued, key=lambda t: t.priority)
    assert top.priority == pytest.approx(0.8 * 30)
    queue = floor.campaigns.queue(rehearsal_of)
    assert (queue.queued_due, queue.leased, queue.total) == (len(queued), 0, 202)
    assert queue.results == {"control": len(control), "suppressed": 2}
    assert queue.open_now and queue.closed_because is None
    # Ending closes what was still queued; every task has exactly one final result.
    floor.move(rehearsal_of, "end")
    with db.read() as session:
        by_result = dict(
            session.execute(
                select(CallTask.result, func.count())
                .where(CallTask.campaign_id == rehearsal_of)
                .group_by(CallTask.result)
            ).all()
        )
        assert session.scalar(select(func.count()).select_from(CampaignEvent)) == 5
    assert by_result == {"ended": len(queued), "control": len(control), "suppressed": 2}


def test_a_draft_only_changes_while_a_draft(floor: Floor) -> None:
    from nextbest.campaigns import CampaignPatch

    floor.draft("c-edit", ["crbt_open"])
    out = floor.campaigns.update(
        PLANNER, "c-edit", CampaignPatch(daily_cap=50, offers=["crbt_open", "sms_100"])
    )
    assert (out.daily_cap, out.offers, out.name) == (
        50,
        ["crbt_open", "sms_100"],
        "Campaign c-edit",
    )
    with pytest.raises(BadInput, match="calling_until: 08:00 is not after calling_from 09:00"):
        floor.campaigns.update(PLANNER, "c-edit", CampaignPatch(calling_until="08:00"))
    with pytest.raises(BadInput, match="timezone: unknown time zone 'Mars/Base'"):
        floor.campaigns.update(PLANNER, "c-edit", CampaignPatch(timezone="Mars/Base"))
    with pytest.raises(BadInput, match=r"offers\[1\]: 'sms_100' is listed twice"):
        floor.campaigns.update(PLANNER, "c-edit", CampaignPatch(offers=["sms_100", "sms_100"]))
    floor.campaigns.load_targets(PLANNER, "c-edit", b"13900000001\n")
    floor.move("c-edit", "submit")
    with pytest.raises(Conflict, match="only a draft can be changed"):
        floor.campaigns.update(PLANNER, "c-edit", CampaignPatch(daily_cap=5))
    with pytest.raises(Conflict, match="only a draft can be given targets"):
        floor.campaigns.load_targets(PLANNER, "c-edit", b"13900000001\n")
    with pytest.raises(Conflict, match="'c-edit' already exists"):
        floor.draft("c-edit", ["crbt_open"])


# --- HTTP: roles, status codes, the fields errors name -----------------------------------------


@pytest.fixture
def web(
    settings: Settings, db: Database, clock: FixedClock, standard_extract: Path
) -> Iterator[Api]:
    with api(settings, db, clock, standard_extract) as e:
        yield e


def _body(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "c-web",
        "name": "Ring-back tone for fashion leaders",
        "strategy": "trial_user_selection",
        "offers": ["crbt_open"],
        "starts_on": "2026-11-19",
        "ends_on": "2026-12-18",
    }
    body.update(fields)
    return body


def test_http_campaign_from_draft_to_live(web: Api) -> None:
    client = web.client
    admin, supervisor = web.headers("admin"), web.headers("supervisor")
    for role in ("clerk", "agent"):
        refused = client.post("/v1/campaigns", json=_body(), headers=web.headers(role))
        assert refused.status_code == 403, role
    created = client.post("/v1/campaigns", json=_body(), headers=admin)
    assert created.status_code == 201, created.text
    assert created.json()["status"] == "draft"
    assert created.json()["owner"] == "admin-1"
    assert created.json()["control_share"] == 0.05
    loaded = client.put(
        "/v1/campaigns/c-web/targets",
        json={"list": "msisdn\n13900000001\n1234\n13900000001\n"},
        headers=admin,
    )
    assert loaded.status_code == 200, loaded.text
    assert loaded.json()["loaded"] == 1
    assert [r["line"] for r in loaded.json()["rejected_lines"]] == [3, 4]
    rehearsal = client.get("/v1/campaigns/c-web/rehearsal", headers=supervisor)
    assert rehearsal.status_code == 200
    assert rehearsal.json()["targets"] == 1
    assert "seconds" in rehearsal.json()
    submitted = client.post(
        "/v1/campaigns/c-web/transitions", json={"action": "submit"}, headers=admin
    )
    assert submitted.status_code == 200
    own = client.post("/v1/campaigns/c-web/transitions", json={"action": "approve"}, headers=admin)
    assert own.status_code == 403
    assert "may not approve it" in own.json()["detail"]
    approved = client.post(
        "/v1/campaigns/c-web/transitions",
        json={"action": "approve", "note": "fits the quarter's plan"},
        headers=supervisor,
    )
    assert approved.status_code == 200
    live = client.post("/v1/campaigns/c-web/transitions", json={"action": "launch"}, headers=admin)
    assert live.status_code == 200
    assert live.json()["status"] == "live"
    history = live.json()["history"]
    assert [h["to_status"] for h in history] == ["draft", "submitted", "approved", "live"]
    assert history[2]["by"] == "supervisor-1" and history[2]["note"] == "fits the quarter's plan"
    queue = client.get("/v1/campaigns/c-web/queue", headers=supervisor)
    assert queue.status_code == 200
    assert queue.json()["total"] == 1
    listed = client.get("/v1/campaigns?status=live", headers=supervisor)
    assert [c["id"] for c in listed.json()] == ["c-web"]
    again = client.post("/v1/campaigns/c-web/transitions", json={"action": "launch"}, headers=admin)
    assert again.status_code == 409


def test_http_bad_campaigns_are_refused_naming_the_field(web: Api) -> None:
    client, admin = web.client, web.headers("admin")
    cases = [
        (_body(strategy="cold_calling"), 400, "strategy"),
        (_body(offers=[]), 400, "offers"),
        (_body(calling_from="9am"), 400, "calling_from"),
        (_body(ends_on="2026-11-01"), 400, "ends_on"),
        (_body(timezone="Nowhere/City"), 400, "timezone"),
        (_body(control_share=0.9), 400, "control_share"),
        (_body(surprise=1), 400, "surprise"),
        (_body(id="Has Spaces"), 400, "id"),
    ]
    for body, status, field in cases:
        response = client.post("/v1/campaigns", json=body, headers=admin)
        assert response.status_code == status, (field, response.text)
        assert response.json().get("field") == field, (field, response.json())
    client.post("/v1/campaigns", json=_body(offers=["crbt_open", "no_such"]), headers=admin)
    client.put("/v1/campaigns/c-web/targets", json={"list": "13900000001"}, headers=admin)
    refused = client.post(
        "/v1/campaigns/c-web/transitions", json={"action": "submit"}, headers=admin
    )
    assert refused.status_code == 422
    assert refused.json()["field"] == "offers[1]"
    assert "unknown offer 'no_such'" in refused.json()["detail"]
    missing = client.get("/v1/campaigns/nope", headers=admin)
    assert missing.status_code == 404
    bad_action = client.post(
        "/v1/campaigns/c-web/transitions", json={"action": "explode"}, headers=admin
    )
    assert bad_action.status_code == 400
    assert bad_action.json()["field"] == "action"
