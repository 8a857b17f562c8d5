"""The catalog: offers, talk scripts, segments, contact policy and ranking weights.

Marketing staff edit it as one TOML file. It is validated whole on load (types, references,
every script compiled and test-rendered in the sandbox), so a mistake is a load-time error
naming the file and line, never a 500 at the counter.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Literal, TypeVar

import msgspec

from nextbest.records import CHANNELS, STAGES, Channel, Stage
from nextbest.talk import TemplateProblem, check_template

__all__ = [
    "Audit",
    "Brand",
    "Catalog",
    "CatalogError",
    "ChannelPolicy",
    "ContextEvent",
    "Experiment",
    "Learning",
    "Objection",
    "Offer",
    "Policy",
    "Ranking",
    "Script",
    "Segment",
    "Service",
    "load_catalog",
    "parse_catalog",
]

_T = TypeVar("_T")


class CatalogError(ValueError):
    """The catalog cannot be used. ``str()`` reads ``file:line: what is wrong``."""

    def __init__(self, file: str, line: int | None, message: str) -> None:
        self.file = file
        self.line = line
        self.message = message
        where = f"{file}:{line}" if line else file
        super().__init__(f"{where}: {message}")


class _Strict(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    pass


class Brand(_Strict, frozen=True, kw_only=True):
    code: str
    name: str
    name_zh: str = ""


class Segment(_Strict, frozen=True, kw_only=True):
    code: str
    name: str
    name_zh: str = ""
    # What this persona responds to; shown to the clerk and available to scripts.
    selling_point: str = ""
    selling_point_zh: str = ""
    # Tight-fisted and low-potential personas are not worth an outbound call.
    outbound: bool = True


class ContextEvent(_Strict, frozen=True, kw_only=True):
    """A live event a decision request may carry (e.g. a new MMS-capable handset)."""

    code: str
    description: str
    description_zh: str = ""


class Objection(_Strict, frozen=True, kw_only=True):
    objection: str
    answer: str


class Script(_Strict, frozen=True, kw_only=True):
    """One talk script. The most specific script for (channel, segment) is used."""

    channels: tuple[Channel, ...]
    segments: tuple[str, ...] = ()  # empty: any segment
    pitch: str
    opening: str = ""
    objections: tuple[Objection, ...] = ()
    closing: str = ""
    lang: str = "en"


class Offer(_Strict, frozen=True, kw_only=True):
    id: str
    name: str
    name_zh: str = ""
    service: str
    category: Literal["revenue", "growth", "strategic"] = "revenue"
    price: float  # yuan per month (or per package)
    value: float  # expected value to the operator of one sale, yuan
    channels: tuple[Channel, ...] = ("store", "inbound", "outbound")
    brands: tuple[str, ...] = ()  # empty: every brand
    requires: tuple[str, ...] = ()  # handset capabilities
    lifecycle: tuple[Stage, ...] = ()  # the subscriber's stage in `service`; empty: any
    segments: tuple[str, ...] = ()  # empty: every segment
    # Mutually exclusive siblings (e.g. SMS bundle sizes): holding one blocks the others.
    # Empty: none. At most one offer per service is shown in any case.
    group: str = ""
    valid_from: date | None = None
    valid_to: date | None = None
    general: bool = False  # may be offered to a subscriber the warehouse does not know
    service_critical: bool = False  # may be offered to DND/complaint customers off outbound
    allow_arrears: bool = False
    context_events: tuple[str, ...] = ()  # events that make this offer more relevant now
    prior: float = 0.05  # acceptance estimate where the warehouse has no affinity
    cooldown_days: int | None = None  # after a decline; default policy.decline_cooldown_days
    cancel_block_days: int | None = None  # after a cancellation; default policy's
    scripts: tuple[Script, ...] = ()


class Service(_Strict, frozen=True, kw_only=True):
    """A service (ring-back tone, Fetion...) that offers sell and lifecycle stages describe."""

    code: str
    name: str
    name_zh: str = ""


class ChannelPolicy(_Strict, frozen=True, kw_only=True):
    max_offers: int = 3
    # No offer on this channel within N days of the last contact on this channel that reached
    # the customer (0: no such rule). Outbound: 60 days.
    recontact_days: int = 0
    # Contacts on these channels also count for recontact_days (e.g. other telemarketing).
    counts_channels: tuple[str, ...] = ()


# The rules of a channel a policy does not list (one object: read on every decision).
_ANY_CHANNEL = ChannelPolicy()


class Policy(_Strict, frozen=True, kw_only=True):
    decline_cooldown_days: int = 30
    cancel_block_days: int = 90
    # A complaint recorded by customer service excludes the customer for this long.
    complaint_block_days: int = 180
    channels: dict[str, ChannelPolicy] = {}

    def for_channel(self, channel: str) -> ChannelPolicy:
        found = self.channels.get(channel)
        return _ANY_CHANNEL if found is None else found


class Audit(_Strict, frozen=True, kw_only=True):
    """The commission audit's windows."""

    # A sale the warehouse still reports unbilled this long after it is flagged.
    billing_grace_days: int = 7
    # A complaint this soon after a sale flags the sale.
    complaint_window_days: int = 30
    # A sale counts as retained if not cancelled within this many days.
    retention_days: int = 90


