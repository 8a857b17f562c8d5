"""Choose and render the talk script for one offer, customer, channel and language.

Every shown offer's script is rendered on every decision, and a Jinja2 render costs several
microseconds, so each template's text is kept per offer and script, keyed by the context
values that template reads (talk.inputs): most pitches read only the offer's name and price
and are rendered once. The masked number differs per customer: a template that only writes it
out as is keeps the text around it (talk.render_split); one that reads it any other way is
rendered every time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from nextbest.catalog import Catalog, Offer, Script
from nextbest.msisdn import mask
from nextbest.records import Profile
from nextbest.talk import MASKED, inputs, render, render_split
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
    form = catalog.derived("scripts", _Form)
    if type(msisdn) is not str:
        return _render_afresh(catalog, offer, profile, msisdn, channel, events, lang)
    key = (id(offer), channel, profile.segment if profile else None, lang)
    try:
        seen = form.chosen.get(key)
    except TypeError:  # an unhashable value where a code belongs: no memo can hold it
        return _render_afresh(catalog, offer, profile, msisdn, channel, events, lang)
    if seen is None:
        # By identity: a live object that has a catalog offer's id is that offer.
        scripts = form.offers.get(id(offer))
        if scripts is None:  # not the catalog's own offer object: nothing kept for it
            return _render_afresh(catalog, offer, profile, msisdn, channel, events, lang)
        seen = form.choose(key, scripts)
    script = seen[0]
    if script is None:  # the catalog check guarantees one per channel; stay safe anyway
        return ScriptOut(lang=lang, pitch=offer.name)
    reads = _reads(script.needs, offer, profile, channel, events) if script.needs else ()
    entry: _Entry | None = None
    if reads is not None:
        try:
            entry = script.memo.get(reads)
        except TypeError:  # an unhashable value (never from the warehouse)
            reads = None
    if entry is not None and entry[0] is not None:  # texts that depend on nothing but ``reads``
        pitch, opening, pairs, closing = entry[0]
    else:
        call = _Call(catalog, offer, profile, msisdn, channel, events, script.lang)
        if entry is None:
            entry, (pitch, opening, pairs, closing) = script.render(call)
            if reads is not None:
                if len(script.memo) >= _MEMO_LIMIT:
                    script.memo.clear()
                script.memo[reads] = entry
        else:
            pitch, opening, pairs, closing = script.finish(entry[1], call)
    return ScriptOut(
        lang=script.lang,
        pitch=pitch,
        opening=opening,
        objections=[ObjectionOut(objection=o, answer=a) for o, a in pairs] if pairs else [],
        closing=closing,
    )


def _render_afresh(
    catalog: Catalog,
    offer: Offer,
    profile: Profile | None,
    msisdn: str,
    channel: str,
    events: Sequence[str],
    lang: str,
) -> ScriptOut:
    """Every text rendered now (an offer that is not the catalog's own, or odd inputs)."""
    script = choose_script(offer, channel, profile.segment if profile else None, lang)
    if script is None:
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


# What a script's memo key may draw on besides the offer and the script's language (fixed per
# memo), in this order.
_BRAND, _REGION, _KNOWN, _ARPU, _SEGMENT, _STAGE, _EVENTS, _CHANNEL = range(8)
_BY_FIELD = {
    "customer.brand": _BRAND,  # the display name follows from the brand code
    "customer.region": _REGION,
    "customer.known": _KNOWN,
    "customer.arpu": _ARPU,
    "segment.code": _SEGMENT,  # the segment's fields follow from its code
    "segment.name": _SEGMENT,
    "segment.selling_point": _SEGMENT,
    "stage": _STAGE,
    "events": _EVENTS,
    "channel": _CHANNEL,
}
# Bound of each script's memo: its keys come from warehouse rows and requests.
_MEMO_LIMIT = 1024

# What a script's memo keeps of one template: its text; the pieces around the masked number
# (a tuple); or None, render it every time.
_Part = str | tuple[str, ...] | None
# (pitch, opening, objection pairs, closing): the texts, and what the memo keeps of them.
_Texts = tuple[str, str, tuple[tuple[str, str], ...], str]
_Kept = tuple[_Part, _Part, tuple[tuple[_Part, _Part], ...], _Part]
# A memo entry: the texts where every part was kept as text (the same for every customer with
# this key), else None; and the parts.
_Entry = tuple[_Texts | None, _Kept]


class _Text:
    """One template of one script of one offer, and how its text may be kept (talk.inputs):
    "fixed" reads only the offer, "keyed" also what the script's memo key holds, "split"
    the masked number as well (kept as the pieces around it), "render" anything else."""

    __slots__ = ("mode", "needs", "source")

    def __init__(self, source: str) -> None:
        found = inputs(source)
        self.source = source
        self.needs = {_BY_FIELD[field] for field in found.fields if field in _BY_FIELD}
        if not found.cacheable or (MASKED in found.fields and not found.masked_as_is):
            self.mode = "render"
        elif MASKED in found.fields:
            self.mode = "split"
        else:
            self.mode = "keyed" if self.needs else "fixed"

    def render(self, call: _Call) -> tuple[str, _Part]:
        """This call's text, and what the memo may keep of it."""
        if self.mode == "render":
            return render(self.source, call.context()), None
        if self.mode == "split":
            return render_split(self.source, call.context())
        text = render(self.source, call.context())
        return text, text

    def finish(self, part: _Part, call: _Call) -> str:
        """This call's text from what the memo kept."""
        if type(part) is str:
            return part
        if part is None:
            return render(self.source, call.context())
        return call.masked().join(part).strip()


class _Script:
    """A script's templates and the texts they rendered, keyed by what they read (``needs``)."""

    __slots__ = ("closing", "lang", "memo", "needs", "objections", "opening", "pitch")

    def __init__(self, script: Script) -> None:
        self.lang = script.lang
        self.pitch = _Text(script.pitch)
        self.opening = _Text(script.opening) if script.opening else None
        self.objections = tuple((_Text(o.objection), _Text(o.answer)) for o in script.objections)
        self.closing = _Text(script.closing) if script.closing else None
        texts = [self.pitch, *(t for pair in self.objections for t in pair)]
        texts += [t for t in (self.opening, self.closing) if t is not None]
        self.needs = tuple(sorted({n for t in texts if t.mode != "render" for n in t.needs}))
        self.memo: dict[tuple[object, ...], _Entry] = {}

    def render(self, call: _Call) -> tuple[_Entry, _Texts]:
        """Every text, in the order they were always rendered (the first failing one is the
        error raised), and what the memo keeps of them."""
        pitch, kept_pitch = self.pitch.render(call)
        opening, kept_opening = self.opening.render(call) if self.opening else ("", "")
        pairs: list[tuple[str, str]] = []
        kept_pairs: list[tuple[_Part, _Part]] = []
        for objection, answer in self.objections:
            (o, kept_o), (a, kept_a) = objection.render(call), answer.render(call)
            pairs.append((o, a))
            kept_pairs.append((kept_o, kept_a))
        closing, kept_closing = self.closing.render(call) if self.closing else ("", "")
        parts = [kept_pitch, kept_opening, kept_closing, *(p for pair in kept_pairs for p in pair)]
        texts = (pitch, opening, tuple(pairs), closing)
        kept = (kept_pitch, kept_opening, tuple(kept_pairs), kept_closing)
        return (texts if all(type(part) is str for part in parts) else None, kept), texts

    def finish(self, kept: _Kept, call: _Call) -> _Texts:
        """This call's texts from what the memo kept (some parts still to render or splice)."""
        kept_pitch, kept_opening, kept_pairs, kept_closing = kept
        pitch = self.pitch.finish(kept_pitch, call)
        opening = self.opening.finish(kept_opening, call) if self.opening else ""
        pairs = tuple(
            (objection.finish(kept_o, call), answer.finish(kept_a, call))
            for (objection, answer), (kept_o, kept_a) in zip(
                self.objections, kept_pairs, strict=True
            )
        )
        closing = self.closing.finish(kept_closing, call) if self.closing else ""
        return pitch, opening, pairs, closing


class _OfferScripts:
    """One offer's scripts, each compiled once (by the identity of the catalog's Script)."""

    __slots__ = ("compiled", "offer")

    def __init__(self, offer: Offer) -> None:
        self.offer = offer
        self.compiled: dict[int, _Script] = {}


class _Form:
    """The scripts of one catalog (Catalog.derived), per offer, keyed by the offer's identity:
    the offers the ranking hands over are the catalog's own objects."""

    def __init__(self, catalog: Catalog) -> None:
        self.offers = {id(offer): _OfferScripts(offer) for offer in catalog.offers}
        # (offer identity, channel, segment, language) -> (its script, or None where none fits,)
        self.chosen: dict[tuple[int, str, str | None, str], tuple[_Script | None]] = {}

    def choose(
        self, key: tuple[int, str, str | None, str], scripts: _OfferScripts
    ) -> tuple[_Script | None]:
        _, channel, segment, lang = key
        script = choose_script(scripts.offer, channel, segment, lang)
        found = None
        if script is not None:
            found = scripts.compiled.get(id(script))
            if found is None:
                found = scripts.compiled[id(script)] = _Script(script)
        if len(self.chosen) >= _MEMO_LIMIT * 4:
            self.chosen.clear()
        seen = self.chosen[key] = (found,)
        return seen


class _Call:
    """One render_script call that has to render a text: its full context, built once."""

    __slots__ = (
        "_context",
        "_masked",
        "catalog",
        "channel",
        "events",
        "lang",
        "msisdn",
        "offer",
        "profile",
    )

    def __init__(
        self,
        catalog: Catalog,
        offer: Offer,
        profile: Profile | None,
        msisdn: str,
        channel: str,
        events: Sequence[str],
        lang: str,
    ) -> None:
        self.catalog = catalog
        self.offer = offer
        self.profile = profile
        self.msisdn = msisdn
        self.channel = channel
        self.events = events
        self.lang = lang
        self._context: dict[str, Any] | None = None
        self._masked: str | None = None

    def context(self) -> dict[str, Any]:
        if self._context is None:
            self._context = _context(
                self.catalog,
                self.offer,
                self.profile,
                self.msisdn,
                self.channel,
                self.events,
                self.lang,
            )
        return self._context

    def masked(self) -> str:
        if self._masked is None:
            self._masked = mask(self.msisdn)
        return self._masked


def _reads(
    needs: tuple[int, ...],
    offer: Offer,
    profile: Profile | None,
    channel: str,
    events: Sequence[str],
) -> tuple[object, ...] | None:
    """The script's memo key: what its templates read, as _context would show it (None: a
    value no key can stand for, so render). Codes stand for what the catalog shows for them;
    values written out as they are count with their type where it is not a plain string (1
    and 1.0 are one key but two texts)."""
    key: list[object] = []
    for need in needs:
        if need == _BRAND:
            key.append(profile.brand if profile else None)
        elif need == _REGION:
            key.append(_plain(profile.region if profile else ""))
        elif need == _KNOWN:
            key.append(profile is not None)
        elif need == _ARPU:
            arpu = profile.arpu if profile else 0.0
            key.append((type(arpu), repr(arpu)))  # 0.0 and -0.0 print differently
        elif need == _SEGMENT:
            key.append(profile.segment if profile else None)
        elif need == _STAGE:
            key.append(_plain(profile.stage(offer.service) if profile else "none"))
        elif need == _EVENTS:
            seen = tuple(events)
            if not all(type(event) is str for event in seen):
                return None
            key.append(seen)
        else:
            key.append(_plain(channel))
    return tuple(key)


def _plain(value: object) -> object:
    return value if type(value) is str else (type(value), repr(value))


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
