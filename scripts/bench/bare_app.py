"""The yardstick: a bare Litestar endpoint that decodes the same request body into a msgspec
Struct and returns a constant Struct, served exactly like nextbest."""

from __future__ import annotations

import msgspec
from litestar import Litestar, post
from litestar.params import JSONBody


class Ask(msgspec.Struct, forbid_unknown_fields=True):
    msisdn: str
    channel: str


class Answer(msgspec.Struct):
    decision_id: str
    offers: list[str]


ANSWER = Answer(decision_id="0" * 32, offers=["a", "b", "c"])


@post("/v1/decisions", status_code=200, sync_to_thread=False)
def decide(data: JSONBody[Ask]) -> Answer:
    return ANSWER


def app_factory() -> Litestar:
    return Litestar(route_handlers=[decide], openapi_config=None)
