"""The TwiML a Twilio bot transfers a call with, read into a transfer ask (pure).

Theory of operation (``docs/agents.md``, "Transferring the Twilio way"). A bot written for Twilio
transfers by updating its call (``POST /2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json``
with ``Twiml=...``). sipline accepts three documents and maps each onto a ``coldTransfer``:

- ``<Response><Dial><Sip>uri</Sip></Dial></Response>``: a bridged cold transfer to ``uri``
  (``sipVerb: INVITE``); ``<Sip>``'s ``username`` and ``password`` attributes answer the
  target's challenge, ``<Dial callerId>`` is ``from``;
- ``<Response><Dial><Number>+15551234567</Number></Dial></Response>`` (or the number as
  ``<Dial>``'s text): the same, to an E.164 number (sent over the account's ``transferTrunk``);
- ``<Response><Refer><Sip>uri</Sip></Refer></Response>``: a REFER cold transfer.

Anything else (another verb or noun, two nouns, text where none belongs) is refused with
:class:`TwimlRefused` naming the element, which the route answers in Twilio's error shape.

Hostile documents: the text is bounded first (:data:`MAX_TWIML_CHARS`, Twilio's own limit of the
``Twiml`` parameter), then parsed by ``defusedxml`` with DTDs forbidden, so entity expansion
("billion laughs"), external entities and DTD tricks are refused before any expansion; the
elements are bounded (:data:`MAX_ELEMENTS`) and the depth needs no bound of its own: 4,000
characters hold at most ~1,300 nested elements, which ElementTree builds without recursion, and
only three levels are read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from xml.etree.ElementTree import Element, ParseError

MAX_TWIML_CHARS = 4000
"""Twilio's limit on the ``Twiml`` parameter of a call update."""
MAX_ELEMENTS = 16
"""Elements one transfer document may hold (three are needed)."""
PARSE_FAILURE = 12100
"""Twilio's error code "Document parse failure"."""
UNSUPPORTED = 12200
"""Twilio's error code "Schema validation warning": used for what sipline does not do."""


class TwimlRefused(ValueError):
    """The document is not one sipline transfers with; ``code`` is Twilio's error code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class TwimlTransfer:
    """What a transfer document asks: the verb, the target and the ``coldTransfer`` parameters."""

    verb: str
    target: str
    parameters: dict[str, Any] = field(default_factory=dict, repr=False)


def parse_transfer(text: str) -> TwimlTransfer:
    """Read ``text`` as one of the module's three documents, or raise TwimlRefused."""
    if len(text) > MAX_TWIML_CHARS:
        raise TwimlRefused(
            PARSE_FAILURE, f"Twiml is {len(text)} characters; the limit is {MAX_TWIML_CHARS}"
        )
    root = _parse(text)
    if root.tag != "Response":
        raise TwimlRefused(
            UNSUPPORTED, f"the document's root must be <Response>, not <{_tag(root)}>"
        )
    verb = _only_child(root, "<Response>")
    if verb.tag == "Dial":
        return _dial(verb)
    if verb.tag == "Refer":
        sip = _only_child(verb, "<Refer>")
        if sip.tag != "Sip":
            raise TwimlRefused(UNSUPPORTED, f"<Refer> takes <Sip>; <{_tag(sip)}> is not supported")
        target = _text(sip)
        return TwimlTransfer("Refer", target, {"target": target, "sipVerb": "REFER"})
    raise TwimlRefused(
        UNSUPPORTED,
        f"<{_tag(verb)}> is not supported: sipline transfers with <Dial><Sip>, <Dial><Number>"
        " or <Refer><Sip>",
    )


def _parse(text: str) -> Element:
    from defusedxml import DefusedXmlException
    from defusedxml.ElementTree import fromstring

    try:
        root: Element = fromstring(text, forbid_dtd=True)
    except DefusedXmlException as error:
        raise TwimlRefused(PARSE_FAILURE, f"Twiml refused: {type(error).__name__}") from None
    except (ParseError, ValueError) as error:
        raise TwimlRefused(PARSE_FAILURE, f"Twiml does not parse: {str(error)[:120]}") from None
    if sum(1 for _ in root.iter()) > MAX_ELEMENTS:
        raise TwimlRefused(UNSUPPORTED, f"Twiml holds more than {MAX_ELEMENTS} elements")
    return root


def _dial(dial: Element) -> TwimlTransfer:
    parameters: dict[str, Any] = {"sipVerb": "INVITE"}
    caller_id = dial.get("callerId")
    if caller_id:
        parameters["from"] = caller_id
    if len(dial) == 0:  # <Dial>+15551234567</Dial>: Twilio's shorthand for one <Number>
        target = _text(dial)
        return TwimlTransfer("Dial", target, parameters | {"target": target})
    noun = _only_child(dial, "<Dial>")
    if (dial.text or "").strip():
        raise TwimlRefused(UNSUPPORTED, "<Dial> holds text beside its noun")
    if noun.tag not in ("Sip", "Number"):
        raise TwimlRefused(
            UNSUPPORTED, f"<Dial><{_tag(noun)}> is not supported: use <Sip> or <Number>"
        )
    target = _text(noun)
    parameters["target"] = target
    if noun.tag == "Sip":
        for attribute in ("username", "password"):
            value = noun.get(attribute)
            if value:
                parameters[attribute] = value
    return TwimlTransfer("Dial", target, parameters)


def _only_child(element: Element, where: str) -> Element:
    children = list(element)
    if len(children) != 1:
        names = ", ".join(f"<{_tag(c)}>" for c in children[:4]) or "nothing"
        raise TwimlRefused(UNSUPPORTED, f"{where} must hold exactly one element (it holds {names})")
    return children[0]


def _text(element: Element) -> str:
    text = (element.text or "").strip()
    if not text:
        raise TwimlRefused(UNSUPPORTED, f"<{_tag(element)}> names no target")
    return text


def _tag(element: Element) -> str:
    """An element's name as an error quotes it (bounded: a hostile tag may be long)."""
    return str(element.tag)[:40]
