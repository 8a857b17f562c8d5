"""The outbound call queue for agents: lease the next call, report how it went."""

from __future__ import annotations

from typing import Literal

from litestar import Response, post
from litestar.params import FromPath, FromQuery, JSONBody

from nextbest.api.auth import requires
from nextbest.api.services import ActorDep, ServicesDep
from nextbest.tasks import NextTask, TaskOutcomeOut, TaskOutcomeRequest

__all__ = ["ROUTES"]


@post(
    "/v1/tasks/next",
    summary="Lease the next call: the customer, the campaign, the decision and its script",
    tags=["tasks"],
    # Each lease looks a customer up: rate-limited like a decision.
    opt={**requires("agent"), "lookup": True},
    sync_to_thread=True,
    status_code=200,
)
def next_task(
    services: ServicesDep, actor: ActorDep, lang: FromQuery[Literal["en", "zh"]] = "en"
) -> NextTask:
    return services.tasks.next(actor, lang)


@post(
    "/v1/tasks/{task_id:int}/outcome",
    summary="Report a call: an offer's answer, callback, no answer, wrong number, do not call",
    tags=["tasks"],
    opt=requires("agent"),
    sync_to_thread=True,
)
def task_outcome(
    task_id: FromPath[int],
    data: JSONBody[TaskOutcomeRequest],
    services: ServicesDep,
    actor: ActorDep,
) -> Response[TaskOutcomeOut]:
    status, answer = services.tasks.record(actor, task_id, data)
    return Response(answer, status_code=status)


ROUTES = [next_task, task_outcome]