class Ranking(_Strict, frozen=True, kw_only=True):
    """Weights of the expected-value ranking: score = p(accept) * value ** value_exponent."""

    # Multiplier for the channel's position in the subscriber's channel_pref (first, second...).
    channel_fit: tuple[float, ...] = (1.0, 0.85, 0.7)
    channel_fit_unlisted: float = 0.6
    # Multiplier when the request's context carries an event the offer lists.
    context_boost: float = 1.6
    # Multiplier per lifecycle stage of the offer's service (e.g. churn_risk: act now).
    stage_boost: dict[str, float] = {}
    value_exponent: float = 0.5
    # Offers whose acceptance estimate is below this are not worth the customer's time.
    min_probability: float = 0.02


class Experiment(_Strict, frozen=True, kw_only=True):
    """A control group that measures the ranking's lift (nextbest/experiments.py). Off unless
    ``control_share`` > 0; the assignment is stable per (number, name)."""

    name: str = ""
    # Share of customers who get the baseline instead of the ranked offers.
    control_share: float = 0.0
    # random: as many offers as the ranking would show, drawn at random from the eligible
    # ones; none: no offer at all.
    baseline: Literal["random", "none"] = "random"


class Learning(_Strict, frozen=True, kw_only=True):
    """Learning from outcomes recorded here (nextbest/learning.py)."""

    enabled: bool = True
    # How many presentations the warehouse's estimate is worth against observed outcomes.
    prior_strength: float = 50.0
    # Outcomes of the last N days count.
    window_days: int = 30
    # Presentations needed before the reason "accepted by N% of similar customers" is shown.
    min_presented: int = 30


class Catalog(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, dict=True):
    version: str
    currency: str = "CNY"
    brands: tuple[Brand, ...]
    segments: tuple[Segment, ...]
    services: tuple[Service, ...]
    events: tuple[ContextEvent, ...] = ()
    policy: Policy = Policy()
    ranking: Ranking = Ranking()
    audit: Audit = Audit()
    experiment: Experiment = Experiment()
    learning: Learning = Learning()
    offers: tuple[Offer, ...]
    # Filled by parse_catalog: sha256 of the file's bytes.
    hash: str = ""

    def __post_init__(self) -> None:
        # The lookup indexes live in the instance __dict__, built once per loaded catalog.
        self._offers = {o.id: o for o in self.offers}
        self._segments = {s.code: s for s in self.segments}
        self._brands = {b.code: b for b in self.brands}
        self._events = {e.code: e for e in self.events}
        self._services = {s.code: s for s in self.services}
        self._history_window = _history_window(self)
        # What the decision core precomputes from this catalog (see derived()).
        self._derived: dict[str, Any] = {}

    def derived(self, key: str, build: Callable[[Catalog], _T]) -> _T:
        """``build(self)``, computed once per loaded catalog: the decision core keeps its
        per-catalog forms (rules per offer, prebuilt reasons, script caches) here, so every
        decision reuses them. A catalog does not change once parsed; a replaced one
        (``msgspec.structs.replace``) runs ``__post_init__`` and starts afresh."""
        found: _T | None = self._derived.get(key)
        if found is None:
            found = self._derived[key] = build(self)
        return found

    def history_window(self) -> timedelta:
        """How far back recorded outcomes can still matter to any rule of this catalog
        (computed once per loaded catalog: every decision reads its history this far back)."""
        return self._history_window

    def offer(self, offer_id: str) -> Offer | None:
        return self._offers.get(offer_id)

    def segment(self, code: str) -> Segment | None:
        return self._segments.get(code)

    def brand(self, code: str) -> Brand | None:
        return self._brands.get(code)

    def event(self, code: str) -> ContextEvent | None:
        return self._events.get(code)

    def service(self, code: str) -> Service | None:
        return self._services.get(code)


