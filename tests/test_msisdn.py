"""Subscriber numbers (nextbest.msisdn): what a clerk types or scans becomes the 11-digit
national number, anything else is refused; screens show it masked."""

from __future__ import annotations

import pytest

from nextbest.msisdn import InvalidMsisdn, mask, normalize


@pytest.mark.parametrize(
    "raw",
    [
        "13812345678",
        "+8613812345678",
        "008613812345678",
        "8613812345678",
        "+86 138 1234 5678",
        "0086-138-1234-5678",
        "86 138-1234-5678",
        "138 1234 5678",
        "138-1234-5678",
        " 13812345678 ",
        "(+86) 138.1234.5678",
        "+86\t13812345678\n",
    ],
)
def test_normalize_accepts_what_front_line_systems_send(raw: str) -> None:
    assert normalize(raw) == "13812345678"


@pytest.mark.parametrize("prefix", ["13", "14", "15", "16", "17", "18", "19"])
def test_normalize_accepts_every_mobile_range(prefix: str) -> None:
    number = prefix + "012345678"
    assert len(number) == 11
    assert normalize(number) == number
    assert normalize("+86" + number) == number


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "1381234567",  # 10 digits
        "138123456789",  # 12 digits
        "+86138123456",  # short after the prefix
        "861381234567",  # 12 digits starting 86: not a prefix, not a number
        "1381234567a",  # a letter
        "138I2345678",  # a letter that looks like a digit
        "abcdefghijk",
        "02584561234",  # Nanjing landline with its area code
        "+86 25 8456 1234",  # the same, international
        "01012345678",  # Beijing landline
        "12345678901",  # 12x is not a mobile range
        "10086",  # the service number
        "+1 415 555 0100",
        "+8613812345678+86",
        "86-86-13812345678",
        "１３８１２３４５６７８",  # full-width digits
        "138１2345678",  # one full-width digit: would never match the warehouse's number
        "138١٢345678",  # Arabic-Indic digits
    ],
)
def test_normalize_refuses(raw: str) -> None:
    with pytest.raises(InvalidMsisdn) as refused:
        normalize(raw)
    # The message shows what was sent, so the clerk sees the typo.
    assert repr(raw) in str(refused.value)
    assert "11-digit mobile number" in str(refused.value)


def test_invalid_msisdn_is_a_value_error() -> None:
    assert issubclass(InvalidMsisdn, ValueError)


def test_mask() -> None:
    assert mask("13812345678") == "138****5678"
    assert mask(normalize("+86 139-0000-0001")) == "139****0001"


def test_mask_keeps_only_the_ends() -> None:
    masked = mask("13912345678")
    assert masked.startswith("139") and masked.endswith("5678")
    assert "1234" not in masked  # the middle digits are hidden
    assert len(masked) == 11


@pytest.mark.parametrize(("raw", "masked"), [("", ""), ("123", "***"), ("1234567", "*******")])
def test_mask_hides_short_values_entirely(raw: str, masked: str) -> None:
    assert mask(raw) == masked
