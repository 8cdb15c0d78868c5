"""JSON Schema's regular-expression keywords, run by RE2 for ``contextSchema`` (pure).

jsonschema runs ``pattern``, ``patternProperties`` and the extras of ``additionalProperties`` with
Python's ``re``, a backtracking engine: ``^(a+)+$`` against a caller's ``X-A: aaaa...a!`` takes
time exponential in the value's length, and one INVITE holds the control plane. The validator of
:func:`validator_class` runs those three keywords with RE2 instead (linear time, no backtracking),
with jsonschema's own error messages, so ``context_schema.py`` reads its errors as before.

What RE2 cannot run is refused when the schema is saved (``context_schema_rules.py``): a pattern
RE2 does not compile (backreferences, lookaround), and ``unevaluatedProperties`` beside
``patternProperties`` (jsonschema's ``unevaluatedProperties`` matches ``patternProperties`` with
``re`` itself). On what both engines compile, RE2 is closer to the ECMA-262 dialect JSON Schema
specifies: ``\\d`` is ``[0-9]`` and ``$`` matches only at the very end.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from functools import lru_cache
from typing import Any

from chalicelib.routing import compile_pattern


@lru_cache(maxsize=1024)
def _compiled(pattern: str) -> Any:
    return compile_pattern(pattern)


def search(pattern: str, text: str) -> bool:
    """Return True if RE2 finds ``pattern`` in ``text`` (ValueError if it does not compile)."""
    return _compiled(pattern).search(text) is not None


def extra_keys(instance: Mapping[str, Any], schema: Mapping[str, Any]) -> list[str]:
    """The keys of ``instance`` that neither ``properties`` nor ``patternProperties`` cover."""
    known = schema.get("properties", {})
    patterns = list(schema.get("patternProperties", {}))
    return [k for k in instance if k not in known and not any(search(p, k) for p in patterns)]


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[Any]:
    from jsonschema.exceptions import ValidationError

    if validator.is_type(instance, "string") and not search(pattern, instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


def _pattern_properties(
    validator: Any, patterns: Mapping[str, Any], instance: Any, schema: Any
) -> Iterator[Any]:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in patterns.items():
        for key, value in instance.items():
            if search(pattern, key):
                yield from validator.descend(value, subschema, path=key, schema_path=pattern)


def _additional_properties(
    validator: Any, additional: Any, instance: Any, schema: Any
) -> Iterator[Any]:
    from jsonschema.exceptions import ValidationError

    if not validator.is_type(instance, "object"):
        return
    extras = sorted(set(extra_keys(instance, schema)), key=str)
    if validator.is_type(additional, "object"):
        for extra in extras:
            yield from validator.descend(instance[extra], additional, path=extra)
    elif not additional and extras:
        if "patternProperties" in schema:  # jsonschema's wording, word for word
            verb = "does" if len(extras) == 1 else "do"
            patterns = ", ".join(repr(each) for each in sorted(schema["patternProperties"]))
            quoted = ", ".join(repr(each) for each in extras)
            yield ValidationError(f"{quoted} {verb} not match any of the regexes: {patterns}")
        else:
            verb = "was" if len(extras) == 1 else "were"
            quoted = ", ".join(repr(each) for each in extras)
            yield ValidationError(
                f"Additional properties are not allowed ({quoted} {verb} unexpected)"
            )


@lru_cache(maxsize=1)
def validator_class() -> Any:
    """Return draft 2020-12's validator with the three regular-expression keywords on RE2."""
    from jsonschema import Draft202012Validator, validators  # first use: cold starts stay short

    return validators.extend(
        Draft202012Validator,
        {
            "pattern": _pattern,
            "patternProperties": _pattern_properties,
            "additionalProperties": _additional_properties,
        },
    )
