"""An answered outgoing call whose far end the test plays, for the REFER tests.

Alice (the endpoint under test, 192.0.2.1) calls Bob (192.0.2.4) in the shape of RFC 3261
§24.2; Bob answers with F11's 200 OK. Bob's later requests in the dialog (NOTIFY, REFER) are
literal text in the shape of RFC 3515 §4.1 and RFC 5589 §6.1, filled with the dialog's
Call-ID and tags; responses to Alice's requests copy the request's Via, From, To, Call-ID
and CSeq as RFC 3261 §8.2.6 says. Time is virtual.
"""

from __future__ import annotations

from relay.ids import SeededIdSource
from relay.sip.address import Address, Transport
from relay.sip.digest import Credentials
from relay.sip.endpoint import SipEndpoint
from relay.sip.events import Event
from relay.sip.sdp.description import SessionDescription
from relay.sip.syntax.message import Request, Response
from relay.sip.syntax.parser import parse_message
from relay.sip.syntax.uri import SipUri
from relay.sip.transaction.timers import Timers
from relay.sip.usage.dial import place_call
from relay.sip.usage.outgoing import OutgoingCall
from relay.sip.usage.table import UsageStarter

ALICE = Address("192.0.2.1", 5060)
BOB = Address("192.0.2.4", 5060)
BOB_TAG = "a6c85cf"
OFFER = (  # RFC 3264 §10.1, audio only, numeric addresses
    "v=0\r\no=alice 2890844526 2890844526 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\n"
    "t=0 0\r\nm=audio 49170 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)
ANSWER = (
    "v=0\r\no=bob 2808844564 2808844564 IN IP4 192.0.2.4\r\ns=-\r\nc=IN IP4 192.0.2.4\r\n"
    "t=0 0\r\nm=audio 49174 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)


class AnsweredCall:
    """The endpoint under test with one answered outgoing call to Bob."""

    def __init__(
        self,
        *,
        credentials: Credentials | None = None,
        usage_starters: tuple[UsageStarter, ...] | None = None,
    ) -> None:
        self.core = SipEndpoint({Transport.UDP: ALICE}, user_agent="sipline-test",
                                timers=Timers(), ids=SeededIdSource(11),
                                usage_starters=usage_starters)  # fmt: skip
        self.now = 0.0
        self.sent: list[tuple[Request | Response, Address]] = []
        self.events: list[Event] = []
        self.call: OutgoingCall = place_call(
            self.core, targets=(BOB,), request_uri=SipUri.parse("sip:bob@biloxi.com"),
            from_user="alice", offer=SessionDescription.parse(OFFER.encode()),
            preference=("PCMU",), credentials=credentials, ring_timeout_s=60.0, now=0.0,
        )  # fmt: skip
        self.pump()
        self.respond(self.requests("INVITE")[-1], "200 OK", sdp=ANSWER)
        self.notify_cseq = 1000

    def pump(self) -> list[tuple[Request | Response, Address]]:
        new = [(parse_message(data), to) for data, to in self.core.datagrams_to_send()]
        self.sent.extend(new)
        while (event := self.core.next_event()) is not None:
            self.events.append(event)
        return new

    def requests(self, method: str) -> list[Request]:
        return [m for m, _ in self.sent if isinstance(m, Request) and m.method == method]

    def responses(self, method: str) -> list[Response]:
        return [m for m, _ in self.sent if isinstance(m, Response) and m.cseq.method == method]

    def events_of(self, kind: type) -> list[Event]:
        return [event for event in self.events if isinstance(event, kind)]

    def receive(self, text: str) -> list[tuple[Request | Response, Address]]:
        self.core.receive_datagram(text.encode(), BOB, self.now)
        return self.pump()

    def respond(
        self, request: Request, status: str, *, sdp: str = "", extra: str = ""
    ) -> list[tuple[Request | Response, Address]]:
        """Answer ``request`` as Bob, with his tag and Contact (RFC 3261 §8.2.6)."""
        to = request.headers.get("To") or ""
        if ";tag=" not in to:
            to += f";tag={BOB_TAG}"
        lines = [
            f"SIP/2.0 {status}",
            f"Via: {request.headers.get('Via')};received=192.0.2.1",
            f"From: {request.headers.get('From')}",
            f"To: {to}",
            f"Call-ID: {request.call_id}",
            f"CSeq: {request.headers.get('CSeq')}",
            "Contact: <sip:bob@192.0.2.4>",
            *[line for line in extra.split("\r\n") if line],
        ]
        if sdp:
            lines.append("Content-Type: application/sdp")
        lines.append(f"Content-Length: {len(sdp)}")
        return self.receive("\r\n".join(lines) + "\r\n\r\n" + sdp)

    def bob_request(
        self,
        method: str,
        headers: list[str],
        body: str = "",
        *,
        cseq: int | None = None,
    ) -> list[tuple[Request | Response, Address]]:
        """Send a request of Bob's in the call's dialog (RFC 3515 §4.1's F3 shape)."""
        if cseq is None:
            self.notify_cseq += 1
            cseq = self.notify_cseq
        invite = self.requests("INVITE")[-1]
        lines = [
            f"{method} sip:alice@192.0.2.1:5060 SIP/2.0",
            f"Via: SIP/2.0/UDP 192.0.2.4:5060;branch=z9hG4bK-{method.lower()}{cseq}",
            "Max-Forwards: 70",
            f"From: Bob <sip:bob@biloxi.com>;tag={BOB_TAG}",
            f"To: {invite.headers.get('From')}",
            f"Call-ID: {invite.call_id}",
            f"CSeq: {cseq} {method}",
            "Contact: <sip:bob@192.0.2.4>",
            *headers,
            f"Content-Length: {len(body.encode())}",
        ]
        return self.receive("\r\n".join(lines) + "\r\n\r\n" + body)

    def notify(
        self,
        sipfrag: str,
        state: str = "active;expires=60",
        *,
        event: str = "refer",
        content_type: str = "message/sipfrag;version=2.0",
    ) -> Response:
        """Send Bob's NOTIFY (RFC 3515 §4.1 F3/F5) and return Alice's answer to it."""
        headers = [f"Event: {event}", f"Subscription-State: {state}",
                   f"Content-Type: {content_type}"]  # fmt: skip
        new = self.bob_request("NOTIFY", headers, sipfrag)
        (answer,) = [m for m, _ in new if isinstance(m, Response)]
        return answer

    def run(self, until: float) -> None:
        while (deadline := self.core.get_timer()) is not None and deadline <= until:
            self.now = max(self.now, deadline)
            self.core.handle_timer(self.now)
            self.pump()
        self.now = until
