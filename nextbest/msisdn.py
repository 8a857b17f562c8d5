"""Subscriber numbers: normalise what a clerk types or scans, and mask what a screen shows."""

from __future__ import annotations

import re

__all__ = ["InvalidMsisdn", "mask", "normalize"]

_SEPARATORS = re.compile(r"[\s\-().]")
_MOBILE = re.compile(r"1[3-9][0-9]{9}")  # ASCII digits only: \d would take １ and ١ too


class InvalidMsisdn(ValueError):
    pass


def normalize(raw: str) -> str:
    """Return the 11-digit national mobile number for ``raw``.

    Accepts what front-line systems send: spaces, dashes, and a ``+86`` / ``0086`` / ``86``
    country prefix.
    """
    text = _SEPARATORS.sub("", raw)
    if text.startswith("+86"):
        text = text[3:]
    elif text.startswith("0086"):
        text = text[4:]
    elif len(text) == 13 and text.startswith("86"):
        text = text[2:]
    if not _MOBILE.fullmatch(text):
        raise InvalidMsisdn(
            f"expected an 11-digit mobile number starting with 13-19 (optionally +86), got {raw!r}"
        )
    return text


def mask(msisdn: str) -> str:
    """138****5678: enough for the clerk to confirm, not enough to copy."""
    if len(msisdn) < 8:
        return "*" * len(msisdn)
    return f"{msisdn[:3]}****{msisdn[-4:]}"
