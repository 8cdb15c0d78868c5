"""Mustache templates (``systemPrompt``): checked when saved, rendered per call without partials.

1. **Parsed when saved.** Agent create and patch and ``POST /api/calls`` parse the template: one
   that does not parse (an end tag without its start, a section never closed, a set-delimiter tag
   without two delimiters) is refused with 400 naming the field and the parser's reason. Before
   this check, such a template was stored and then failed every call (500).
2. **No partials.** ``{{> name}}`` is refused when saved: pystache loads ``name.mustache`` from the
   working directory, so a partial reads the control plane's files. Rendering gives pystache an
   empty mapping of partials, so even a template stored before rule 1 never reads a file: its
   partials render as nothing.
3. **Parsed again when rendered.** A template stored before rule 1 may not parse: rendering raises
   :class:`TemplateError`, which callers turn into a clean rejection (SIP 480, HTTP 409), not 500.
4. Values are inserted as they are (no HTML escaping), missing names render empty, and objects and
   arrays named whole render as JSON (``{"subkey": "value"}``), not Python's repr.

Walking the parse tree for partials reads pystache's node classes (``_PartialNode``,
``_SectionNode.parsed``, ``_InvertedNode.parsed_section``): the security tests of partials fail
loudly if an upgrade renames them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from functools import lru_cache
from typing import Any

from chalicelib.errors import AgentUnavailable


class TemplateError(ValueError):
    """A template does not parse, or uses a feature sipline refuses; the message says which."""


def _parse(text: str) -> Any:
    from pystache.parser import ParsingError, parse  # imported on first use: cold starts stay short

    try:
        return parse(text, raise_on_mismatch=True)
    except ParsingError as error:
        raise TemplateError(f"does not parse: {error}") from None
    except IndexError:  # pystache's parser on "{{=x=}}": one delimiter where it needs two
        raise TemplateError(
            "does not parse: a set-delimiter tag needs two delimiters, like {{=<% %>=}}"
        ) from None


def _partials(parsed: Any) -> Iterator[str]:
    from pystache.parser import _InvertedNode, _PartialNode, _SectionNode

    for node in parsed._parse_tree:
        if isinstance(node, _PartialNode):
            yield str(node.key)
        elif isinstance(node, _SectionNode):
            yield from _partials(node.parsed)
        elif isinstance(node, _InvertedNode):
            yield from _partials(node.parsed_section)


def check_template(text: str) -> None:
    """Raise TemplateError if ``text`` does not parse or uses a partial (rules 1 and 2)."""
    name = next(_partials(_parse(text)), None)
    if name is not None:
        raise TemplateError(f"partials ({{{{> name}}}}) are not supported (found {{{{> {name}}}}})")


@lru_cache(maxsize=1)
def _renderer() -> Any:
    import pystache

    return pystache.Renderer(escape=lambda text: text, missing_tags="ignore", partials={})


class _JsonDict(dict[str, Any]):
    """A context object that renders as JSON when a template names it whole."""

    def __str__(self) -> str:
        return json.dumps(self, separators=(", ", ": "))


class _JsonList(list[Any]):
    """A context list that renders as JSON when a template names it whole."""

    def __str__(self) -> str:
        return json.dumps(self, separators=(", ", ": "))


def _renderable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return _JsonDict({k: _renderable(v) for k, v in value.items()})
    if isinstance(value, list):
        return _JsonList(_renderable(v) for v in value)
    return value


def render(template: str | None, context: Mapping[str, Any]) -> str | None:
    """Render a Mustache template with ``context`` (None stays None).

    Raises:
        TemplateError: the template does not parse (one stored before it was checked).
    """
    if template is None:
        return None
    return str(_renderer().render(_parse(template), _renderable(context)))


def render_system_prompt(template: str | None, context: Mapping[str, Any]) -> str | None:
    """Render a call's ``systemPrompt``; one that does not parse makes the agent unavailable.

    Raises:
        AgentUnavailable: the stored template does not parse (SIP 480, HTTP 409).
    """
    try:
        return render(template, context)
    except TemplateError as error:
        raise AgentUnavailable(
            f"callTemplate.systemPrompt {error}; correct it with PATCH /api/agents/{{agentId}}"
        ) from None
