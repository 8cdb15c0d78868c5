"""Every RFC 4475 torture message, run from its bit-exact file, judged as the RFC says.

``valid/`` holds the messages RFC 4475 calls legal (§3.1.1, and §3.3.11-§3.3.14, §3.4.1):
each must parse and pass :func:`validate_request` / :func:`validate_response`.
``invalid/`` holds the rest: each must be caught either by :func:`parse_message` (syntax,
framing) or by validation (semantics), with the status the RFC asks for. ``EXPECTED`` says
which, per message; known deviations sit in ``XFAIL`` and run with ``strict=True``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pytest

from relay.sip.errors import SipParseError
from relay.sip.syntax.message import Request, Response, error_response
from relay.sip.syntax.parser import parse_message, validate_request, validate_response
from relay.sip.syntax.uri import AbsoluteUri, SipUri

VECTORS = Path(__file__).parents[4] / "vectors" / "sip" / "rfc4475"
SDP_ONLY = frozenset({"application/sdp"})


@dataclass(frozen=True)
class Caught:
    """Where the error must surface, with which status and message."""

    stage: str  # "parse" or "validate"
    status: int
    message: str


# RFC 4475 section, then what the RFC expects of a receiver, for each invalid message.
EXPECTED: dict[str, Caught] = {
    # §3.1.2.1 extraneous separators in Via/Contact: 400.
    "badinv01": Caught("validate", 400, "Malformed parameter in Via header field: ';;'"),
    # §3.1.2.2 Content-Length larger than the datagram's body: 400.
    "clerr": Caught("parse", 400, "Content-Length 9999 exceeds the 154 body bytes received"),
    # §3.1.2.3 negative Content-Length: error, framing lost.
    "ncl": Caught("parse", 400, "Invalid Content-Length header field: '-999'"),
    # §3.1.2.4 CSeq beyond 2**32: 400.
    "scalar02": Caught("parse", 400, "Invalid CSeq header field: '36893488147419103232 REGISTER'"),
    # §3.1.2.5 response with overlarge CSeq: drop.
    "scalarlg": Caught("parse", 400, "Invalid CSeq header field: '9292394834772304023312 OPTIONS'"),
    # §3.1.2.6 unterminated quoted display name: 400.
    "quotbal": Caught("validate", 400, "Unterminated quoted display name in To header field"),
    # §3.1.2.7 Request-URI in <>: 400.
    "ltgtruri": Caught("parse", 400, "Malformed Request-URI: '<sip:user@example.com>'"),
    # §3.1.2.8 LWS inside the Request-URI: 400.
    "lwsruri": Caught(
        "parse", 400, "Malformed request line: 'INVITE sip:user@example.com; lr SIP/2.0'"
    ),
    # §3.1.2.9 several SP between request-line elements: 400.
    "lwsstart": Caught(
        "parse", 400, "Malformed request line: 'INVITE  sip:user@example.com  SIP/2.0'"
    ),
    # §3.1.2.10 SP at the end of the request line: 400.
    "trws": Caught(
        "parse",
        400,
        "Malformed request line: 'OPTIONS sip:remote-target@example.com SIP/2.0  '",
    ),
    # §3.1.2.11 escaped headers in the Request-URI: 400.
    "escruri": Caught("validate", 400, "Request-URI must not contain headers"),
    # §3.1.2.12 Date not in GMT: 400.
    "baddate": Caught("validate", 400, "Invalid Date header field: time zone must be GMT"),
    # §3.1.2.13 addr-spec with "?" not enclosed in <>: 400.
    "regbadct": Caught("validate", 400, "URI in Contact header field must be enclosed in <>"),
    # §3.1.2.14 spaces inside <addr-spec>: 400.
    "badaspec": Caught("validate", 400, "Whitespace inside <URI> in To header field"),
    # §3.1.2.15 display name with a comma, unquoted: 400.
    "baddn": Caught("validate", 400, "Invalid display name in From header field"),
    # §3.1.2.16 SIP/7.0: 505.
    "badvers": Caught("parse", 505, "Unsupported SIP version: SIP/7.0"),
    # §3.1.2.17 CSeq method differs from the request method: 400.
    "mismatch01": Caught("parse", 400, "CSeq method INVITE does not match request method OPTIONS"),
    # §3.1.2.18 unknown method and CSeq mismatch: 400 (501 also allowed).
    "mismatch02": Caught(
        "parse", 400, "CSeq method INVITE does not match request method NEWMETHOD"
    ),
    # §3.1.2.19 status code 4294967301: drop.
    "bigcode": Caught(
        "parse", 400, "Malformed status line: 'SIP/2.0 4294967301 better not break the receiver'"
    ),
    # §3.2.1 branch is the bare magic cookie: may be rejected with 400.
    "badbranch": Caught(
        "validate", 400, "Via branch holds the magic cookie but no transaction identifier"
    ),
    # §3.3.1 To, From, Call-ID, Max-Forwards missing: 400.
    "insuf": Caught("parse", 400, "Missing mandatory header field: To"),
    # §3.3.2 unknown Request-URI scheme: 416.
    "unkscm": Caught("validate", 416, "Unsupported URI scheme: nobodyknowsthisscheme"),
    # §3.3.3 known but atypical scheme we never serve: 416.
    "novelsc": Caught("validate", 416, "Unsupported URI scheme: soap.beep"),
    # §3.3.4 REGISTER whose To is not a SIP URI: a registrar answers 400.
    "unksm2": Caught("validate", 400, "To of a REGISTER must be a SIP or SIPS URI"),
    # §3.3.5 unsupported Require: 420 with Unsupported.
    "bext01": Caught(
        "validate",
        420,
        "Unsupported option tags in Require: nothingSupportsThis, nothingSupportsThisEither",
    ),
    # §3.3.6 body of an unknown Content-Type: 415 with Accept.
    "invut": Caught("validate", 415, "Unsupported Content-Type: application/unknownformat"),
    # §3.3.7 unknown Authorization scheme: a registrar answers 401 (see XFAIL).
    "regaut01": Caught("validate", 401, "Unknown authorization scheme"),
    # §3.3.8 several values in single-value fields: 400.
    "multi01": Caught("parse", 400, "Multiple To header fields"),
    # §3.3.9 two Content-Length values: 400.
    "mcl01": Caught("parse", 400, "Multiple Content-Length header fields"),
    # §3.3.10 200 OK with a second (broadcast) Via: a UAC discards it.
    "bcast": Caught("validate", 400, "Response carries more than one Via header field value"),
    # §3.3.15 INVITE whose Accept excludes SDP: 406.
    "sdp01": Caught("validate", 406, "Accept header field excludes application/sdp"),
}

XFAIL: dict[str, str] = {
    "regaut01": "the 401 for an unknown auth scheme is relay/sip/auth.py's job, not parsing",
}

# The media types the relay takes, where the RFC case needs a policy to be judged.
ACCEPT: dict[str, frozenset[str]] = {"invut": SDP_ONLY}


def _names(kind: str) -> list[str]:
    return sorted(path.stem for path in (VECTORS / kind).glob("*.dat"))


def _params(kind: str) -> list[object]:
    return [
        pytest.param(name, marks=pytest.mark.xfail(reason=XFAIL[name], strict=True))
        if name in XFAIL
        else name
        for name in _names(kind)
    ]


def _load(kind: str, name: str) -> bytes:
    return (VECTORS / kind / f"{name}.dat").read_bytes()


def _validate(message: Request | Response, name: str) -> None:
    if isinstance(message, Request):
        validate_request(message, accept=ACCEPT.get(name))
    else:
        validate_response(message)


def test_the_corpus_holds_all_49_messages_of_rfc4475_section_3() -> None:
    assert len(_names("valid")) + len(_names("invalid")) == 49
    assert set(_names("invalid")) == set(EXPECTED)


def test_vector_files_match_their_recorded_sha256() -> None:
    for line in (VECTORS / "SHA256SUMS").read_text().splitlines():
        digest, relative = line.split("  ")
        assert hashlib.sha256((VECTORS / relative).read_bytes()).hexdigest() == digest, relative


@pytest.mark.parametrize("name", _params("valid"))
def test_valid_torture_message_parses_and_validates(name: str) -> None:
    message = parse_message(_load("valid", name))
    _validate(message, name)


@pytest.mark.parametrize("name", _params("invalid"))
def test_invalid_torture_message_is_caught_with_the_rfc_status(name: str) -> None:
    expected = EXPECTED[name]
    data = _load("invalid", name)
    with pytest.raises(SipParseError) as caught:
        message = parse_message(data)
        assert expected.stage == "validate", "parse_message accepted a message it must reject"
        _validate(message, name)
    assert (caught.value.status_hint, caught.value.message) == (expected.status, expected.message)


@pytest.mark.parametrize("name", [n for n in _names("invalid") if n not in XFAIL])
def test_invalid_request_gets_a_stateless_reply_unless_it_must_be_dropped(name: str) -> None:
    with pytest.raises(SipParseError) as caught:
        message = parse_message(_load("invalid", name))
        _validate(message, name)
    reply = error_response(caught.value, to_tag="t0")
    if name in ("scalarlg", "bigcode", "bcast"):  # responses are never answered
        assert reply is None
    else:
        assert reply is not None
        assert reply.status == EXPECTED[name].status
        assert reply.reason == " ".join(EXPECTED[name].message.split())


def test_wsinv_unfolds_and_reads_every_tortuous_field() -> None:
    request = parse_message(_load("valid", "wsinv"))
    assert isinstance(request, Request)
    assert request.to.tag == "1918181833n"
    assert request.from_.display == 'J Rosenberg \\"'
    assert request.from_.tag == "98asjd8"
    assert request.max_forwards == 68
    assert (request.cseq.number, request.cseq.method) == (9, "INVITE")
    assert [(v.transport, v.host, v.branch) for v in request.vias] == [
        ("UDP", "192.0.2.2", "390skdjuw"),
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239"),
    ]
    assert request.headers.get("NewFangledHeader") == "newfangled value continued newfangled value"
    assert request.contacts[0].display == 'Quoted string ""'
    assert request.contacts[0].param("q") == "0.33"
    assert len(request.body) == 150  # Content-Length wins over the 152 bytes present


def test_intmeth_keeps_the_exotic_method_and_userinfo() -> None:
    request = parse_message(_load("valid", "intmeth"))
    assert isinstance(request, Request)
    assert request.method == "!interesting-Method0123456789_*+`.%indeed'~"
    assert isinstance(request.uri, SipUri)
    assert request.uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert request.uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert request.to.display == "BEL:\x07 NUL:\x00 DEL:\x7f"
    assert request.from_.param("fromParam''~+*_!.-%") == "работающий"


def test_escapes_are_decoded_in_user_parts_and_kept_elsewhere() -> None:
    request = parse_message(_load("valid", "esc01"))
    assert isinstance(request, Request) and isinstance(request.uri, SipUri)
    assert request.uri.user == "sips:user@example.com"
    assert str(request.uri) == "sip:sips%3Auser%40example.com@example.net"
    contact = request.contacts[0].uri
    assert isinstance(contact, SipUri) and contact.user == "caller"
    assert contact.equivalent(SipUri.parse("sip:caller@host5.example.net;lr;name=value%2541"))
    null = parse_message(_load("valid", "escnull"))
    assert isinstance(null.to.uri, SipUri) and null.to.uri.user == "null-\x00-null"


def test_contact_parameters_belong_to_the_header_without_angle_brackets() -> None:
    bare = parse_message(_load("valid", "cparam01")).contacts[0]
    angled = parse_message(_load("valid", "cparam02")).contacts[0]
    assert bare.param("unknownparam") == "" and isinstance(bare.uri, SipUri)
    assert bare.uri.params == ()
    assert isinstance(angled.uri, SipUri) and angled.uri.param("unknownparam") == ""
    assert angled.params == ()


def test_rfc2543_invite_is_accepted_without_branch_max_forwards_or_length() -> None:
    request = parse_message(_load("valid", "inv2543"))
    assert isinstance(request, Request)
    assert request.branch is None and request.max_forwards is None
    assert request.body.endswith(b"m=audio 49217 RTP/AVP 0\r\n")


def test_dblreq_ignores_the_second_request_after_content_length_zero() -> None:
    request = parse_message(_load("valid", "dblreq"))
    assert isinstance(request, Request) and request.method == "REGISTER" and request.body == b""


def test_unknown_schemes_in_header_fields_parse_as_absolute_uris() -> None:
    request = parse_message(_load("invalid", "unksm2"))
    assert request.to.uri == AbsoluteUri(scheme="isbn", opaque="2983792873")
    assert request.from_.uri == AbsoluteUri(scheme="http", opaque="//www.example.com")
    assert request.contacts[0].uri == AbsoluteUri(scheme="name", opaque="John_Smith")


def test_zero_max_forwards_is_refused_only_when_forwarding() -> None:
    request = parse_message(_load("valid", "zeromf"))
    assert isinstance(request, Request)
    with pytest.raises(SipParseError, match="^Max-Forwards exhausted$") as caught:
        validate_request(request, forwarding=True)
    assert caught.value.status_hint == 483


def test_unreason_keeps_the_utf8_reason_phrase() -> None:
    response = parse_message(_load("valid", "unreason"))
    assert isinstance(response, Response)
    assert response.reason == "= 2**3 * 5**2 но сто девяносто девять - простое"
    noreason = parse_message(_load("valid", "noreason"))
    assert isinstance(noreason, Response) and (noreason.status, noreason.reason) == (100, "")
