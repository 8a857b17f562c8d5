"""Control groups: which customers get a baseline instead of the ranked offers, and what the
baseline shows. Pure: a stable hash, a seeded draw, no clock and no database.

The assignment hashes the number with the experiment's name, so a customer stays in one arm
for the whole experiment (on every node, after every restart) and a new experiment name draws
a fresh control group. The baseline "random" shows as many offers as the ranking would, drawn
at random from the eligible ones (one per service), so a contact in either arm hears the same
number of pitches and the lift measures the choice of offers, not their number.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from typing import Literal

import msgspec

from nextbest.catalog import Experiment, Offer
from nextbest.policy import Suppressed

__all__ = [
    "CONTROL_RULE",
    "Arm",
    "Assignment",
    "assign",
    "baseline_offers",
]

Arm = Literal["model", "control"]
# The rule code carried by offers the control group's baseline did not show.
CONTROL_RULE = "control_group"
_CONTROL_DETAIL = "held out: this customer is in the control group that measures the model's lift"


class Assignment(msgspec.Struct, frozen=True, kw_only=True):
    experiment: str
    arm: Arm
    baseline: Literal["random", "none"]
    # Seeds the random baseline's draw: stable per (number, experiment).
    seed: int


def _digest(experiment: str, msisdn: str) -> bytes:
    return hashlib.sha256(f"{experiment}\0{msisdn}".encode()).digest()


def assign(experiment: Experiment, msisdn: str) -> Assignment | None:
    """The arm of this customer, or None when no experiment runs."""
    if experiment.control_share <= 0 or not experiment.name:
        return None
    digest = _digest(experiment.name, msisdn)
    # The first 8 bytes as a uniform number in [0, 1): below the share means control.
    position = int.from_bytes(digest[:8], "big") / 2**64
    return Assignment(
        experiment=experiment.name,
        arm="control" if position < experiment.control_share else "model",
        baseline=experiment.baseline,
        seed=int.from_bytes(digest[8:16], "big"),
    )


def baseline_offers(
    allowed: Sequence[Offer], assignment: Assignment, count: int
) -> tuple[list[Offer], list[Suppressed]]:
    """The control group's offers: ``count`` eligible offers at random (one per service), or
    none; every other eligible offer is returned as suppressed by the control group."""
    chosen: list[Offer] = []
    if assignment.baseline == "random" and count > 0:
        rng = random.Random(assignment.seed)
        services: set[str] = set()
        for offer in rng.sample(list(allowed), len(allowed)):
            if offer.service not in services:
                services.add(offer.service)
                chosen.append(offer)
                if len(chosen) == count:
                    break
    picked = {offer.id for offer in chosen}
    held_back = [
        Suppressed(offer_id=offer.id, rule=CONTROL_RULE, detail=_CONTROL_DETAIL)
        for offer in allowed
        if offer.id not in picked
    ]
    return chosen, held_back
