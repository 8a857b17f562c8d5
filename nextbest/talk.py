"""Talk scripts: Jinja2 templates written by marketing staff, rendered in a sandbox.

Scripts see plain data (customer, segment, offer, stage, events) and nothing else; reaching for
attributes or builtins is refused by the sandbox, and an undefined name is an error, so every
template is test-rendered when the catalog loads.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import jinja2
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

__all__ = ["SAMPLE_CONTEXT", "TemplateProblem", "check_template", "render"]


class TemplateProblem(ValueError):
    pass


_ENV = ImmutableSandboxedEnvironment(
    undefined=jinja2.StrictUndefined,
    autoescape=False,
    keep_trailing_newline=False,
    trim_blocks=True,
    lstrip_blocks=True,
)
# Globals a script must not reach for.
_ENV.globals.clear()

# What a script may use; check_template renders against this shape.
SAMPLE_CONTEXT: Mapping[str, Any] = {
    "customer": {
        "masked": "138****5678",
        "brand": "GoTone",
        "region": "Nanjing",
        "known": True,
        "arpu": 88.0,
    },
    "segment": {
        "code": "fashionable_high_end",
        "name": "Fashionable high-end",
        "selling_point": "new, first, exclusive",
    },
    "offer": {"id": "sample", "name": "Sample offer", "price": 5.0, "service": "crbt"},
    "stage": "potential",
    "events": ["handset_mms"],
    "channel": "store",
}
# The same shape as the emptiest real request fills it: a subscriber the warehouse does not
# know, no live events. A script must render for both, or it fails at the counter instead.
_SPARSE_CONTEXT: Mapping[str, Any] = {
    **SAMPLE_CONTEXT,
    "customer": {"masked": "138****5678", "brand": "", "region": "", "known": False, "arpu": 0.0},
    "segment": {"code": "", "name": "", "selling_point": ""},
    "stage": "none",
    "events": [],
    "channel": "outbound",
}


@lru_cache(maxsize=4096)
def _compile(source: str) -> jinja2.Template:
    return _ENV.from_string(source)


def check_template(source: str) -> None:
    """Compile and test-render; raise TemplateProblem with a readable reason."""
    try:
        template = _compile(source)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateProblem(
            f"syntax error on template line {exc.lineno}: {exc.message}"
        ) from None
    for context, when in (
        (SAMPLE_CONTEXT, ""),
        (_SPARSE_CONTEXT, " (unknown customer, no events)"),
    ):
        try:
            template.render(context)
        except SecurityError as exc:
            raise TemplateProblem(f"refused by the sandbox: {exc}") from None
        except jinja2.UndefinedError as exc:
            raise TemplateProblem(
                f"{exc.message}{when}; scripts may use {', '.join(sorted(SAMPLE_CONTEXT))}"
            ) from None
        except Exception as exc:  # a template is user input: any failure is its problem
            raise TemplateProblem(f"fails to render{when}: {exc}") from None


def render(source: str, context: Mapping[str, Any]) -> str:
    return _compile(source).render(context).strip()
