"""The look-up trail for supervisors (their scope) and admins: who looked up which number."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from litestar import get
from litestar.params import FromQuery, QueryParameter

from nextbest.api.auth import requires
from nextbest.api.services import MANAGERS, ActorDep, ServicesDep
from nextbest.errors import BadInput
from nextbest.keys import report_scope
from nextbest.lookups import MAX_ROWS, LookupOut, LookupQuery
from nextbest.msisdn import InvalidMsisdn, normalize

__all__ = ["ROUTES"]


@get(
    "/v1/lookups",
    summary="Who looked up which number, when, from which channel (newest first, at most 1000)",
    tags=["security"],
    opt=requires(*MANAGERS),
    sync_to_thread=True,
)
def list_lookups(
    services: ServicesDep,
    actor: ActorDep,
    msisdn: FromQuery[str | None] = None,
    user: Annotated[
        str | None, QueryParameter(max_length=64, description="The clerk's or agent's user id")
    ] = None,
    since: FromQuery[datetime | None] = None,
    until: FromQuery[datetime | None] = None,
    limit: Annotated[int, QueryParameter(ge=1, le=MAX_ROWS)] = MAX_ROWS,
) -> list[LookupOut]:
    number = None
    if msisdn is not None:
        try:
            number = normalize(msisdn)
        except InvalidMsisdn as exc:
            raise BadInput(f"msisdn: {exc}", "msisdn") from None
    for name, value in (("since", since), ("until", until)):
        if value is not None and value.tzinfo is None:
            raise BadInput(f"{name}: needs a UTC offset, e.g. 2026-11-19T10:00:00+08:00", name)
    scope = report_scope(actor)
    return services.lookups.find(
        LookupQuery(
            msisdn=number,
            user=user,
            since=since,
            until=until,
            store=scope.store_id,
            team=scope.team_id,
            limit=limit,
        )
    )


ROUTES = [list_lookups]