def _history_window(catalog: Catalog) -> timedelta:
    policy = catalog.policy
    days = [policy.decline_cooldown_days, policy.cancel_block_days, policy.complaint_block_days]
    days += [c.recontact_days for c in policy.channels.values()]
    days += [o.cooldown_days or 0 for o in catalog.offers]
    days += [o.cancel_block_days or 0 for o in catalog.offers]
    return timedelta(days=max(days) + 1)


def load_catalog(path: str | Path) -> Catalog:
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CatalogError(str(path), None, f"cannot read: {exc.strerror}") from None
    return parse_catalog(data, str(path))


def parse_catalog(data: bytes, file: str = "catalog.toml") -> Catalog:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:  # msgspec would raise it as is, not as a DecodeError
        bad_line = data.count(b"\n", 0, exc.start) + 1
        raise CatalogError(file, bad_line, f"not valid UTF-8: {exc.reason}") from None
    try:
        catalog = msgspec.toml.decode(data, type=Catalog)
    except msgspec.ValidationError as exc:
        message = str(exc)
        match = re.search(r" - at `\$(.*)`$", message)
        path = match.group(1) if match else ""
        what = message[: match.start()] if match else message
        if not path:  # at the top level: no table to point at, point at the key if it is one
            field = re.search(r"unknown field `([^`]+)`", what)
            line = _locate(text, f".{field.group(1)}") if field else _locate(text, "")
            raise CatalogError(file, line, what) from None
        raise CatalogError(file, _locate(text, path), f"{path.lstrip('.')}: {what}") from None
    except msgspec.DecodeError as exc:
        message = str(exc)
        line_match = re.search(r"line (\d+)", message)
        raise CatalogError(
            file, int(line_match.group(1)) if line_match else None, f"not valid TOML: {message}"
        ) from None
    catalog = msgspec.structs.replace(catalog, hash=hashlib.sha256(data).hexdigest()[:16])
    problems = _check(catalog)
    if problems:
        path, message = problems[0]
        extra = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        raise CatalogError(file, _locate(text, path), f"{path.lstrip('.')}: {message}{extra}")
    return catalog


