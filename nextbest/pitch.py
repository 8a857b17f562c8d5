"""Choose and render the talk script for one offer, customer, channel and language."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from nextbest.catalog import Catalog, Offer, Script
from nextbest.msisdn import mask
from nextbest.records import Profile
from nextbest.talk import render
from nextbest.wire import ObjectionOut, ScriptOut

__all__ = ["choose_script", "render_script"]


def choose_script(offer: Offer, channel: str, segment: str | None, lang: str) -> Script | None:
    """The most specific script: segment and language match, then language, then segment."""
    best: Script | None = None
    best_rank = -1
    for script in offer.scripts:
        if channel not in script.channels:
            continue
        if script.segments and (segment is None or segment not in script.segments):
            continue
        rank = (2 if script.lang == lang else 0) + (1 if script.segments else 0)
        if rank > best_rank:
            best, best_rank = script, rank
    return best


def render_script(
    catalog: Catalog,
    offer: Offer,
    profile: Profile | None,
    msisdn: str,
    channel: str,
    events: Sequence[str],
    lang: str,
) -> ScriptOut:
    script = choose_script(offer, channel, profile.segment if profile else None, lang)
    if script is None:  # the catalog check guarantees one per channel; stay safe anyway
        return ScriptOut(lang=lang, pitch=offer.name)
    context = _context(catalog, offer, profile, msisdn, channel, events, script.lang)
    return ScriptOut(
        lang=script.lang,
        pitch=render(script.pitch, context),
        opening=render(script.opening, context) if script.opening else "",
        objections=[
            ObjectionOut(objection=render(o.objection, context), answer=render(o.answer, context))
            for o in script.objections
        ],
        closing=render(script.closing, context) if script.closing else "",
    )


def _context(
    catalog: Catalog,
    offer: Offer,
    profile: Profile | None,
    msisdn: str,
    channel: str,
    events: Sequence[str],
    lang: str,
) -> dict[str, Any]:
    zh = lang == "zh"
    brand = catalog.brand(profile.brand) if profile else None
    segment = catalog.segment(profile.segment) if profile else None
    return {
        "customer": {
            "masked": mask(msisdn),
            "brand": ((brand.name_zh or brand.name) if zh else brand.name) if brand else "",
            "region": profile.region if profile else "",
            "known": profile is not None,
            "arpu": profile.arpu if profile else 0.0,
        },
        "segment": {
            "code": segment.code if segment else "",
            "name": ((segment.name_zh or segment.name) if zh else segment.name) if segment else "",
            "selling_point": (
                (segment.selling_point_zh or segment.selling_point) if zh else segment.selling_point
            )
            if segment
            else "",
        },
        "offer": {
            "id": offer.id,
            "name": (offer.name_zh or offer.name) if zh else offer.name,
            # 5 reads better than 5.0 in a sentence a clerk says aloud.
            "price": int(offer.price) if offer.price.is_integer() else offer.price,
            "service": offer.service,
        },
        "stage": profile.stage(offer.service) if profile else "none",
        "events": list(events),
        "channel": channel,
    }
