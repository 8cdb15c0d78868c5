"""TwiML transfer documents (chalicelib/twiml.py): Twilio's documented examples, and hostile XML.

The accepted documents are the examples of Twilio's TwiML reference for ``<Sip>``
(twilio.com/docs/api/twiml/sip: a URI, ``username``/``password`` attributes, X- headers in the
URI, ``;region=``), ``<Number>`` (twilio.com/docs/voice/twiml/number) and ``<Refer>``
(twilio.com/docs/voice/twiml/refer). The hostile ones are the classic XML attacks: entity
expansion ("billion laughs", quadratic blowup), external entities, deep nesting, a huge document.
"""

from __future__ import annotations

import pytest

from chalicelib.twiml import (
    MAX_TWIML_CHARS,
    PARSE_FAILURE,
    UNSUPPORTED,
    TwimlRefused,
    TwimlTransfer,
    parse_transfer,
)

DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>'


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (
            f"{DECLARATION}<Response><Dial><Sip>sip:jack@example.com</Sip></Dial></Response>",
            TwimlTransfer("Dial", "sip:jack@example.com",
                          {"sipVerb": "INVITE", "target": "sip:jack@example.com"}),
        ),
        (
            "<Response>\n  <Dial>\n    <Sip username=\"admin\" password=\"1234\">"
            "sip:kate@example.com</Sip>\n  </Dial>\n</Response>",
            TwimlTransfer("Dial", "sip:kate@example.com",
                          {"sipVerb": "INVITE", "target": "sip:kate@example.com",
                           "username": "admin", "password": "1234"}),
        ),
        (
            "<Response><Dial><Sip>sip:jack@example.com?mycustomheader=foo&amp;myotherheader=bar"
            "</Sip></Dial></Response>",
            TwimlTransfer("Dial", "sip:jack@example.com?mycustomheader=foo&myotherheader=bar",
                          {"sipVerb": "INVITE",
                           "target": "sip:jack@example.com?mycustomheader=foo&myotherheader=bar"}),
        ),
        (
            "<Response><Dial><Sip>sip:alice@example.com;region=ie1</Sip></Dial></Response>",
            TwimlTransfer("Dial", "sip:alice@example.com;region=ie1",
                          {"sipVerb": "INVITE", "target": "sip:alice@example.com;region=ie1"}),
        ),
        (
            '<Response><Dial callerId="+15551112222"><Number>+14155551212</Number></Dial>'
            "</Response>",
            TwimlTransfer("Dial", "+14155551212",
                          {"sipVerb": "INVITE", "target": "+14155551212", "from": "+15551112222"}),
        ),
        (
            "<Response><Dial>+14155551212</Dial></Response>",
            TwimlTransfer("Dial", "+14155551212", {"sipVerb": "INVITE", "target": "+14155551212"}),
        ),
        (
            '<Response><Refer action="/handleRefer" method="POST">'
            "<Sip>sip:alice@example.com?X-Name=Alice</Sip></Refer></Response>",
            TwimlTransfer("Refer", "sip:alice@example.com?X-Name=Alice",
                          {"sipVerb": "REFER", "target": "sip:alice@example.com?X-Name=Alice"}),
        ),
    ],
)  # fmt: skip
def test_twilios_documented_transfer_documents_are_read(
    document: str, expected: TwimlTransfer
) -> None:
    assert parse_transfer(document) == expected


BILLION_LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + "".join(
        f'<!ENTITY lol{n} "{("&lol" + (str(n - 1) if n > 1 else "") + ";") * 10}">'
        for n in range(1, 10)
    )
    + "]><Response><Dial>&lol9;</Dial></Response>"
)
QUADRATIC = (
    f'<!DOCTYPE r [<!ENTITY a "{"x" * 1000}">]><Response><Dial>{"&a;" * 700}</Dial></Response>'
)
EXTERNAL = (
    '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    "<Response><Dial><Sip>&xxe;</Sip></Dial></Response>"
)
PARAMETER_ENTITY = (
    '<!DOCTYPE r [<!ENTITY % p SYSTEM "http://127.0.0.1:9/evil.dtd"> %p;]><Response/>'
)


@pytest.mark.parametrize(
    ("document", "code"),
    [
        (BILLION_LAUGHS, PARSE_FAILURE),
        (QUADRATIC, PARSE_FAILURE),
        (EXTERNAL, PARSE_FAILURE),
        (PARAMETER_ENTITY, PARSE_FAILURE),
        ("<Response>" + "<Dial>" * 280 + "</Dial>" * 280 + "</Response>", UNSUPPORTED),
        ("<a>" * 1300, PARSE_FAILURE),
        ("<Response><Dial><Sip>sip:a@b.example</Sip></Dial></Response>" + " " * MAX_TWIML_CHARS,
         PARSE_FAILURE),
        ("", PARSE_FAILURE),
        ("not xml", PARSE_FAILURE),
        ("<Response><Dial><Sip>sip:a@b.example</Sip></Dial>", PARSE_FAILURE),
        ("<Response>\x00</Response>", PARSE_FAILURE),
    ],
    ids=["billion-laughs", "quadratic-blowup", "external-entity", "parameter-entity",
         "deep-nesting", "unclosed-deep-nesting", "over-4000-characters", "empty", "not-xml",
         "unclosed", "nul"],
)  # fmt: skip
def test_hostile_documents_are_refused_before_any_expansion(document: str, code: int) -> None:
    with pytest.raises(TwimlRefused) as refused:
        parse_transfer(document)
    assert refused.value.code == code
    assert len(refused.value.message) < 300


@pytest.mark.parametrize(
    ("document", "named"),
    [
        ("<Response><Say>Transferring you</Say></Response>", "<Say>"),
        ("<Response><Hangup/></Response>", "<Hangup>"),
        ("<Response><Dial><Client>jenny</Client></Dial></Response>", "<Client>"),
        ("<Response><Dial><Conference>room</Conference></Dial></Response>", "<Conference>"),
        ("<Response><Dial><Queue>support</Queue></Dial></Response>", "<Queue>"),
        ("<Response><Dial><Sip>sip:a@b.example</Sip><Sip>sip:c@d.example</Sip></Dial></Response>",
         "<Sip>, <Sip>"),
        ("<Response><Say>Hold on</Say><Dial><Sip>sip:a@b.example</Sip></Dial></Response>",
         "<Say>, <Dial>"),
        ("<Response><Refer><Number>+14155551212</Number></Refer></Response>", "<Number>"),
        ("<Response><Dial><Sip></Sip></Dial></Response>", "<Sip>"),
        ("<Dial><Sip>sip:a@b.example</Sip></Dial>", "<Dial>"),
        ("<Response><Dial>text<Sip>sip:a@b.example</Sip></Dial></Response>", "<Dial>"),
    ],
)  # fmt: skip
def test_what_sipline_does_not_transfer_with_is_named(document: str, named: str) -> None:
    with pytest.raises(TwimlRefused) as refused:
        parse_transfer(document)
    assert refused.value.code == UNSUPPORTED
    assert named in refused.value.message