def _check(catalog: Catalog) -> list[tuple[str, str]]:
    """Cross-references and scripts; returns (path, message) pairs, first problem first."""
    problems: list[tuple[str, str]] = []
    brands = {b.code for b in catalog.brands}
    segments = {s.code for s in catalog.segments}
    events = {e.code for e in catalog.events}
    _dupes(problems, ".brands", [b.code for b in catalog.brands], "brand code")
    _dupes(problems, ".segments", [s.code for s in catalog.segments], "segment code")
    services = {s.code for s in catalog.services}
    _dupes(problems, ".services", [s.code for s in catalog.services], "service code")
    _dupes(problems, ".events", [e.code for e in catalog.events], "event code")
    _dupes(problems, ".offers", [o.id for o in catalog.offers], "offer id")
    for channel in catalog.policy.channels:
        if channel not in CHANNELS:
            problems.append(
                (f".policy.channels.{channel}", f"unknown channel; expected one of {CHANNELS}")
            )
    for key in catalog.ranking.stage_boost:
        if key not in STAGES:
            problems.append((f".ranking.stage_boost.{key}", f"unknown stage; expected {STAGES}"))
    experiment = catalog.experiment
    if not 0.0 <= experiment.control_share <= 1.0:
        problems.append((".experiment.control_share", "must be within [0, 1]"))
    if experiment.control_share > 0 and not experiment.name:
        problems.append((".experiment.name", "an experiment with a control share needs a name"))
    if catalog.learning.prior_strength <= 0:
        problems.append((".learning.prior_strength", "must be positive"))
    if catalog.learning.window_days < 1:
        problems.append((".learning.window_days", "must be at least 1"))
    for i, offer in enumerate(catalog.offers):
        where = f".offers[{i}]"
        if not re.fullmatch(r"[a-z0-9][a-z0-9_\-]*", offer.id):
            problems.append((f"{where}.id", f"{offer.id!r}: use lower-case letters, digits, _ -"))
        if offer.price < 0 or offer.value < 0:
            problems.append((f"{where}.price", "price and value must not be negative"))
        if not 0.0 <= offer.prior <= 1.0:
            problems.append((f"{where}.prior", "must be within [0, 1]"))
        if offer.valid_from and offer.valid_to and offer.valid_from > offer.valid_to:
            problems.append((f"{where}.valid_to", "ends before valid_from"))
        if offer.service not in services:
            problems.append((f"{where}.service", f"unknown service {offer.service!r}"))
        for brand in offer.brands:
            if brand not in brands:
                problems.append((f"{where}.brands", f"unknown brand {brand!r}"))
        for seg in offer.segments:
            if seg not in segments:
                problems.append((f"{where}.segments", f"unknown segment {seg!r}"))
        for event in offer.context_events:
            if event not in events:
                problems.append((f"{where}.context_events", f"unknown event {event!r}"))
        if not offer.channels:
            problems.append((f"{where}.channels", "an offer needs at least one channel"))
        for channel in offer.channels:
            if not any(channel in s.channels for s in offer.scripts):
                problems.append((f"{where}.scripts", f"no script for channel {channel!r}"))
        for j, script in enumerate(offer.scripts):
            swhere = f"{where}.scripts[{j}]"
            for seg in script.segments:
                if seg not in segments:
                    problems.append((f"{swhere}.segments", f"unknown segment {seg!r}"))
            if "outbound" in script.channels and not (script.opening and script.closing):
                problems.append((swhere, "an outbound script needs an opening and a closing"))
            texts = [("pitch", script.pitch), ("opening", script.opening)]
            texts += [("closing", script.closing)]
            for k, obj in enumerate(script.objections):
                texts += [(f"objections[{k}].objection", obj.objection)]
                texts += [(f"objections[{k}].answer", obj.answer)]
            for name, source in texts:
                if not source:
                    continue
                try:
                    check_template(source)
                except TemplateProblem as exc:
                    problems.append((f"{swhere}.{name}", f"template: {exc}"))
    return problems


def _dupes(problems: list[tuple[str, str]], where: str, codes: list[str], what: str) -> None:
    seen: set[str] = set()
    for i, code in enumerate(codes):
        if code in seen:
            problems.append((f"{where}[{i}]", f"duplicate {what} {code!r}"))
        seen.add(code)


_HEADER = re.compile(r"\s*(\[\[?)\s*([\w\-.\"' ]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"\s*([\w\-.\"' ]+?)\s*=")


def _locate(text: str, path: str) -> int | None:
    """Best line for a msgspec path such as ``.offers[3].scripts[1].pitch`` in TOML text.

    Follows the table headers (``[policy.channels.store]``; ``[[offers]]`` and
    ``[[offers.scripts]]`` counted per parent) and the keys within each table, and returns the
    line of the longest of them that the path starts with: the key's line where the key is on a
    line of its own, else the line of the table that holds it.
    """
    lines = text.splitlines()
    if not lines:
        return None
    want = path.lstrip(".")
    best_line, best_len = 1, -1
    table = ""
    arrays: dict[str, int] = {}  # an array of tables (parents' indices resolved) -> last index
    in_string = False
    for n, line in enumerate(lines, 1):
        odd_quotes = (line.count('"""') + line.count("'''")) % 2 == 1
        if in_string:  # the lines of a multi-line string are neither keys nor headers
            in_string = not odd_quotes
            continue
        in_string = odd_quotes
        candidate: str | None = None
        if header := _HEADER.match(line):
            parts = [part.strip().strip("\"'") for part in header.group(2).split(".")]
            resolved = ""
            for k, part in enumerate(parts):
                resolved = f"{resolved}.{part}" if resolved else part
                if header.group(1) == "[[" and k == len(parts) - 1:
                    arrays[resolved] = arrays.get(resolved, -1) + 1
                    resolved += f"[{arrays[resolved]}]"
                elif resolved in arrays:
                    resolved += f"[{arrays[resolved]}]"
            table = candidate = resolved
        elif key := _KEY.match(line):
            name = ".".join(part.strip().strip("\"'") for part in key.group(1).split("."))
            candidate = f"{table}.{name}" if table else name
        if candidate is None or len(candidate) <= best_len:
            continue
        if want == candidate or want.startswith((candidate + ".", candidate + "[")):
            best_line, best_len = n, len(candidate)
    return best_line
