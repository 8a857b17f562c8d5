"""Example provisioning adapter for an operator's BOSS that speaks a form-encoded API.

Use it with:  NEXTBEST_PROVISIONING=contrib.provisioning_adapter:factory
(with the checkout on PYTHONPATH), or package it and register an entry point:

    [project.entry-points."nextbest.provisioners"]
    boss = "mybss.adapter:factory"

and set NEXTBEST_PROVISIONING=boss.
"""

from __future__ import annotations

import os

import httpx

from nextbest.provisioning import (
    Delivered,
    ProvisioningRequest,
    ProvisioningResult,
    Rejected,
    Retry,
)
from nextbest.settings import Settings

# BOSS result codes that mean the order can never succeed as sent.
FINAL_REFUSALS = {"E101": "customer in arrears", "E102": "already subscribed", "E200": "barred"}


class BossFormAdapter:
    def __init__(self, url: str, operator_id: str, timeout: float) -> None:
        self.url = url
        self.operator_id = operator_id
        self.client = httpx.Client(timeout=timeout)

    def provision(self, request: ProvisioningRequest) -> ProvisioningResult:
        form = {
            "op": self.operator_id,
            "order_no": request.idempotency_key,  # BOSS de-duplicates on order_no
            "msisdn": request.msisdn,
            "product": request.offer_id,
            "staff": request.sold_by,
            "channel": request.store_id or request.channel,
        }
        try:
            response = self.client.post(self.url, data=form)
        except httpx.HTTPError as exc:
            return Retry(f"BOSS unreachable: {exc}")
        if response.status_code >= 500:
            return Retry(f"BOSS HTTP {response.status_code}")
        code, _, detail = response.text.partition("|")
        if code == "0000":
            return Delivered(reference=detail or None)
        if code in FINAL_REFUSALS:
            return Rejected(f"{code} {FINAL_REFUSALS[code]}")
        return Retry(f"BOSS answered {code} {detail}".strip())


def factory(settings: Settings) -> BossFormAdapter:
    return BossFormAdapter(
        url=settings.provisioning_url or os.environ.get("BOSS_URL", "http://boss.internal/order"),
        operator_id=os.environ.get("BOSS_OPERATOR_ID", "nextbest"),
        timeout=settings.provisioning_timeout_seconds,
    )
