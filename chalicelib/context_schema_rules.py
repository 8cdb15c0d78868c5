"""What a ``contextSchema`` may hold: checked when it is saved, and again before a stored one is used.

``docs/api.md`` ("The call template") documents the rules. A schema that breaks one used to be
stored and then fail every call routed to the agent (500), hang it, or make the control plane
fetch a URL of the schema's choosing:

1. **Depth.** At most :data:`MAX_SCHEMA_DEPTH` arrays or objects deep: deeper, even checking it
   against the meta-schema runs out of Python's recursion limit.
2. **A JSON Schema**, draft 2020-12, by its meta-schema. A ``$schema`` at the top is allowed and
   ignored: the schema is always read as 2020-12.
3. **Local references.** Every ``$ref`` and ``$dynamicRef`` starts with ``#`` and resolves, within
   the schema, to a subschema: a JSON pointer (``#/$defs/name``) or an anchor (``#name``).
   jsonschema itself fetches a remote reference with ``urlopen`` on every validation; sipline's
   validator has no retrieval at all, and such a schema is refused when saved. ``$id`` and
   ``$schema`` are allowed only at the top, so every reference resolves against the one base
   (the simplest rule that is sound: a nested ``$id`` would re-base the references under it).
4. **Bounded work.** Applying the schema to one place of the context must end, and stay small.
   References and the keywords that apply a subschema to the same place (``allOf``, ``anyOf``,
   ``oneOf``, ``not``, ``if``/``then``/``else``, ``dependentSchemas``) must not lead back to where
   they started (``{"$ref": "#"}`` never ends; a reference reached through ``properties`` or
   ``items`` descends into the context, and recursion that way is fine), and together apply at
   most :data:`MAX_EXPANSION` subschemas to one place (references that fan out multiply), in
   chains of at most :data:`MAX_CHAIN`.
5. **Patterns are RE2 expressions**, as routing patterns are: every ``pattern`` and
   ``patternProperties`` key compiles with RE2, and the validator runs them with RE2
   (``schema_patterns.py``); ``unevaluatedProperties`` cannot be combined with
   ``patternProperties``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from chalicelib.context_limits import nested_deeper_than
from chalicelib.schema_patterns import search

MAX_SCHEMA_DEPTH = 64
MAX_EXPANSION = 1000
MAX_CHAIN = 16
_REFERENCES = ("$ref", "$dynamicRef")
_SAME_PLACE = ("not", "if", "then", "else")
_SAME_PLACE_LISTS = ("allOf", "anyOf", "oneOf")
Edges = dict[int, list[tuple[int, str]]]
"""Per subschema (by ``id``): the subschemas applied to the same place, with how (a label)."""


class SchemaRefused(ValueError):
    """A ``contextSchema`` breaks one of the rules; the message names the rule and what broke it."""


def check_context_schema(schema: Mapping[str, Any]) -> None:
    """Raise SchemaRefused if ``schema`` breaks one of the module's rules."""
    if nested_deeper_than(json.dumps(schema), MAX_SCHEMA_DEPTH):
        raise SchemaRefused(f"is nested more than {MAX_SCHEMA_DEPTH} levels deep")
    _check_meta_schema(schema)
    subschemas = _subschemas(schema)
    for node in subschemas.values():
        _check_keywords(node, top=node is schema)
    if any("unevaluatedProperties" in node for node in subschemas.values()) and any(
        "patternProperties" in node for node in subschemas.values()
    ):
        raise SchemaRefused(
            "unevaluatedProperties cannot be combined with patternProperties"
            " (its patterns would run on Python's backtracking re, not RE2)"
        )
    _check_work(_same_place_edges(schema, subschemas))


def _check_meta_schema(schema: Mapping[str, Any]) -> None:
    from jsonschema import Draft202012Validator  # imported on first use: cold starts stay short
    from jsonschema.exceptions import SchemaError

    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as error:
        raise SchemaRefused(f"is not a valid JSON Schema: {error.message}") from None


def _subschemas(schema: Mapping[str, Any]) -> dict[int, Mapping[str, Any]]:
    """Every subschema that is an object, by ``id``, found by the keywords of draft 2020-12."""
    from referencing.jsonschema import DRAFT202012

    found: dict[int, Mapping[str, Any]] = {}
    stack: list[Any] = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, Mapping) and id(node) not in found:
            found[id(node)] = node
            stack.extend(DRAFT202012.subresources_of(node))
    return found


