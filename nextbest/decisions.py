"""The decision service: read what the warehouse and the ledger know, propose, record."""

from __future__ import annotations

import os
from datetime import datetime

from nextbest.clock import Clock
from nextbest.engine import propose
from nextbest.errors import BadInput, NotFound, Unavailable
from nextbest.experiments import assign
from nextbest.impressions import Impression, ImpressionWriter
from nextbest.keys import Actor
from nextbest.learning import Learner
from nextbest.lookups import lookup_row
from nextbest.msisdn import InvalidMsisdn, mask, normalize
from nextbest.rollups import contact_rows, estimate_rows
from nextbest.storage.campaign_models import flag_dnd
from nextbest.storage.db import Database
from nextbest.storage.ledger import decision_row, live_history_and_dnd
from nextbest.storage.models import Decision, DecisionOffer
from nextbest.storage.warehouse import NoDataLoaded, VersionRetired, WarehouseReader
from nextbest.wire import (
    DecisionRequest,
    DecisionResponse,
    OfferOut,
    SegmentOut,
    SuppressedOut,
)

__all__ = ["DecisionService", "new_decision_id"]


def new_decision_id(now: datetime) -> str:
    """32 hex characters, time-ordered (milliseconds first) so the index stays append-mostly."""
    millis = int(now.timestamp() * 1000)
    return f"{millis:012x}{os.urandom(10).hex()}"


