"""Campaigns for planners (supervisors and admins): draft, target, rehearse, approve, launch."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from litestar import get, patch, post, put
from litestar.params import FromPath, FromQuery, JSONBody
from msgspec import Meta

from nextbest.api.auth import requires
from nextbest.api.services import MANAGERS, ActorDep, ServicesDep
from nextbest.campaigns import (
    CampaignIn,
    CampaignOut,
    CampaignPatch,
    QueueOut,
    Rehearsal,
    SelectionIn,
    TargetReport,
    TransitionIn,
)

__all__ = ["ROUTES", "TargetListIn"]

Status = Literal["draft", "submitted", "approved", "rejected", "live", "paused", "ended"]
# 200,000 numbers with their line breaks, JSON-quoted, with room to spare.
MAX_TARGET_LIST_BYTES = 16 * 1024 * 1024


class TargetListIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    # The list as text: one number per line, or CSV with an msisdn column. Line numbers in the
    # report count from the first line of this text.
    list: Annotated[str, Meta(min_length=1, max_length=MAX_TARGET_LIST_BYTES)]


@post(
    "/v1/campaigns",
    summary="Create a draft campaign",
    tags=["campaigns"],
    opt=requires(*MANAGERS),
    sync_to_thread=True,
    status_code=201,
)
def create_campaign(
    data: JSONBody[CampaignIn], services: ServicesDep, actor: ActorDep
) -> CampaignOut:
    return services.campaigns.create(actor, data)


@get(
    "/v1/campaigns",
    summary="Campaigns, newest first, e.g. ?status=live",
    tags=["campaigns"],
    opt=requires(*MANAGERS),
    sync_to_thread=True,
)
def list_campaigns(
    services: ServicesDep, status: FromQuery[Status | None] = None
) -> list[CampaignOut]:
    return services.campaigns.campaigns(status)


@get(
    "/v1/campaigns/{campaign_id:str}",
    summary="A campaign and its history of transitions",
    tags=["campaigns"],
    opt=requires(*MANAGERS),
    sync_to_thread=True,
)
def get_campaign(campaign_id: FromPath[str], services: ServicesDep) -> CampaignOut:
    return services.campaigns.get(campaign_id)


@patch(
    "/v1/campaigns/{campaign_id:str}",
    summary="Change a draft campaign",
    tags=["campaigns"],
    opt=requires(*MANAGERS),
    sync_to_thread=True,
)
def update_campaign(
    campaign_id: FromPath[str],
    data: JSONBody[CampaignPatch],
    services: ServicesDep,
    actor: ActorDep,
) -> CampaignOut:
    return services.campaigns.update(actor, campaign_id, data)


@put(
    "/v1/campaigns/{campaign_id:str}/targets",
    summary="Load a draft's target list (bad and duplicate lines reported by line number)",
    tags=["campaigns"],
    opt=requires(*MANAGERS),
    sync_to_thread=True,
    request_max_body_size=MAX_TARGET_LIST_BYTES + 1024,
)
def load_targets(
    campaign_id: FromPath[str],
    data: JSONBody[TargetListIn],
    services: ServicesDep,
    actor: ActorDep,
) -> TargetReport:
    return services.campaigns.load_targets(actor, campaign_id, data.list.encode("utf-8"))


@post(
    "/v1/campaigns/{campaign_id:str}/targets/select",
    summary="Select a draft's targets from the warehouse profiles",
    tags=["campaigns"],
    opt=requires(*MANAGERS),
    sync_to_thread=True,
    status_code=200,
)
def select_targets(
    campaign_id: FromPath[str],
    data: JSONBody[SelectionIn],
    services: ServicesDep,
    actor: ActorDep,
) -> TargetReport:
    return services.campaigns.select_targets(actor, campaign_id, data)


@get(
    "/v1/campaigns/{campaign_id:str}/rehearsal",
    summary="Rehearse: how many remain after the rules, expected accepts and revenue",
    tags=["campaigns"],
    opt=requires(*MANAGERS),
    sync_to_thread=True,
)
def rehearse(campaign_id: FromPath[str], services: ServicesDep) -> Rehearsal:
    return services.campaigns.rehearse(campaign_id)


@post(
    "/v1/campaigns/{campaign_id:str}/transitions",
    summary="Move a campaign on: submit, approve, reject, revise, launch, pause, resume, end",
    tags=["campaigns"],
    opt=requires(*MANAGERS),
    sync_to_thread=True,
    status_code=200,
)
def transition(
    campaign_id: FromPath[str],
    data: JSONBody[TransitionIn],
    services: ServicesDep,
    actor: ActorDep,
) -> CampaignOut:
    return services.campaigns.transition(actor, campaign_id, data)


@get(
    "/v1/campaigns/{campaign_id:str}/queue",
    summary="A launched campaign's call queue: due, leased, results, calls today",
    tags=["campaigns"],
    opt=requires(*MANAGERS),
    sync_to_thread=True,
)
def queue(campaign_id: FromPath[str], services: ServicesDep) -> QueueOut:
    return services.campaigns.queue(campaign_id)


ROUTES = [
    create_campaign,
    list_campaigns,
    get_campaign,
    update_campaign,
    load_targets,
    select_targets,
    rehearse,
    transition,
    queue,
]
