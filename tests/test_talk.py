"""Talk scripts: the most specific script is chosen (nextbest.pitch), rendered with plain data,
and the sandbox (nextbest.talk) refuses what a marketer's template must not do."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from conftest import profile

from nextbest.catalog import Catalog, Objection, Offer, Script
from nextbest.pitch import choose_script, render_script
from nextbest.talk import (
    SAMPLE_CONTEXT,
    TemplateProblem,
    check_template,
    inputs,
    render,
    render_split,
)

MSISDN = "13812345678"


def offer(catalog: Catalog, offer_id: str) -> Offer:
    found = catalog.offer(offer_id)
    assert found is not None
    return found


def with_scripts(catalog: Catalog, offer_id: str, *scripts: Script, **changes: Any) -> Catalog:
    offers = tuple(
        msgspec.structs.replace(o, scripts=scripts or o.scripts, **changes)
        if o.id == offer_id
        else o
        for o in catalog.offers
    )
    return msgspec.structs.replace(catalog, offers=offers)


# --- choosing --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("channel", "segment", "lang", "index"),
    [
        # crbt_open: [0] store+inbound en, [1] store+inbound zh, [2] store fashion en, [3] outbound
        ("store", "fashionable_high_end", "en", 2),  # segment and language match
        ("store", "careful_calculator", "en", 0),  # not for this segment: the generic one
        ("store", None, "en", 0),  # unknown customer: no segment script
        ("store", "fashionable_high_end", "zh", 1),  # the language beats the segment
        ("store", "careful_calculator", "zh", 1),
        ("inbound", "fashionable_high_end", "en", 0),  # the segment script is store-only
        ("inbound", "fashionable_high_end", "zh", 1),
        ("outbound", "fashionable_high_end", "en", 3),
        ("outbound", "fashionable_high_end", "zh", 3),  # only script there: English it is
    ],
)
def test_choose_script_most_specific(
    catalog: Catalog, channel: str, segment: str | None, lang: str, index: int
) -> None:
    crbt_open = offer(catalog, "crbt_open")
    assert choose_script(crbt_open, channel, segment, lang) is crbt_open.scripts[index]


def test_choose_script_segment_and_language_beat_either(catalog: Catalog) -> None:
    generic_en = Script(channels=("store",), pitch="en")
    generic_zh = Script(channels=("store",), pitch="zh", lang="zh")
    seg_en = Script(channels=("store",), segments=("careful_calculator",), pitch="seg en")
    seg_zh = Script(
        channels=("store",), segments=("careful_calculator",), pitch="seg zh", lang="zh"
    )
    scripts = (generic_en, seg_zh, generic_zh, seg_en)
    variant = msgspec.structs.replace(offer(catalog, "weather"), scripts=scripts)
    assert choose_script(variant, "store", "careful_calculator", "zh") is seg_zh
    assert choose_script(variant, "store", "careful_calculator", "en") is seg_en
    assert choose_script(variant, "store", "fashionable_high_end", "zh") is generic_zh
    assert choose_script(variant, "store", "fashionable_high_end", "en") is generic_en
    # Without a script in the language, the segment's one is the most specific.
    english_only = msgspec.structs.replace(variant, scripts=(generic_en, seg_en))
    assert choose_script(english_only, "store", "careful_calculator", "zh") is seg_en


def test_choose_script_first_of_equals_wins(catalog: Catalog) -> None:
    first = Script(channels=("store",), pitch="first")
    second = Script(channels=("store", "inbound"), pitch="second")
    variant = msgspec.structs.replace(offer(catalog, "weather"), scripts=(first, second))
    assert choose_script(variant, "store", None, "en") is first
    assert choose_script(variant, "inbound", None, "en") is second


def test_choose_script_none_for_a_channel_without_script(catalog: Catalog) -> None:
    assert (
        choose_script(offer(catalog, "mms_pkg"), "outbound", "fashionable_high_end", "en") is None
    )
    only_for_others = msgspec.structs.replace(
        offer(catalog, "weather"),
        scripts=(Script(channels=("store",), segments=("tight_fisted",), pitch="x"),),
    )
    assert choose_script(only_for_others, "store", "careful_calculator", "en") is None


# --- rendering ------------------------------------------------------------------------------


def test_render_masked_number_and_whole_price(catalog: Catalog) -> None:
    who = profile(segment="careful_calculator")
    script = render_script(catalog, offer(catalog, "crbt_open"), who, MSISDN, "store", [], "en")
    assert script.lang == "en"
    # price = 5 in the catalog is read as 5.0; a clerk says "5 yuan".
    assert offer(catalog, "crbt_open").price == 5.0
    assert script.pitch == "138****5678: ring-back tone for 5 yuan, two songs free."
    assert MSISDN not in script.pitch


def test_render_fractional_price(catalog: Catalog) -> None:
    variant = with_scripts(catalog, "weather", price=2.5)
    script = render_script(variant, offer(variant, "weather"), profile(), MSISDN, "store", [], "en")
    assert script.pitch == "Weather every morning for 2.5 yuan."


def test_render_chinese_script(catalog: Catalog) -> None:
    script = render_script(
        catalog, offer(catalog, "crbt_open"), profile(), MSISDN, "store", [], "zh"
    )
    assert script.lang == "zh"
    assert script.pitch == "138****5678:彩铃每月5元,送两首。"


def test_render_segment_selling_point(catalog: Catalog) -> None:
    script = render_script(
        catalog, offer(catalog, "crbt_open"), profile(), MSISDN, "store", [], "en"
    )
    assert script.pitch == "The newest tones first: new, first, exclusive."


def test_render_uses_chinese_names_in_a_chinese_script(catalog: Catalog) -> None:
    zh = Script(
        channels=("store",),
        lang="zh",
        pitch=(
            "{{ customer.brand }}{{ segment.name }}客户:{{ offer.name }},"
            "{{ segment.selling_point }}"
        ),
    )
    en = Script(
        channels=("store",),
        pitch=(
            "{{ customer.brand }} {{ segment.name }}: {{ offer.name }}, {{ segment.selling_point }}"
        ),
    )
    variant = with_scripts(catalog, "crbt_open", en, zh)
    crbt_open = offer(variant, "crbt_open")
    zh_script = render_script(variant, crbt_open, profile(), MSISDN, "store", [], "zh")
    # No selling_point_zh in the catalog: the English one stands in.
    assert zh_script.pitch == "全球通时尚中高端客户:彩铃开通送两首,new, first, exclusive"
    en_script = render_script(variant, crbt_open, profile(), MSISDN, "store", [], "en")
    assert en_script.pitch == (
        "GoTone Fashionable high-end: Ring-back tone, two songs free, new, first, exclusive"
    )


def test_render_events_stage_and_channel(catalog: Catalog) -> None:
    mms = offer(catalog, "mms_pkg")
    plain = render_script(catalog, mms, profile(), MSISDN, "store", [], "en")
    hot = render_script(catalog, mms, profile(), MSISDN, "store", ["handset_mms"], "en")
    assert plain.pitch == "MMS for 5 yuan."
    assert hot.pitch == "Your new phone sends pictures: MMS for 5 yuan."

    probe = Script(
        channels=("store",),
        pitch="{{ stage }}/{{ channel }}/{{ customer.known }}/{{ events|length }}",
    )
    variant = with_scripts(catalog, "crbt_open", probe)
    crbt_open = offer(variant, "crbt_open")
    assert render_script(
        variant, crbt_open, profile(), MSISDN, "store", ["a", "b"], "en"
    ).pitch == ("potential/store/True/2")
    assert render_script(variant, crbt_open, None, MSISDN, "store", [], "en").pitch == (
        "none/store/False/0"
    )


def test_render_outbound_script_parts(catalog: Catalog) -> None:
    script = render_script(
        catalog, offer(catalog, "crbt_open"), profile(), MSISDN, "outbound", [], "en"
    )
    assert script.opening == "Hello, this is your operator calling about your ring-back tone."
    assert script.pitch == "Ring-back tone, two songs free for 5 yuan."
    assert [(o.objection, o.answer) for o in script.objections] == [
        ("Too expensive", "The first month is free.")
    ]
    assert script.closing == "Shall I open it for you now?"


def test_render_objections_are_templates_too(catalog: Catalog) -> None:
    outbound = Script(
        channels=("outbound",),
        opening="Hi {{ customer.masked }}",
        pitch="p",
        objections=(Objection(objection="{{ offer.price }} is a lot", answer="{{ offer.id }}"),),
        closing="Bye",
    )
    variant = with_scripts(catalog, "sms_50", outbound)
    script = render_script(
        variant, offer(variant, "sms_50"), profile(), MSISDN, "outbound", [], "en"
    )
    assert script.opening == "Hi 138****5678"
    assert [(o.objection, o.answer) for o in script.objections] == [("3 is a lot", "sms_50")]


def test_render_without_a_script_falls_back_to_the_name(catalog: Catalog) -> None:
    script = render_script(
        catalog, offer(catalog, "mms_pkg"), profile(), MSISDN, "outbound", [], "en"
    )
    assert (script.lang, script.pitch, script.opening) == ("en", "MMS package", "")


# --- the script cache (nextbest.pitch keeps rendered texts by what each template reads) -------

OTHER = "13987654321"


def _outbound_opening(catalog: Catalog, opening: str, **changes: Any) -> tuple[Catalog, Offer]:
    script = Script(channels=("outbound",), opening=opening, pitch="p", closing="Bye")
    variant = with_scripts(catalog, "sms_50", script, **changes)
    return variant, offer(variant, "sms_50")


def test_cached_opening_carries_each_customers_own_number(catalog: Catalog) -> None:
    opening = (
        "Hello, is that the owner of {{ customer.masked }}?"
        "{% if customer.brand %} A {{ customer.brand }} offer.{% endif %}"
    )
    variant, sms = _outbound_opening(catalog, opening)
    for _ in range(3):  # first renders, then served from the cache
        for number, expected in ((MSISDN, "138****5678"), (OTHER, "139****4321")):
            script = render_script(variant, sms, profile(), number, "outbound", [], "en")
            assert script.opening == f"Hello, is that the owner of {expected}? A GoTone offer."
        unknown = render_script(variant, sms, None, OTHER, "outbound", [], "en")
        assert unknown.opening == "Hello, is that the owner of 139****4321?"


@pytest.mark.parametrize(
    "opening",
    [
        "{{ customer.masked|replace('1', 'one') }}",  # filtered: rendered for each customer
        "{% set m = customer.masked %}{{ m }}",
        "{% filter upper %}{{ customer.masked }}{% endfilter %}",
        "{% if customer.masked.startswith('138') %}138{% endif %}{{ customer.masked }}",
        "{{ customer }}",
    ],
)
def test_a_number_read_any_other_way_is_rendered_per_customer(
    catalog: Catalog, opening: str
) -> None:
    variant, sms = _outbound_opening(catalog, opening)
    for _ in range(2):
        for number in (MSISDN, OTHER, "13811112222"):
            script = render_script(variant, sms, profile(), number, "outbound", [], "en")
            context = {**SAMPLE_CONTEXT, "customer": {**SAMPLE_CONTEXT["customer"]}}
            context["customer"]["masked"] = f"{number[:3]}****{number[-4:]}"
            if opening == "{{ customer }}":
                assert f"'masked': '{number[:3]}****{number[-4:]}'" in script.opening
            else:
                assert script.opening == render(opening, context)


def test_cached_texts_follow_stage_events_channel_and_segment(catalog: Catalog) -> None:
    probe = Script(
        channels=("store", "inbound", "outbound"),
        pitch=(
            "{% if stage == 'silent' %}quiet {% endif %}{{ stage }}"
            "|{% for e in events %}{{ e }};{% endfor %}|{{ channel }}|{{ segment.name }}"
        ),
        opening="o",
        closing="c",
    )
    variant = with_scripts(catalog, "crbt_open", probe)
    crbt_open = offer(variant, "crbt_open")
    for _ in range(2):
        for stage in ("silent", "potential", "churned"):
            for events in ([], ["handset_mms"], ["a", "b"]):
                for channel in ("store", "outbound"):
                    who = profile(lifecycle={"crbt": stage}, segment="careful_calculator")
                    script = render_script(variant, crbt_open, who, MSISDN, channel, events, "en")
                    quiet = "quiet " if stage == "silent" else ""
                    listed = "".join(f"{e};" for e in events)
                    assert script.pitch == (f"{quiet}{stage}|{listed}|{channel}|Careful calculator")
        assert render_script(variant, crbt_open, None, MSISDN, "store", [], "en").pitch == (
            "none||store|"
        )


def test_cached_texts_tell_numbers_of_other_types_apart(catalog: Catalog) -> None:
    probe = Script(channels=("store",), pitch="{{ customer.arpu }}/{{ customer.region }}")
    variant = with_scripts(catalog, "crbt_open", probe)
    crbt_open = offer(variant, "crbt_open")
    pitches = [
        render_script(variant, crbt_open, profile(arpu=arpu), MSISDN, "store", [], "en").pitch
        for arpu in (120.0, 120, 0.0, -0.0)
    ]
    assert pitches == ["120.0/Nanjing", "120/Nanjing", "0.0/Nanjing", "-0.0/Nanjing"]


def test_cached_opening_survives_text_that_looks_like_the_stand_in(catalog: Catalog) -> None:
    """render_split renders with two stand-ins for the number; text that happens to contain
    one must not be taken for the number."""
    stand_in = "\uf8f0" * 6
    for opening, region in (
        ("{{ customer.masked }}" + stand_in, "Nanjing"),
        ("{{ customer.masked }}|{{ customer.region }}", stand_in),
        ("{{ customer.masked }}|{{ customer.region }}", "\uf8f1" * 6),
    ):
        variant, sms = _outbound_opening(catalog, opening)
        for number in (MSISDN, OTHER, MSISDN):
            who = profile(region=region)
            script = render_script(variant, sms, who, number, "outbound", [], "en")
            masked = f"{number[:3]}****{number[-4:]}"
            assert script.opening == opening.replace("{{ customer.masked }}", masked).replace(
                "{{ customer.region }}", region
            )


def test_inputs_of_a_template() -> None:
    plain = inputs("{{ offer.name }} is {{ offer.price }} yuan")
    assert plain.fields == {"offer.name", "offer.price"}
    assert plain.cacheable
    opening = inputs("Hi {{ customer.masked }}{% if customer.brand %}!{% endif %}")
    assert opening.fields == {"customer.masked", "customer.brand"}
    assert opening.masked_as_is
    assert inputs("{{ customer['masked'] }}").masked_as_is
    for source in (
        "{{ customer.masked|upper }}",
        "{% for e in events recursive %}{{ customer.masked }}{% endfor %}",
        "{% macro m() %}{{ customer.masked }}{% endmacro %}{{ m() }}",
        "{{ customer }}",
    ):
        found = inputs(source)
        assert "customer.masked" in found.fields
        assert not found.masked_as_is, source
    whole = inputs("{{ customer.items()|list }}")  # a method of the table, not a field
    assert whole.fields == {f"customer.{key}" for key in SAMPLE_CONTEXT["customer"]}
    assert inputs("{{ 'x' in events }}{{ stage }}").fields == {"events", "stage"}
    assert not inputs("{{ events|random }}").cacheable  # a new draw each render
    assert not inputs("{{ offer.price ").cacheable  # broken: rendered, so it fails as ever


def test_render_split_pieces_rebuild_the_render() -> None:
    source = "  {{ customer.masked }}, {{ offer.name }}: {{ customer.masked }}  "
    text, pieces = render_split(source, SAMPLE_CONTEXT)
    assert text == render(source, SAMPLE_CONTEXT)
    assert pieces is not None
    assert "139****4321".join(pieces).strip() == "139****4321, Sample offer: 139****4321"
    # Filtered: the stand-ins pass through upper() unchanged, so only the syntax tree can tell.
    text, none = render_split("{{ customer.masked|upper }}", SAMPLE_CONTEXT)
    assert (text, none) == ("138****5678", None)


# --- the sandbox ------------------------------------------------------------------------------


def test_valid_templates_pass() -> None:
    for source in (
        "plain text",
        "{{ customer.masked }} {{ offer.name }} {{ offer.price }} {{ segment.selling_point }}",
        "{% if 'handset_mms' in events %}new phone{% endif %}",
        "{% for e in events %}{{ e|upper }}{% endfor %}",
        "{% if events %}{{ events[0] }}{% endif %}",
    ):
        check_template(source)  # raises on a problem


@pytest.mark.parametrize(
    "source",
    [
        "{{ offer.__class__ }}",
        "{{ ''.__class__.__mro__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ events.append('x') }}",  # the immutable sandbox: no mutating data
        "{{ customer.update(known=False) }}",
    ],
)
def test_sandbox_refuses_attribute_access(source: str) -> None:
    with pytest.raises(TemplateProblem, match=r"^refused by the sandbox: "):
        check_template(source)


@pytest.mark.parametrize(
    ("source", "name"),
    [
        ("{{ nobody }}", "'nobody' is undefined"),
        ("{{ range(3) }}", "'range' is undefined"),  # no globals
        ("{{ lipsum() }}", "'lipsum' is undefined"),
        ("{{ offer.discount }}", "has no attribute 'discount'"),
    ],
)
def test_undefined_names_are_refused_with_what_is_available(source: str, name: str) -> None:
    with pytest.raises(TemplateProblem) as problem:
        check_template(source)
    message = str(problem.value)
    assert name in message
    assert message.endswith("scripts may use channel, customer, events, offer, segment, stage")
    assert sorted(SAMPLE_CONTEXT) == ["channel", "customer", "events", "offer", "segment", "stage"]


@pytest.mark.parametrize(
    ("source", "line"),
    [
        ("{{ offer.price ", 1),
        ("{% if events %}never closed", 1),
        ("line one\n{{ offer.name }}\n{% endfor %}", 3),
    ],
)
def test_syntax_errors_name_the_template_line(source: str, line: int) -> None:
    with pytest.raises(TemplateProblem, match=rf"^syntax error on template line {line}: "):
        check_template(source)


def test_runtime_failures_are_problems() -> None:
    with pytest.raises(TemplateProblem, match=r"^fails to render: .*division by zero"):
        check_template("{{ offer.price / 0 }}")


def test_template_must_render_for_an_unknown_customer_without_events() -> None:
    # Renders with the sample (which has one event), fails for a request that carries none:
    # refused at load time instead of failing at the counter.
    with pytest.raises(TemplateProblem, match=r"unknown customer, no events"):
        check_template("{{ events[0] }}")
    with pytest.raises(TemplateProblem, match=r"^fails to render \(unknown customer, no events\)"):
        check_template("{{ 100 / customer.arpu }}")


def test_render_strips_and_does_not_escape() -> None:
    assert render("  <b>{{ offer.name }}</b> & co\n", SAMPLE_CONTEXT) == "<b>Sample offer</b> & co"
