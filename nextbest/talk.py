"""Talk scripts: Jinja2 templates written by marketing staff, rendered in a sandbox.

Scripts see plain data (customer, segment, offer, stage, events) and nothing else; reaching for
attributes or builtins is refused by the sandbox, and an undefined name is an error, so every
template is test-rendered when the catalog loads.

A render costs several microseconds and a decision renders a dozen texts, so nextbest/pitch.py
caches them by what each one reads: ``inputs()`` works that out from the template's syntax
tree, and ``render_split()`` serves the one value that differs per customer, the masked number.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from functools import lru_cache
from typing import Any

import jinja2
import msgspec
from jinja2 import nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

__all__ = [
    "MASKED",
    "SAMPLE_CONTEXT",
    "Inputs",
    "TemplateProblem",
    "check_template",
    "inputs",
    "render",
    "render_split",
]


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


# The one field that differs for nearly every customer.
MASKED = "customer.masked"


class Inputs(msgspec.Struct, frozen=True, kw_only=True):
    """What a template's output depends on."""

    # The context fields it reads: "customer.brand", "stage"... (a whole table read counts as
    # all of its fields).
    fields: frozenset[str]
    # The output is a function of those fields alone (False: it may draw on something else,
    # such as the random filter, or could not be worked out; render it every time).
    cacheable: bool
    # customer.masked is only ever written out as it is, straight into the output: never
    # tested, filtered or captured, so render_split() can serve it (needs ``cacheable``).
    masked_as_is: bool


# What can make a template draw on more than its context, or that is not worth reasoning about.
_OPAQUE = (
    nodes.Include,
    nodes.Import,
    nodes.FromImport,
    nodes.Extends,
    nodes.ContextReference,
    nodes.DerivedContextReference,
    nodes.ExtensionAttribute,
    nodes.ImportedName,
    nodes.InternalName,
    nodes.EvalContextModifier,
    nodes.OverlayScope,
)
_UNREPEATABLE_FILTERS = frozenset({"random"})
# Statements whose bodies write straight into the output (a macro, call block, filter block,
# block or captured set collects its body into a value a template can then inspect).
_PASS_THROUGH = (nodes.Template, nodes.If, nodes.For, nodes.With, nodes.Scope)
_BODIES = frozenset({"body", "elif_", "else_"})


@lru_cache(maxsize=4096)
def inputs(source: str) -> Inputs:
    """The context fields ``source`` reads, from its syntax tree."""
    try:
        tree = _ENV.parse(source)
    except jinja2.TemplateSyntaxError:
        return Inputs(fields=frozenset(), cacheable=False, masked_as_is=False)
    walk = _Walk()
    walk.visit(tree, True)
    fields = frozenset(walk.fields)
    return Inputs(
        fields=fields,
        cacheable=walk.cacheable,
        masked_as_is=walk.cacheable and walk.masked_as_is and MASKED in fields,
    )


class _Walk:
    def __init__(self) -> None:
        self.fields: set[str] = set()
        self.cacheable = True
        self.masked_as_is = True

    def visit(self, node: nodes.Node, direct: bool) -> None:
        """``direct``: an Output here writes straight into the template's output."""
        if isinstance(node, _OPAQUE) or (
            isinstance(node, nodes.Filter) and node.name in _UNREPEATABLE_FILTERS
        ):
            self.cacheable = False
        if isinstance(node, nodes.Output):
            for child in node.nodes:
                if direct and self._field(child) == MASKED:
                    self.fields.add(MASKED)
                else:
                    self.visit(child, False)
            return
        field = self._field(node)
        if field is not None:
            self._read(field)
            return
        if isinstance(node, nodes.Name):
            if node.ctx == "load" and node.name in SAMPLE_CONTEXT:
                table = SAMPLE_CONTEXT[node.name]
                if isinstance(table, Mapping):  # the whole table: every field of it
                    for key in table:
                        self._read(f"{node.name}.{key}")
                else:
                    self._read(node.name)
            return
        passes = isinstance(node, _PASS_THROUGH) and not (
            isinstance(node, nodes.For) and node.recursive  # loop() returns its body's output
        )
        for name, value in node.iter_fields():
            inner = direct and passes and name in _BODIES
            for sub in _nodes(value):
                self.visit(sub, inner)

    def _read(self, field: str) -> None:
        self.fields.add(field)
        if field == MASKED:  # read some other way than written out as is
            self.masked_as_is = False

    @staticmethod
    def _field(node: nodes.Node) -> str | None:
        """``customer.brand`` or ``customer['brand']`` for a known field of a context table."""
        if isinstance(node, nodes.Getattr):
            key: object = node.attr
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
            key = node.arg.value
        else:
            return None
        target = node.node
        if not (isinstance(target, nodes.Name) and target.ctx == "load"):
            return None
        table = SAMPLE_CONTEXT.get(target.name)
        # Only a field: customer.items is the dictionary's method, not a field.
        if isinstance(table, Mapping) and isinstance(key, str) and key in table:
            return f"{target.name}.{key}"
        return None


def _nodes(value: object) -> Iterator[nodes.Node]:
    if isinstance(value, nodes.Node):
        yield value
    elif isinstance(value, list | tuple):
        for item in value:
            if isinstance(item, nodes.Node):
                yield item


# Two stand-ins for the masked number: the same length, different in every character.
_STAND_INS = ("\uf8f0" * 6, "\uf8f1" * 6)


def render_split(source: str, context: Mapping[str, Any]) -> tuple[str, tuple[str, ...] | None]:
    """``render(source, context)``, and the text around each place the masked number goes
    (None unless ``inputs`` says ``masked_as_is`` and the check below holds). Joining those
    pieces with another customer's masked number, then stripping, is that customer's render.

    The number is only ever written out as is, so the output is fixed text with the number at
    fixed places. Rendered with two stand-ins that differ in every character, text that merely
    contains a stand-in cannot split the same way twice; the pieces are kept only when both
    splits agree and rebuild this render exactly.
    """
    template = _compile(source)
    text = template.render(context)
    if not inputs(source).masked_as_is:  # the stand-ins could not tell
        return text.strip(), None
    customer = context["customer"]
    masked = customer["masked"]
    splits: list[list[str]] = []
    try:
        for stand_in in _STAND_INS:
            trial = {**context, "customer": {**customer, "masked": stand_in}}
            splits.append(template.render(trial).split(stand_in))
    except Exception:  # the number changed what the template did: no pieces
        return text.strip(), None
    if type(masked) is not str or splits[0] != splits[1] or masked.join(splits[0]) != text:
        return text.strip(), None
    return text.strip(), tuple(splits[0])
