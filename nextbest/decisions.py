"""The decision service: read what the warehouse and the ledger know, propose, record."""

from __future__ import annotations

import itertools
import os
import threading
from datetime import datetime

from nextbest.catalog import Catalog, Segment
from nextbest.clock import Clock
from nextbest.engine import propose
from nextbest.errors import BadInput, Unavailable
from nextbest.experiments import assign
from nextbest.impressions import Impression, ImpressionWriter
from nextbest.keys import Actor
from nextbest.learning import Learner
from nextbest.msisdn import InvalidMsisdn, mask, normalize
from nextbest.storage.campaign_models import flag_dnd
from nextbest.storage.db import Database
from nextbest.storage.shown import ShownOffer, encode_offers
from nextbest.storage.warehouse import NoDataLoaded, VersionRetired, WarehouseReader
from nextbest.wire import (
    DecisionRequest,
    DecisionResponse,
    OfferOut,
    SegmentOut,
    SuppressedOut,
)

__all__ = ["DecisionService", "new_decision_id"]


def _events(catalog: Catalog, request: DecisionRequest) -> list[str]:
    """The request's live events, each once, all known to the catalog (400 naming the first
    unknown one)."""
    if request.context is None or not request.context.events:
        return []
    events = list(dict.fromkeys(request.context.events))
    for i, code in enumerate(events):
        if catalog.event(code) is None:
            known = ", ".join(e.code for e in catalog.events)
            raise BadInput(
                f"context.events[{i}]: unknown event {code!r}; known events: {known}",
                field=f"context.events[{i}]",
            )
    return events


def _segment_out(segment: Segment, zh: bool) -> SegmentOut:
    if zh:
        return SegmentOut(
            code=segment.code,
            name=segment.name_zh or segment.name,
            selling_point=segment.selling_point_zh or segment.selling_point,
        )
    return SegmentOut(code=segment.code, name=segment.name, selling_point=segment.selling_point)


class _RandomHex:
    """Random hex from the OS, read 4 KB at a time: a ``getrandom`` call per decision releases
    the GIL, and under load the request then waits for the impression writer's thread to hand
    it back (measured: 90 us per call inside a busy server, 0.8 us alone)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Nothing buffered (also in a forked child, which must not reuse its parent's bytes:
        the same ids)."""
        self._lock = threading.Lock()
        self._hex = ""
        self._at = 0

    def take(self, chars: int) -> str:
        with self._lock:
            at = self._at
            if at + chars > len(self._hex):
                self._hex, at = os.urandom(4096).hex(), 0
            self._at = at + chars
            return self._hex[at : at + chars]


_RANDOM = _RandomHex()
os.register_at_fork(after_in_child=_RANDOM.reset)


_SEQUENCE = itertools.count()


def new_decision_id(now: datetime) -> str:
    """32 hex characters: time-ordered (milliseconds first, then this process's sequence, so
    the index stays append-mostly and decisions of one instant keep their order), then 64
    random bits: not guessable from another decision's id."""
    millis = int(now.timestamp() * 1000)
    return f"{millis:012x}{next(_SEQUENCE) & 0xFFFF:04x}{_RANDOM.take(16)}"


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
        events = _events(catalog, request)
        now = self.clock.now()
        # One statement for the warehouse's rows (when not cached) and the live history.
        with self.db.raw_read() as reads:
            try:
                try:
                    data, live = self.reader.customer_and_history(
                        active.id, msisdn, now - catalog.history_window(), reads
                    )
                except VersionRetired:  # a load swapped versions since: read the new one
                    active = self.reader.active()
                    catalog = active.catalog
                    data, live = self.reader.customer_and_history(
                        active.id, msisdn, now - catalog.history_window(), reads
                    )
            except NoDataLoaded as exc:
                raise Unavailable(str(exc)) from None
            except VersionRetired:
                raise Unavailable("the warehouse data is being swapped; try again") from None
        history = [*data.contacts, *live.events] if data.contacts else live.events
        profile = data.profile
        # The do-not-call list (an outbound call's do_not_call, nextbest/tasks.py) is permanent
        # and counts as the warehouse's `dnd` flag in every decision.
        rules_profile = flag_dnd(msisdn, profile) if live.on_dnd_list else profile
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
        known = profile is not None
        # The impression: what was served, the look-up trail row (who looked up which number)
        # and the report counts, with the ranking's estimates before learning where learning
        # moved them (rollups.py). Written now or in the next batch (nextbest/impressions.py).
        self.impressions.submit(
            Impression(
                (
                    decision_id,
                    now,
                    msisdn,
                    request.channel,
                    actor.user_id,
                    actor.role,
                    actor.store_id,
                    known,
                    profile.segment if profile else None,
                    active.id,
                    catalog.hash,
                    ";".join(events),
                    ";".join(profile.flags) if profile else "",
                    proposal.customer_rule,
                    campaign_id,
                    assignment.experiment if assignment else None,
                    assignment.arm if assignment else None,
                    encode_offers(
                        {
                            p.ranked.offer.id: ShownOffer(
                                rank,
                                p.ranked.score,
                                p.ranked.probability,
                                # The ranking's estimate where learning moved it (rollups.py).
                                p.ranked.base_probability
                                if p.ranked.base_probability != p.ranked.probability
                                else None,
                            )
                            for rank, p in enumerate(proposal.offers, start=1)
                        }
                    ),
                    actor.key_id,
                    actor.team_id,
                )
            )
        )
        zh = request.lang == "zh"
        segment = catalog.segment(profile.segment) if profile else None
        brand = catalog.brand(profile.brand) if profile else None
        return DecisionResponse(
            decision_id=decision_id,
            msisdn=mask(msisdn),
            known=known,
            channel=request.channel,
            segment=_segment_out(segment, zh) if segment else None,
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
