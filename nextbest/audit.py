"""The commission audit, as the operators run it: question a sale (never drop it silently) when
the customer already had the service, the far side never billed it, the customer was in arrears
when sold to, or a complaint followed within the window. Runs after every load, when the
warehouse's new contacts and sales status are in."""

from __future__ import annotations

from datetime import datetime, timedelta

import msgspec
from sqlalchemy import insert, select

from nextbest.catalog import Catalog
from nextbest.storage.db import Database
from nextbest.storage.models import AuditFlag, Decision, Subscription, WarehouseContact

__all__ = ["AUDIT_FLAGS", "AuditReport", "run_audit"]

AUDIT_FLAGS: dict[str, str] = {
    "already_held": "the customer already had this offer before the sale",
    "not_billed": "the operator's billing never charged this sale",
    "arrears": "the customer was in arrears when sold to",
    "complaint_after": "the customer complained soon after the sale",
}


class AuditReport(msgspec.Struct, frozen=True, kw_only=True):
    checked: int
    new_flags: dict[str, int]


def run_audit(db: Database, catalog: Catalog, version_id: int, now: datetime) -> AuditReport:
    rules = catalog.audit
    found: list[tuple[int, str, str]] = []
    with db.read() as session:
        sales = list(
            session.execute(
                select(
                    Subscription.id,
                    Subscription.msisdn,
                    Subscription.offer_id,
                    Subscription.created_at,
                    Subscription.billed,
                    Subscription.status,
                    Decision.customer_flags,
                ).join(Decision, Decision.id == Subscription.decision_id)
            )
        )
        flagged = {
            (s, f) for s, f in session.execute(select(AuditFlag.subscription_id, AuditFlag.flag))
        }
        msisdns = {sale.msisdn for sale in sales}
        contacts: dict[str, list[tuple[str, str | None, datetime]]] = {}
        if msisdns:
            for msisdn, kind, offer_id, at in session.execute(
                select(
                    WarehouseContact.msisdn,
                    WarehouseContact.kind,
                    WarehouseContact.offer_id,
                    WarehouseContact.at,
                ).where(
                    WarehouseContact.version_id == version_id,
                    WarehouseContact.kind.in_(("subscribed", "complaint")),
                )
            ):
                if msisdn in msisdns:
                    contacts.setdefault(msisdn, []).append((kind, offer_id, at))
    window = timedelta(days=rules.complaint_window_days)
    grace = timedelta(days=rules.billing_grace_days)
    for sale in sales:
        if sale.status == "failed":
            continue
        if "arrears" in (sale.customer_flags or "").split(";"):
            found.append((sale.id, "arrears", AUDIT_FLAGS["arrears"]))
        if sale.billed is False and now - sale.created_at > grace:
            found.append(
                (sale.id, "not_billed", f"not billed {(now - sale.created_at).days} days on")
            )
        for kind, offer_id, at in contacts.get(sale.msisdn, ()):
            if kind == "subscribed" and offer_id == sale.offer_id and at < sale.created_at:
                found.append((sale.id, "already_held", f"subscribed elsewhere on {at:%Y-%m-%d}"))
            if kind == "complaint" and sale.created_at <= at <= sale.created_at + window:
                days = (at - sale.created_at).days
                found.append((sale.id, "complaint_after", f"complaint {days} days after the sale"))
    new: dict[str, int] = {}
    rows = []
    for subscription_id, flag, detail in found:
        if (subscription_id, flag) in flagged:
            continue
        flagged.add((subscription_id, flag))
        new[flag] = new.get(flag, 0) + 1
        rows.append(
            {"subscription_id": subscription_id, "flag": flag, "detail": detail, "created_at": now}
        )
    if rows:
        with db.write() as session:
            session.execute(insert(AuditFlag), rows)
    return AuditReport(checked=len(sales), new_flags=new)
