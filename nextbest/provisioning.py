"""Provisioning adapters: how an accepted sale reaches the operator's BOSS / service platform.

An adapter gets one ProvisioningRequest and answers Delivered, Rejected (the far side said no:
final) or Retry (could not tell: try again later). The outbox worker calls it, outside any
database transaction, and may call it more than once for the same sale after a crash or a
timeout; the request's ``idempotency_key`` lets the far side recognise the repeat.

Choose one with ``NEXTBEST_PROVISIONING``: ``ledger`` (default: mark active locally), ``http``
(POST JSON to ``NEXTBEST_PROVISIONING_URL``), or ``package.module:factory`` / the name of an
entry point in the ``nextbest.provisioners`` group, where ``factory(settings)`` returns an object
with a ``provision(request)`` method.
"""

from __future__ import annotations

import importlib
from datetime import datetime
from importlib.metadata import entry_points
from typing import Any, Protocol

import httpx
import msgspec

from nextbest.settings import Settings, SettingsError

__all__ = [
    "Delivered",
    "HttpProvisioner",
    "LedgerProvisioner",
    "Provisioner",
    "ProvisioningRequest",
    "ProvisioningResult",
    "Rejected",
    "Retry",
    "load_provisioner",
]


class ProvisioningRequest(msgspec.Struct, frozen=True, kw_only=True):
    """The JSON body the http adapter sends (documented in docs/provisioning.md)."""

    idempotency_key: str
    subscription_id: int
    msisdn: str
    offer_id: str
    service: str
    price: float
    channel: str
    sold_by: str
    store_id: str | None
    decision_id: str
    accepted_at: datetime


class Delivered(msgspec.Struct, frozen=True):
    reference: str | None = None


class Rejected(msgspec.Struct, frozen=True):
    reason: str


class Retry(msgspec.Struct, frozen=True):
    reason: str


ProvisioningResult = Delivered | Rejected | Retry


class Provisioner(Protocol):
    def provision(self, request: ProvisioningRequest) -> ProvisioningResult: ...


class LedgerProvisioner:
    """Embedded default: the sale is recorded here and counts as active at once."""

    def provision(self, request: ProvisioningRequest) -> ProvisioningResult:
        return Delivered(reference=f"ledger-{request.subscription_id}")


# Statuses that mean "not now" rather than "no".
_TRANSIENT = {408, 425, 429}
_encode = msgspec.json.Encoder().encode


class HttpProvisioner:
    """POSTs the request as JSON; 2xx is delivered, 4xx rejected, anything else retried."""

    def __init__(
        self,
        url: str,
        *,
        auth_header: str | None = None,
        timeout: float = 5.0,
        client: httpx.Client | None = None,
    ) -> None:
        self.url = url
        self.headers = {"Content-Type": "application/json"}
        if auth_header:
            self.headers["Authorization"] = auth_header
        self.client = client or httpx.Client(timeout=timeout)

    def provision(self, request: ProvisioningRequest) -> ProvisioningResult:
        headers = {**self.headers, "Idempotency-Key": request.idempotency_key}
        try:
            response = self.client.post(self.url, content=_encode(request), headers=headers)
        except httpx.TimeoutException:
            return Retry("provisioning endpoint timed out")
        except httpx.HTTPError as exc:
            return Retry(f"provisioning endpoint unreachable: {type(exc).__name__}: {exc}")
        if 200 <= response.status_code < 300:
            return Delivered(reference=_field(response, "reference"))
        reason = _field(response, "reason") or _field(response, "detail") or response.text[:200]
        reason = f"HTTP {response.status_code}: {reason}".rstrip(": ")
        if 400 <= response.status_code < 500 and response.status_code not in _TRANSIENT:
            return Rejected(reason)
        return Retry(reason)

    def close(self) -> None:
        self.client.close()


def _field(response: httpx.Response, name: str) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    value = body.get(name) if isinstance(body, dict) else None
    return str(value) if value is not None else None


def load_provisioner(settings: Settings) -> Provisioner:
    kind = settings.provisioning
    if kind == "ledger":
        return LedgerProvisioner()
    if kind == "http":
        if not settings.provisioning_url:
            raise SettingsError(
                "NEXTBEST_PROVISIONING_URL: required when NEXTBEST_PROVISIONING=http"
            )
        return HttpProvisioner(
            settings.provisioning_url,
            auth_header=settings.provisioning_auth_header or None,
            timeout=settings.provisioning_timeout_seconds,
        )
    factory: Any
    if ":" in kind:
        module_name, _, attr = kind.partition(":")
        try:
            factory = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise SettingsError(f"NEXTBEST_PROVISIONING: cannot load {kind!r}: {exc}") from None
    else:
        found = [ep for ep in entry_points(group="nextbest.provisioners") if ep.name == kind]
        if not found:
            raise SettingsError(
                f"NEXTBEST_PROVISIONING: {kind!r} is not ledger, http, module:factory or an "
                "installed nextbest.provisioners entry point"
            )
        factory = found[0].load()
    provisioner = factory(settings)
    if not callable(getattr(provisioner, "provision", None)):
        raise SettingsError(f"NEXTBEST_PROVISIONING: {kind!r} returned no provision() method")
    return provisioner  # type: ignore[no-any-return]
