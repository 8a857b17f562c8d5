"""The catalog (nextbest.catalog): the test catalog loads, and every mistake a marketer can make
is refused at load time with the file and the line to fix."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import TEST_CATALOG

from nextbest.catalog import (
    Catalog,
    CatalogError,
    ChannelPolicy,
    Offer,
    load_catalog,
    parse_catalog,
)

FILE = "marketing/catalog.toml"
BASE = TEST_CATALOG.read_text(encoding="utf-8")


def edit(old: str, new: str, text: str = BASE, count: int = 1) -> str:
    """The test catalog with one snippet changed (it must occur exactly ``count`` times)."""
    assert text.count(old) == count, old
    return text.replace(old, new, 1)


def line_of(text: str, needle: str, occurrence: int = 1) -> int:
    """1-based line of the ``occurrence``-th line that contains ``needle``."""
    hits = [n for n, line in enumerate(text.splitlines(), 1) if needle in line]
    assert len(hits) >= occurrence, needle
    return hits[occurrence - 1]


def header_before(text: str, line: int, header: str) -> int:
    """The line of the last ``header`` at or above ``line``."""
    lines = text.splitlines()
    for n in range(line, 0, -1):
        if lines[n - 1].strip() == header:
            return n
    raise AssertionError(header)


def refused(text: str) -> CatalogError:
    with pytest.raises(CatalogError) as problem:
        parse_catalog(text.encode("utf-8"), FILE)
    error = problem.value
    assert error.file == FILE
    where = f"{FILE}:{error.line}" if error.line else FILE
    assert str(error) == f"{where}: {error.message}"
    return error


# --- the test catalog ---------------------------------------------------------------------------


def test_test_catalog_loads(catalog: Catalog) -> None:
    assert catalog.version == "test-1"
    assert catalog.currency == "CNY"
    assert [o.id for o in catalog.offers] == [
        "crbt_open",
        "crbt_box",
        "crbt_annual",
        "sms_50",
        "sms_100",
        "mms_pkg",
        "club_vip",
        "weather",
        "alert",
        "old_promo",
    ]
    assert {s.code for s in catalog.segments} == {
        "fashionable_high_end",
        "careful_calculator",
        "tight_fisted",
    }
    # Values the rules rely on, as written in the file.
    assert catalog.policy.decline_cooldown_days == 30
    assert catalog.policy.cancel_block_days == 90
    assert catalog.policy.complaint_block_days == 180
    outbound = catalog.policy.for_channel("outbound")
    assert (outbound.max_offers, outbound.recontact_days) == (2, 60)
    assert outbound.counts_channels == ("outbound",)
    assert offer(catalog, "crbt_box").cooldown_days == 7
    assert offer(catalog, "crbt_open").lifecycle == ("potential", "none")


def offer(catalog: Catalog, offer_id: str) -> Offer:
    found = catalog.offer(offer_id)
    assert found is not None, offer_id
    return found


def test_lookups(catalog: Catalog) -> None:
    assert offer(catalog, "weather").general is True
    segment, brand = catalog.segment("tight_fisted"), catalog.brand("mzone")
    event, service = catalog.event("handset_mms"), catalog.service("crbt")
    assert segment is not None and segment.outbound is False
    assert brand is not None and brand.name_zh == "动感地带"
    assert event is not None and event.description_zh == "刚换了彩信手机"
    assert service is not None and service.name_zh == "彩铃"
    for lookup in (catalog.offer, catalog.segment, catalog.brand, catalog.event, catalog.service):
        assert lookup("nothing") is None


def test_defaults_fill_what_the_file_leaves_out(catalog: Catalog) -> None:
    sms_50 = offer(catalog, "sms_50")
    assert sms_50.channels == ("store", "inbound", "outbound")
    assert (sms_50.prior, sms_50.cooldown_days, sms_50.cancel_block_days) == (0.05, None, None)
    assert sms_50.category == "revenue"
    # A channel the policy does not list gets the defaults.
    assert catalog.policy.for_channel("sms") == ChannelPolicy()
    assert catalog.audit.retention_days == 90


def test_hash_is_of_the_bytes(catalog: Catalog) -> None:
    assert re.fullmatch(r"[0-9a-f]{16}", catalog.hash)
    assert parse_catalog(BASE.encode()).hash == catalog.hash
    changed = parse_catalog(edit('version = "test-1"', 'version = "test-2"').encode())
    assert changed.version == "test-2"
    assert changed.hash != catalog.hash


def test_the_demo_catalog_loads() -> None:
    demo = load_catalog(Path(__file__).parent.parent / "nextbest" / "data" / "catalog.toml")
    assert demo.offers


# --- refused, with file and line ----------------------------------------------------------------


def test_wrong_type() -> None:
    text = edit("price = 5\nvalue = 30", 'price = "x"\nvalue = 30')
    error = refused(text)
    assert error.line == line_of(text, 'price = "x"')
    assert error.message == "offers[0].price: Expected `float`, got `str`"


def test_wrong_type_in_a_later_offer_and_a_table() -> None:
    text = edit("price = 2\nvalue = 6", "price = 2\nvalue = [6]")
    assert refused(text).line == line_of(text, "value = [6]")

    text = edit("decline_cooldown_days = 30", 'decline_cooldown_days = "30"')
    error = refused(text)
    assert error.line == line_of(text, 'decline_cooldown_days = "30"')
    assert error.message.startswith("policy.decline_cooldown_days: Expected `int`")


def test_wrong_value_in_an_inline_array() -> None:
    text = edit('lifecycle = ["silent"]', 'lifecycle = ["sleeping"]')
    error = refused(text)
    assert error.line == line_of(text, 'lifecycle = ["sleeping"]')
    assert error.message == "offers[1].lifecycle[0]: Invalid enum value 'sleeping'"


def test_unknown_field_points_at_its_table() -> None:
    text = edit('id = "sms_100"\n', 'id = "sms_100"\ncolour = "red"\n')
    error = refused(text)
    assert "unknown field `colour`" in error.message
    assert error.message.startswith("offers[4]: ")
    assert error.line == header_before(text, line_of(text, "colour"), "[[offers]]")
    assert error.line == line_of(text, 'id = "sms_100"') - 1


def test_unknown_field_in_a_script_points_at_the_script() -> None:
    text = edit(
        'closing = "Shall I open it for you now?"', 'closing = "Shall I open it?"\ntone = 1'
    )
    error = refused(text)
    assert error.message.startswith("offers[0].scripts[3]: Object contains unknown field `tone`")
    assert error.line == header_before(text, line_of(text, "tone = 1"), "[[offers.scripts]]")


def test_unknown_field_at_the_top_level_points_at_the_key() -> None:
    text = edit('version = "test-1"', 'version = "test-1"\nflavour = "mint"')
    error = refused(text)
    assert error.message == "Object contains unknown field `flavour`"
    assert error.line == line_of(text, "flavour")


def test_missing_required_field() -> None:
    text = edit('name = "50 SMS bundle"\n', "")
    error = refused(text)
    assert error.message == "offers[3]: Object missing required field `name`"
    assert error.line == line_of(text, 'id = "sms_50"') - 1


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            'brands = ["gotone"]',
            'brands = ["easyown"]',
            "offers[6].brands: unknown brand 'easyown'",
        ),
        (
            'segments = ["fashionable_high_end"]\n\n[[offers.scripts]]\nchannels = ["store", '
            '"inbound", "outbound"]\nopening = "Hello."\npitch = "Members',
            'segments = ["nobody"]\n\n[[offers.scripts]]\nchannels = ["store", '
            '"inbound", "outbound"]\nopening = "Hello."\npitch = "Members',
            "offers[6].segments: unknown segment 'nobody'",
        ),
        (
            'service = "weather"',
            'service = "news"',
            "offers[7].service: unknown service 'news'",
        ),
        (
            'context_events = ["handset_mms"]',
            'context_events = ["airport"]',
            "offers[5].context_events: unknown event 'airport'",
        ),
        (
            'segments = ["fashionable_high_end"]\npitch = "The newest',
            'segments = ["no_such_segment"]\npitch = "The newest',
            "offers[0].scripts[2].segments: unknown segment 'no_such_segment'",
        ),
    ],
)
def test_unknown_references(old: str, new: str, message: str) -> None:
    text = edit(old, new)
    error = refused(text)
    assert error.message == message
    changed = next(line for line in new.splitlines() if line.strip() and line not in old)
    assert error.line == line_of(text, changed)


def test_duplicate_offer_id() -> None:
    text = edit('id = "sms_100"', 'id = "sms_50"')
    error = refused(text)
    assert error.message == "offers[4]: duplicate offer id 'sms_50'"
    # The second one is the duplicate: its [[offers]] header.
    assert error.line == line_of(text, 'id = "sms_50"', occurrence=2) - 1


def test_duplicate_segment_code() -> None:
    text = edit('code = "tight_fisted"', 'code = "careful_calculator"')
    error = refused(text)
    assert error.message == "segments[2]: duplicate segment code 'careful_calculator'"
    assert error.line == line_of(text, 'code = "careful_calculator"', occurrence=2) - 1


def test_channel_without_a_script() -> None:
    text = edit(
        'requires = ["mms"]\nchannels = ["store", "inbound"]',
        'requires = ["mms"]\nchannels = ["store", "inbound", "outbound"]',
    )
    error = refused(text)
    assert error.message == "offers[5].scripts: no script for channel 'outbound'"
    # mms_pkg has no scripts table for it: its own header.
    assert error.line == line_of(text, 'id = "mms_pkg"') - 1


def test_outbound_script_needs_opening_and_closing() -> None:
    text = edit('opening = "Hello."\npitch = "50 messages', 'pitch = "50 messages')
    error = refused(text)
    assert (
        error.message == "offers[3].scripts[0]: an outbound script needs an opening and a closing"
    )
    assert error.line == header_before(text, line_of(text, "50 messages"), "[[offers.scripts]]")

    text = edit('pitch = "100 messages for 5 yuan."\nclosing = "Shall I?"', 'pitch = "100."')
    error = refused(text)
    assert error.message.startswith("offers[4].scripts[0]: an outbound script needs")


def test_broken_template() -> None:
    text = edit("Weather every morning for {{ offer.price }} yuan.", "Weather {{ offer.price ")
    error = refused(text)
    assert error.line == line_of(text, "Weather {{ offer.price ")
    assert error.message.startswith(
        "offers[7].scripts[0].pitch: template: syntax error on template line 1: "
    )


def test_template_refused_by_the_sandbox() -> None:
    text = edit("Members hear it first.", "{{ offer.__class__ }}")
    error = refused(text)
    assert error.line == line_of(text, "{{ offer.__class__ }}")
    assert "offers[6].scripts[0].pitch: template: refused by the sandbox" in error.message


def test_template_in_an_objection() -> None:
    text = edit('answer = "The first month is free."', 'answer = "{{ free }}"')
    error = refused(text)
    assert error.message.startswith(
        "offers[0].scripts[3].objections[0].answer: template: 'free' is undefined"
    )
    assert error.line == line_of(text, "{{ free }}")


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("price = 3\n", "price = = 3\n"),
        ('[[offers]]\nid = "sms_100"', '[[offers]\nid = "sms_100"'),
        ('name = "Mobile weather"\nservice', 'name = "Mobile weather\nservice'),
    ],
)
def test_invalid_toml(old: str, new: str) -> None:
    text = edit(old, new)
    error = refused(text)
    assert error.message.startswith("not valid TOML: ")
    broken = next(line for line in new.splitlines() if line not in old.splitlines())
    assert error.line == text.splitlines().index(broken) + 1


def test_invalid_utf8_is_refused_with_its_line() -> None:
    # Saved in GBK by a spreadsheet, say: a CatalogError like any other, not a crash.
    data = BASE.encode().replace("彩铃开通送两首".encode(), "彩铃开通送两首".encode("gbk"))
    with pytest.raises(CatalogError) as problem:
        parse_catalog(data, FILE)
    assert problem.value.message.startswith("not valid UTF-8: ")
    assert problem.value.line == line_of(BASE, 'name_zh = "彩铃开通送两首"')


def test_unreadable_file(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "catalog.toml"
    with pytest.raises(CatalogError) as problem:
        load_catalog(missing)
    assert problem.value.file == str(missing)
    assert problem.value.line is None
    assert str(problem.value) == f"{missing}: cannot read: No such file or directory"

    with pytest.raises(CatalogError, match=r": cannot read: Is a directory$"):
        load_catalog(tmp_path)


def test_load_catalog_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "catalog.toml"
    path.write_text(edit('service = "weather"', 'service = "news"'), encoding="utf-8")
    with pytest.raises(CatalogError) as problem:
        load_catalog(path)
    assert str(problem.value).startswith(f"{path}:{line_of(path.read_text(), 'news')}: ")
    path.write_text(BASE, encoding="utf-8")
    assert load_catalog(path).hash == parse_catalog(BASE.encode()).hash


def test_policy_channel_errors_point_at_their_table() -> None:
    text = edit("[policy.channels.inbound]", "[policy.channels.sms]")
    error = refused(text)
    assert error.message.startswith("policy.channels.sms: unknown channel")
    assert error.line == line_of(text, "[policy.channels.sms]")


def test_ranking_errors_point_at_their_key() -> None:
    text = edit("{ churn_risk = 1.5 }", "{ churn_risk = 1.5, dormant = 2.0 }")
    error = refused(text)
    assert error.message.startswith("ranking.stage_boost.dormant: unknown stage")
    assert error.line == line_of(text, "dormant = 2.0")


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('id = "weather"', 'id = "Weather!"', "offers[7].id: 'Weather!': use lower-case"),
        ("price = 2\n", "price = -2\n", "offers[7].price: price and value must not be negative"),
        ("prior = 0.08", "prior = 1.5", "offers[7].prior: must be within [0, 1]"),
        (
            "valid_to = 2020-03-31",
            "valid_from = 2020-04-01\nvalid_to = 2020-03-31",
            "offers[9].valid_to: ends before valid_from",
        ),
    ],
)
def test_value_checks(old: str, new: str, message: str) -> None:
    text = edit(old, new)
    error = refused(text)
    assert error.message.startswith(message)
    assert error.line == line_of(text, new.splitlines()[-1])


def test_several_problems_are_counted() -> None:
    text = edit('service = "weather"', 'service = "news"')
    text = edit('brands = ["gotone"]', 'brands = ["easyown"]', text)
    error = refused(text)
    # The first in catalog order, and how many more.
    assert error.message == "offers[6].brands: unknown brand 'easyown' (and 1 more problems)"


def test_multiline_strings_do_not_confuse_the_line() -> None:
    # A script text that looks like TOML must not shift the count of [[offers]] tables.
    text = edit('pitch = "Members hear it first."', 'pitch = """Members\n[[offers]]\nfirst."""')
    text = edit('service = "weather"', 'service = "news"', text)
    parse_error = refused(text)
    assert parse_error.message == "offers[7].service: unknown service 'news'"
    assert parse_error.line == line_of(text, 'service = "news"')


def test_history_window_covers_the_longest_rule(catalog: Catalog) -> None:
    # The test catalog's longest rule is the 180-day complaint block: history back 181 days.
    assert catalog.history_window() == timedelta(days=181)
    longer = parse_catalog(edit("cooldown_days = 7", "cooldown_days = 400").encode())
    assert longer.history_window() == timedelta(days=401)  # an offer's cooldown counts too
