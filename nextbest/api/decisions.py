"""Decisions, outcomes and subscriptions: the front line's endpoints."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, Response, get, post
from litestar.params import FromPath, HeaderParameter, JSONBody

from nextbest.api.auth import requires
from nextbest.api.services import EVERYONE, FRONT_LINE, Services, ServicesDep
from nextbest.keys import Actor
from nextbest.outcomes import Recorded
from nextbest.wire import (
    DecisionRequest,
    DecisionResponse,
    OutcomeRequest,
    OutcomeResponse,
    SubscriptionOut,
)

__all__ = ["ROUTES", "routes"]


# The two hot handlers are built per app around its services, and take the caller from the
# request (the front door put it there): Litestar resolves a dependency per request through a
# signature model of its own, ~17 us each (docs/performance.md), which these skip.
def _decision_handler(services: Services, *, sync_to_thread: bool) -> Any:
    def create_decision(
        data: JSONBody[DecisionRequest], request: Request[Actor, Any, Any]
    ) -> DecisionResponse:
        """The clerk or agent is the key's user; the decision is stored before it is
        returned."""
        return services.decisions.decide(request.user, data)

    # On the event loop or in a worker thread (NEXTBEST_READS_ON_LOOP, settings.py). On SQLite
    # a decision's read comes from the OS page cache: on the loop, since the thread pool's GIL
    # hand-overs cost more than the work (measured: p50 16 ms at half load in threads). On
    # PostgreSQL the loop waits for its round trips: on the same host that is less than the
    # threads' hand-overs (1M at half load: p99 21 ms on the loop, 68 ms in threads); on a
    # slower link, threads overlap the waits.
    return post(
        "/v1/decisions",
        summary="Rank the offers this customer may be pitched now",
        tags=["decisions"],
        # A look-up: counted against the key's rate limit (api/limits.py).
        opt={**requires(*FRONT_LINE), "lookup": True},
        sync_to_thread=sync_to_thread,
        status_code=200,
        operation_id="CreateDecision",
    )(create_decision)


def _outcome_handler(services: Services, *, group_commit: bool) -> Any:
    """``group_commit`` (NEXTBEST_GROUP_COMMIT): the handler waits for its batch's commit on
    the event loop; otherwise it commits a transaction of its own in a worker thread."""

    def answer(recorded: Recorded) -> Response[OutcomeResponse]:
        headers = {"Idempotent-Replayed": "true"} if recorded.replayed else {}
        return Response(recorded.response, status_code=recorded.status_code, headers=headers)

    route = post(
        "/v1/decisions/{decision_id:str}/outcomes",
        summary="Record what the customer said to one offer",
        tags=["decisions"],
        opt=requires(*FRONT_LINE),
        sync_to_thread=None if group_commit else True,
    )
    if group_commit:

        async def create_outcome(
            decision_id: FromPath[str],
            data: JSONBody[OutcomeRequest],
            request: Request[Actor, Any, Any],
            idempotency_key: IdempotencyKey = None,
        ) -> Response[OutcomeResponse]:
            recorded = await services.outcomes.record_async(
                request.user, decision_id, data, idempotency_key
            )
            return answer(recorded)

        return route(create_outcome)

    def create_outcome_in_thread(
        decision_id: FromPath[str],
        data: JSONBody[OutcomeRequest],
        request: Request[Actor, Any, Any],
        idempotency_key: IdempotencyKey = None,
    ) -> Response[OutcomeResponse]:
        return answer(services.outcomes.record(request.user, decision_id, data, idempotency_key))

    create_outcome_in_thread.__name__ = "create_outcome"  # the same OpenAPI operation either way
    return route(create_outcome_in_thread)


IdempotencyKey = Annotated[
    str | None,
    HeaderParameter(
        name="Idempotency-Key",
        required=False,
        description="Retries with the same key return the first answer, writing nothing",
    ),
]


@get(
    "/v1/subscriptions/{subscription_id:int}",
    summary="A sale and its provisioning status",
    tags=["decisions"],
    opt=requires(*EVERYONE),
    sync_to_thread=True,
)
def get_subscription(subscription_id: FromPath[int], services: ServicesDep) -> SubscriptionOut:
    return services.outcomes.subscription(subscription_id)


@post(
    "/v1/subscriptions/{subscription_id:int}/retry",
    summary="Deliver a failed sale to provisioning again",
    tags=["decisions"],
    opt=requires("admin"),
    sync_to_thread=True,
    status_code=202,
)
def retry_subscription(subscription_id: FromPath[int], services: ServicesDep) -> SubscriptionOut:
    return services.outcomes.retry(subscription_id)


ROUTES = [get_subscription, retry_subscription]


def routes(services: Services, *, on_loop: bool, group_commit: bool) -> list[Any]:
    """The front line's endpoints: the decision handler on the loop or in threads, the outcome
    handler on the loop with group commit or in threads."""
    return [
        _decision_handler(services, sync_to_thread=not on_loop),
        _outcome_handler(services, group_commit=group_commit),
        *ROUTES,
    ]
