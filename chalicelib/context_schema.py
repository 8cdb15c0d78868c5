"""Filtering an incoming call's context by the agent's ``contextSchema``, in linear time (pure).

Theory of operation (``docs/routing.md``, "Context from SIP headers", rule 5):

1. The candidates are paths into the context, in the order they were given: a header or fallback
   key (``("customer_name",)``), then the reserved SIP keys (``("sipline", "sip", "caller_id")``).
2. The context of every surviving candidate is validated **once**, and each error is charged by
   where it points (its instance path) and what it says:

   - inside a candidate's value, or at the candidate itself: that candidate;
   - at an object that holds candidates (the root, ``sipline``, ``sipline.sip``):
     ``additionalProperties: false`` charges the unexpected keys, ``propertyNames`` the name it
     refuses, ``dependentRequired`` the key whose dependency is missing, ``maxProperties`` the
     keys past the maximum in candidate order (only once nothing else is charged);
     ``required`` and ``minProperties`` charge nobody: a missing key never drops another. Any
     other error at ``sipline`` or ``sipline.sip`` charges the reserved keys under it.

3. Charged candidates are dropped and the rest validated again, until a pass charges nobody: a
   context the schema allows costs one validation, a typical one with drops two.
4. Any other error at the root (``anyOf``, ``oneOf``, ``not``, ``if``, ``type``,
   ``unevaluatedProperties``...) says nothing about which key is to blame. For such a schema, and
   after :data:`MAX_PASSES` passes, the filter adds the candidates one by one instead, keeping each
   one that adds no validation error: the same answers where both apply, at one validation per
   candidate.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from functools import lru_cache
from typing import Any

from chalicelib.context_schema_rules import SchemaRefused, check_context_schema
from chalicelib.schema_patterns import extra_keys, validator_class

Path = tuple[str, ...]
Candidate = tuple[Path, Any]
MAX_PASSES = 8
_NEVER_CHARGED = frozenset({"required", "minProperties"})


@lru_cache(maxsize=128)
def _validator(schema_json: str) -> Any:
    """The validator of a schema that passes ``context_schema_rules.py``, else why it does not
    (kept too: a stored schema that breaks a rule costs one check, not one per call)."""
    from referencing import Registry  # imported on first use: cold starts stay short

    schema = json.loads(schema_json)
    try:
        check_context_schema(schema)
    except SchemaRefused as error:
        return error
    schema.pop("$schema", None)  # read as 2020-12 whatever it says (and never another validator)
    return validator_class()(schema, registry=Registry())  # a registry that retrieves nothing


def validator_for(schema: Mapping[str, Any]) -> Any:
    """Return the (cached) draft 2020-12 validator of ``schema``, patterns on RE2.

    Raises:
        SchemaRefused: ``schema`` breaks a rule of ``context_schema_rules.py`` (one stored before
            the rule existed).
    """
    found = _validator(json.dumps(schema, sort_keys=True))
    if isinstance(found, SchemaRefused):
        raise SchemaRefused(str(found))
    return found


def errors(context: Mapping[str, Any], schema: Mapping[str, Any]) -> set[tuple[str, str]]:
    """Return every violation of ``schema`` by ``context`` as ``(json_path, message)``."""
    return {(e.json_path, e.message) for e in validator_for(schema).iter_errors(context)}


def build(candidates: Sequence[Candidate]) -> dict[str, Any]:
    """Return the context holding every candidate, in candidate order."""
    context: dict[str, Any] = {}
    for path, value in candidates:
        node = context
        for step in path[:-1]:
            child = node.get(step)
            node[step] = node = child if isinstance(child, dict) else {}
        node[path[-1]] = value
    return context


def filter_context(
    candidates: Sequence[Candidate], schema: Mapping[str, Any]
) -> tuple[dict[str, Any], list[Path]]:
    """Return the context of the candidates ``schema`` allows, and the paths of the others."""
    validator = validator_for(schema)
    alive = list(candidates)
    for _ in range(MAX_PASSES):
        context = build(alive)
        charged = _charge_pass(validator.iter_errors(context), _Layout(alive))
        if charged is None:
            break
        if not charged:
            kept = {path for path, _ in alive}
            return context, [path for path, _ in candidates if path not in kept]
        alive = [(path, value) for path, value in alive if path not in charged]
    return filter_one_by_one(candidates, schema)


class _Layout:
    """Where the candidates sit: each object that holds candidates, by child key, in order."""

    def __init__(self, candidates: Sequence[Candidate]) -> None:
        self.paths = {path for path, _ in candidates}
        self.longest = max((len(path) for path in self.paths), default=0)
        self.children: dict[Path, dict[str, list[Path]]] = {}
        for path, _ in candidates:
            for depth in range(len(path)):
                below = self.children.setdefault(path[:depth], {})
                below.setdefault(path[depth], []).append(path)

    def owner(self, where: Sequence[Any]) -> Path | None:
        """The candidate at ``where`` or above it, if any."""
        for depth in range(1, min(len(where), self.longest) + 1):
            path = tuple(where[:depth])
            if path in self.paths:
                return path
        return None

    def under(self, node: Path, keys: Iterator[str] | Sequence[str]) -> set[Path]:
        """The candidates under the children ``keys`` of ``node``."""
        below = self.children.get(node, {})
        return {path for key in keys for path in below.get(key, [])}


def _charge_pass(found: Iterator[Any], layout: _Layout) -> set[Path] | None:
    """Return the candidates the errors charge (None: an error charges nobody in particular)."""
    charged: set[Path] = set()
    past_maximum: set[Path] = set()
    for error in found:
        where = tuple(error.absolute_path)
        if (owner := layout.owner(where)) is not None:
            charged.add(owner)
        elif error.validator == "maxProperties":
            keys = list(layout.children.get(where, {}))
            past_maximum |= layout.under(where, keys[error.validator_value :])
        elif error.validator not in _NEVER_CHARGED:
            named = _named_keys(error)
            if named is not None:
                charged |= layout.under(where, named)
            elif where:  # sipline or sipline.sip: the reserved keys under it
                charged |= layout.under(where, list(layout.children.get(where, {})))
            else:
                return None
    return charged or past_maximum


def _named_keys(error: Any) -> list[str] | None:
    """The keys of the object at the error that the error is about, when it names them."""
    node, schema = error.instance, error.schema
    if "propertyNames" in error.absolute_schema_path:
        return [node] if isinstance(node, str) else None
    if error.validator == "additionalProperties" and isinstance(node, dict):
        return extra_keys(node, schema)  # as the validator finds them (RE2)
    if error.validator == "dependentRequired" and isinstance(node, dict):
        needs: dict[str, list[str]] = error.validator_value
        return [k for k, wanted in needs.items() if k in node and not set(wanted) <= node.keys()]
    return None


def filter_one_by_one(
    candidates: Sequence[Candidate], schema: Mapping[str, Any]
) -> tuple[dict[str, Any], list[Path]]:
    """Add the candidates in order, each kept only if it adds no validation error (rule 4)."""
    kept: list[Candidate] = []
    dropped: list[Path] = []
    current = errors({}, schema)
    for candidate in candidates:
        trial = errors(build([*kept, candidate]), schema)
        if trial <= current:
            kept.append(candidate)
            current = trial
        else:
            dropped.append(candidate[0])
    return build(kept), dropped