def _check_keywords(node: Mapping[str, Any], *, top: bool) -> None:
    for keyword in ("$id", "$schema"):
        if keyword in node and not top:
            raise SchemaRefused(
                f"{keyword} is only allowed at the top of the schema (found {node[keyword]!r})"
            )
    patterns = [("pattern", node["pattern"])] if isinstance(node.get("pattern"), str) else []
    patterns += [("patternProperties", p) for p in node.get("patternProperties", {})]
    for keyword, pattern in patterns:
        try:
            search(pattern, "")
        except ValueError as error:
            raise SchemaRefused(f"{keyword} {error}") from None


def _same_place_edges(schema: Mapping[str, Any], subschemas: dict[int, Any]) -> Edges:
    from referencing import Registry
    from referencing.exceptions import Unresolvable
    from referencing.jsonschema import DRAFT202012

    resolver = Registry().resolver_with_root(DRAFT202012.create_resource(schema))
    edges: Edges = {}
    for key, node in subschemas.items():
        out = edges[key] = []
        for keyword in _REFERENCES:
            if (ref := node.get(keyword)) is None:
                continue
            label = f"{keyword} {ref!r}"
            if not isinstance(ref, str) or not ref.startswith("#"):
                raise SchemaRefused(f"{label} is not local: a reference must start with '#'")
            try:
                target = resolver.lookup(ref).contents
            except Unresolvable:
                raise SchemaRefused(f"{label} does not resolve within the schema") from None
            if isinstance(target, bool):
                continue
            if id(target) not in subschemas:
                raise SchemaRefused(f"{label} does not point to a schema")
            out.append((id(target), label))
        out += [(id(child), keyword) for keyword, child in _applied_in_place(node)]
    return edges


def _applied_in_place(node: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """The subschemas ``node`` applies to the place it is applied to (references aside)."""
    for keyword in _SAME_PLACE:
        if isinstance(child := node.get(keyword), Mapping):
            yield keyword, child
    for keyword in _SAME_PLACE_LISTS:
        for child in node.get(keyword, []):
            if isinstance(child, Mapping):
                yield keyword, child
    for child in node.get("dependentSchemas", {}).values():
        if isinstance(child, Mapping):
            yield "dependentSchemas", child


def _check_work(edges: Edges) -> None:
    """Refuse a loop, more than MAX_EXPANSION subschemas, or a chain over MAX_CHAIN (rule 4)."""
    expansion: dict[int, int] = {}
    chain: dict[int, int] = {}
    for start in edges:
        path: list[tuple[int, Iterator[tuple[int, str]]]] = [(start, iter(edges[start]))]
        labels: list[str] = []  # labels[i]: how path[i + 1] is reached from path[i]
        while path:
            node, children = path[-1]
            for child, label in children:
                if child in expansion:
                    continue
                if any(child == on_path for on_path, _ in path):
                    _refuse_loop(labels[[n for n, _ in path].index(child) :] + [label])
                path.append((child, iter(edges[child])))
                labels.append(label)
                break
            else:
                path.pop()
                if labels:
                    labels.pop()
                below = [target for target, _ in edges[node]]
                expansion[node] = min(MAX_EXPANSION + 1, 1 + sum(expansion[t] for t in below))
                chain[node] = 1 + max((chain[t] for t in below), default=0)
                if expansion[node] > MAX_EXPANSION:
                    raise SchemaRefused(
                        f"applies more than {MAX_EXPANSION} subschemas to one place of the"
                        " context (references that fan out multiply)"
                    )
                if chain[node] > MAX_CHAIN:
                    raise SchemaRefused(
                        f"chains more than {MAX_CHAIN} references or in-place subschemas"
                        " (allOf, anyOf, oneOf, not, if, then, else, dependentSchemas) in a row"
                    )


def _refuse_loop(labels: list[str]) -> None:
    reference = next((label for label in labels if label.startswith("$")), labels[-1])
    raise SchemaRefused(
        f"{reference} loops: it leads back to the same place of the context without descending"
        " into it, so checking a context against it would never end"
    )
