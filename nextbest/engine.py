"""The decision, as a pure function: screen by the rules, rank, cut, script.

No session, request or framework type reaches here: the service layer reads the data and
hands it in, with the clock's ``now``; the same inputs always give the same proposal.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

import msgspec

from nextbest.catalog import Catalog
from nextbest.experiments import Assignment, baseline_offers
from nextbest.learning import LearnedTable
from nextbest.pitch import render_script
from nextbest.policy import RULES, Suppressed, screen
from nextbest.ranking import Ranked, rank
from nextbest.records import ContactEvent, Profile
from nextbest.wire import ScriptOut

__all__ = ["Proposal", "Proposed", "propose"]


class Proposed(msgspec.Struct, frozen=True, kw_only=True):
    ranked: Ranked
    script: ScriptOut


class Proposal(msgspec.Struct, frozen=True, kw_only=True):
    offers: list[Proposed]
    suppressed: list[Suppressed]
    customer_rule: str | None
    notice: str | None


def propose(
    catalog: Catalog,
    *,
    msisdn: str,
    profile: Profile | None,
    affinities: Mapping[str, float],
    history: Sequence[ContactEvent],
    channel: str,
    events: Sequence[str],
    now: datetime,
    limit: int | None = None,
    lang: str = "en",
    learned: LearnedTable | None = None,
    assignment: Assignment | None = None,
) -> Proposal:
    """``learned``: what outcomes taught (None: the warehouse's estimates alone);
    ``assignment``: the customer's control-group arm (None: no experiment runs)."""
    screening = screen(catalog, profile, history, channel, now)
    max_offers = catalog.policy.for_channel(channel).max_offers
    cap = max_offers if limit is None else min(limit, max_offers)
    if assignment is not None and assignment.arm == "control":
        # The control group: the baseline's offers instead of the ranked ones (experiments.py),
        # still estimated, so the report can compare what the model expected.
        chosen, held_back = baseline_offers(screening.allowed, assignment, cap)
        ranked, cut = rank(
            catalog,
            chosen,
            profile,
            affinities,
            channel,
            events,
            cap,
            learned=learned,
            min_probability=0.0,
        )
        cut = held_back + cut
    else:
        ranked, cut = rank(
            catalog, screening.allowed, profile, affinities, channel, events, cap, learned=learned
        )
    suppressed = screening.suppressed + cut
    offers = [
        Proposed(
            ranked=r,
            script=render_script(catalog, r.offer, profile, msisdn, channel, events, lang),
        )
        for r in ranked
    ]
    notice: str | None = None
    if screening.customer_rule is not None:
        detail = next(
            (s.detail for s in screening.suppressed if s.rule == screening.customer_rule),
            RULES[screening.customer_rule],
        )
        notice = detail[:1].upper() + detail[1:]
    elif not offers:
        notice = "No offer fits this customer right now."
    return Proposal(
        offers=offers,
        suppressed=suppressed,
        customer_rule=screening.customer_rule,
        notice=notice,
    )
