"""Decisions, outcomes and subscriptions: the front line's endpoints."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Response, get, post
from litestar.params import FromPath, HeaderParameter, JSONBody

from nextbest.api.auth import requires
from nextbest.api.services import EVERYONE, FRONT_LINE, ActorDep, ServicesDep
from nextbest.wire import (
    DecisionRequest,
    DecisionResponse,
    OutcomeRequest,
    OutcomeResponse,
    SubscriptionOut,
)

__all__ = ["ROUTES", "routes"]


def _create_decision(
    data: JSONBody[DecisionRequest], services: ServicesDep, actor: ActorDep
) -> DecisionResponse:
    """The clerk or agent is the key's user; the decision is stored before it is returned."""
    return services.decisions.decide(actor, data)


# On the event loop or in a worker thread (NEXTBEST_READS_ON_LOOP, settings.py). On SQLite a
# decision is about a millisecond of CPU (reads from the page cache, the impression handed to
# a writer thread): on the loop, since the thread pool's GIL hand-overs cost more than the
# work (measured: p50 16 ms at half load in threads). On PostgreSQL the loop waits for three
# round trips per decision: on the same host that is less than the threads' hand-overs
# (1M, 460/s: p99 6 ms on the loop, 20-28 ms in threads); on a slower link, threads overlap
# the waits. ``routes`` picks one.
def _decision_route(*, sync_to_thread: bool) -> Any:
    return post(
        "/v1/decisions",
        summary="Rank the offers this customer may be pitched now",
        tags=["decisions"],
        guards=[requires(*FRONT_LINE)],
        sync_to_thread=sync_to_thread,
        status_code=200,
        operation_id="CreateDecision",
    )(_create_decision)


create_decision_on_loop = _decision_route(sync_to_thread=False)
create_decision_in_thread = _decision_route(sync_to_thread=True)


@post(
    "/v1/decisions/{decision_id:str}/outcomes",
    summary="Record what the customer said to one offer",
    tags=["decisions"],
    guards=[requires(*FRONT_LINE)],
    sync_to_thread=True,
)
def create_outcome(
    decision_id: FromPath[str],
    data: JSONBody[OutcomeRequest],
    services: ServicesDep,
    actor: ActorDep,
    idempotency_key: Annotated[
        str | None,
        HeaderParameter(
            name="Idempotency-Key",
            required=False,
            description="Retries with the same key return the first answer, writing nothing",
        ),
    ] = None,
) -> Response[OutcomeResponse]:
    recorded = services.outcomes.record(actor, decision_id, data, idempotency_key)
    headers = {"Idempotent-Replayed": "true"} if recorded.replayed else {}
    return Response(recorded.response, status_code=recorded.status_code, headers=headers)


@get(
    "/v1/subscriptions/{subscription_id:int}",
    summary="A sale and its provisioning status",
    tags=["decisions"],
    guards=[requires(*EVERYONE)],
    sync_to_thread=True,
)
def get_subscription(subscription_id: FromPath[int], services: ServicesDep) -> SubscriptionOut:
    return services.outcomes.subscription(subscription_id)


@post(
    "/v1/subscriptions/{subscription_id:int}/retry",
    summary="Deliver a failed sale to provisioning again",
    tags=["decisions"],
    guards=[requires("admin")],
    sync_to_thread=True,
    status_code=202,
)
def retry_subscription(subscription_id: FromPath[int], services: ServicesDep) -> SubscriptionOut:
    return services.outcomes.retry(subscription_id)


ROUTES = [create_outcome, get_subscription, retry_subscription]


def routes(*, on_loop: bool) -> list[Any]:
    """The front line's endpoints, with the decision handler on the loop or in threads."""
    return [create_decision_on_loop if on_loop else create_decision_in_thread, *ROUTES]