class DecisionService:
    def __init__(
        self,
        db: Database,
        reader: WarehouseReader,
        clock: Clock,
        learner: Learner | None = None,
        impressions: ImpressionWriter | None = None,
    ) -> None:
        """``learner``: what outcomes taught, refreshed in the background (None: no learning).
        ``impressions``: writes what was served (None: each decision in its own request)."""
        self.db = db
        self.reader = reader
        self.clock = clock
        self.learner = learner
        self.impressions = impressions or ImpressionWriter(db, 0)

    def decide(
        self, actor: Actor, request: DecisionRequest, *, campaign_id: str | None = None
    ) -> DecisionResponse:
        """``campaign_id``: the campaign whose call task asked (the outbound queue)."""
        try:
            msisdn = normalize(request.msisdn)
        except InvalidMsisdn as exc:
            raise BadInput(f"msisdn: {exc}", field="msisdn") from None
        try:
            active = self.reader.active()
        except NoDataLoaded as exc:
            raise Unavailable(str(exc)) from None
        catalog = active.catalog
        events = list(dict.fromkeys(request.context.events if request.context else []))
        for i, code in enumerate(events):
            if catalog.event(code) is None:
                known = ", ".join(e.code for e in catalog.events)
                raise BadInput(
                    f"context.events[{i}]: unknown event {code!r}; known events: {known}",
                    field=f"context.events[{i}]",
                )
        now = self.clock.now()
        # One connection for the warehouse's rows (when not cached) and the live history.
        with self.db.raw_read() as reads:
            try:
                try:
                    data = self.reader.customer(active.id, msisdn, reads)
                except VersionRetired:  # a load swapped versions since: read the new one
                    active = self.reader.active()
                    data = self.reader.customer(active.id, msisdn, reads)
            except NoDataLoaded as exc:
                raise Unavailable(str(exc)) from None
            except VersionRetired:
                raise Unavailable("the warehouse data is being swapped; try again") from None
            catalog = active.catalog
            recorded, on_dnd_list = live_history_and_dnd(
                reads, msisdn, now - catalog.history_window()
            )
        history = [*data.contacts, *recorded]
        # The do-not-call list (an outbound call's do_not_call, nextbest/tasks.py) is permanent
        # and counts as the warehouse's `dnd` flag in every decision.
        rules_profile = flag_dnd(msisdn, data.profile) if on_dnd_list else data.profile
        learned = self.learner.table(active.id, catalog) if self.learner else None
        assignment = assign(catalog.experiment, msisdn)
        proposal = propose(
            catalog,
            msisdn=msisdn,
            profile=rules_profile,
            affinities=data.affinities,
            history=history,
            channel=request.channel,
            events=events,
            now=now,
            limit=request.limit,
            lang=request.lang,
            learned=learned,
            assignment=assignment,
        )
        decision_id = new_decision_id(now)
        profile = data.profile
        decision = Decision(
            id=decision_id,
            created_at=now,
            msisdn=msisdn,
            channel=request.channel,
            user_id=actor.user_id,
            role=actor.role,
            store_id=actor.store_id,
            known=profile is not None,
            segment=profile.segment if profile else None,
            data_version=active.id,
            catalog_hash=catalog.hash,
            events=";".join(events),
            customer_rule=proposal.customer_rule,
            customer_flags=";".join(profile.flags) if profile else "",
            campaign_id=campaign_id,
            experiment=assignment.experiment if assignment else None,
            arm=assignment.arm if assignment else None,
        )
        # The impression: what was served, the look-up trail row (who looked up which number)
        # and the report counts, with the ranking's estimates before learning where learning
        # moved them (rollups.py). Written now or in the next batch (nextbest/impressions.py).
        self.impressions.submit(
            Impression(
                decision=decision_row(decision),
                offers=[
                    {
                        "decision_id": decision_id,
                        "offer_id": p.ranked.offer.id,
                        "rank": rank,
                        "score": p.ranked.score,
                        "probability": p.ranked.probability,
                    }
                    for rank, p in enumerate(proposal.offers, start=1)
                ],
                lookup=lookup_row(
                    actor,
                    msisdn=msisdn,
                    channel=request.channel,
                    decision_id=decision_id,
                    known=profile is not None,
                    at=now,
                    campaign_id=campaign_id,
                ),
                contacts=contact_rows(decision, sqlite=self.db.is_sqlite),
                estimates=estimate_rows(
                    decision_id,
                    [
                        (p.ranked.offer.id, p.ranked.base_probability)
                        for p in proposal.offers
                        if p.ranked.base_probability is not None
                        and p.ranked.base_probability != p.ranked.probability
                    ],
                ),
            )
        )
        zh = request.lang == "zh"
        segment = catalog.segment(profile.segment) if profile else None
        brand = catalog.brand(profile.brand) if profile else None
        return DecisionResponse(
            decision_id=decision_id,
            msisdn=mask(msisdn),
            known=profile is not None,
            channel=request.channel,
            segment=SegmentOut(
                code=segment.code,
                name=(segment.name_zh or segment.name) if zh else segment.name,
                selling_point=(segment.selling_point_zh or segment.selling_point)
                if zh
                else segment.selling_point,
            )
            if segment
            else None,
            brand=((brand.name_zh or brand.name) if zh else brand.name) if brand else None,
            data_version=active.id,
            catalog_version=catalog.version,
            created_at=now,
            offers=[
                OfferOut(
                    rank=rank,
                    offer_id=p.ranked.offer.id,
                    name=(p.ranked.offer.name_zh or p.ranked.offer.name)
                    if zh
                    else p.ranked.offer.name,
                    service=p.ranked.offer.service,
                    price=p.ranked.offer.price,
                    score=p.ranked.score,
                    probability=p.ranked.probability,
                    reasons=[r.text_zh if zh else r.text for r in p.ranked.reasons],
                    reason_codes=[r.code for r in p.ranked.reasons],
                    script=p.script,
                )
                for rank, p in enumerate(proposal.offers, start=1)
            ],
            notice=proposal.notice,
            suppressed=[
                SuppressedOut(offer_id=s.offer_id, rule=s.rule, detail=s.detail)
                for s in proposal.suppressed
            ],
        )

    def shown_offers(self, decision_id: str) -> tuple[Decision, list[DecisionOffer]]:
        with self.db.read() as session:
            decision = session.get(Decision, decision_id)
            if decision is None:
                raise NotFound(f"decision {decision_id!r} not found", field="decision_id")
            offers = list(
                session.query(DecisionOffer)
                .filter(DecisionOffer.decision_id == decision_id)
                .order_by(DecisionOffer.rank)
            )
        return decision, offers
