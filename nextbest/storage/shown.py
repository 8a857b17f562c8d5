"""The offers a decision showed, as its row stores them (``decisions.offers``).

One JSON object per decision, ``{offer id: [rank, score, probability, before learning]}``,
rather than a row per offer: a decision is then one insert (docs/performance.md). Reports
rebuilt from the ledgers read it with the database's JSON functions (nextbest/rollups.py).
"""

from __future__ import annotations

import msgspec

__all__ = ["ShownOffer", "decode_offers", "encode_offers", "expected"]


class ShownOffer(msgspec.Struct, frozen=True, array_like=True):
    rank: int
    score: float
    probability: float  # as served
    # The ranking's estimate before learning moved it; None where learning did not.
    before_learning: float | None = None


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(dict[str, ShownOffer]).decode


def encode_offers(offers: dict[str, ShownOffer]) -> str:
    return _encode(offers).decode()


def decode_offers(stored: str | bytes | None) -> dict[str, ShownOffer]:
    """Offer id -> what was shown, in rank order."""
    if not stored:
        return {}
    return _decode(stored)


def expected(offer: ShownOffer) -> float:
    """The acceptance the warehouse's model expected (before learning) for this offer."""
    return offer.probability if offer.before_learning is None else offer.before_learning
