"""The transferor's REFER against SIPp transferees (RFC 3515, RFC 5589 §6.1), over real UDP.

The endpoint of ``relay/sip`` (driven by the test, ``udp_endpoint.py``) calls a SIPp UAS,
which answers; the test sends a REFER in that call (``send_refer``) and SIPp plays the
transferee: ``uas_refer_notify`` answers 202 and notifies ``SIP/2.0 100 Trying`` then the
final status line the test names (RFC 3515 §4.1 F3, F5); ``uas_refer_reject`` answers the
REFER 405 (with Allow) or 501; ``uas_refer_silent`` answers 202 and never notifies. The
outcome the endpoint reports is the status SIPp sent; the test then hangs up, and SIPp must
end with rc 0 (every step of its scenario happened, its 200s to our requests included).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from relay.sip.address import Address
from relay.sip.sdp.description import SessionDescription
from relay.sip.syntax.uri import SipUri
from relay.sip.usage.dial import place_call
from relay.sip.usage.invite_session import CallAnswered, CallEnded, InviteSession
from relay.sip.usage.refer import (
    ReferAccepted,
    ReferFailed,
    ReferProgress,
    ReferSucceeded,
    send_refer,
)
from tests.interop.sipp import scenario
from tests.interop.sipp_uas import SippUas
from tests.interop.udp_endpoint import UdpEndpoint
from tests.support.ports import LOOPBACK

pytestmark = pytest.mark.interop

TARGET = "<sip:carol@chicago.example.com>"  # RFC 5589 §6.1's transfer target
BOUND_S = 20.0
OFFER = (  # RFC 3264 §10.1, audio only, on loopback (no RTP is sent)
    "v=0\r\no=alice 2890844526 2890844526 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n"
    "t=0 0\r\nm=audio 49170 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)


def answered_call(endpoint: UdpEndpoint, uas: SippUas) -> InviteSession:
    call = place_call(
        endpoint.core, targets=(Address(LOOPBACK, uas.port),), request_uri=SipUri.parse(uas.uri()),
        from_user="agent", offer=SessionDescription.parse(OFFER.encode()), preference=("PCMU",),
        credentials=None, ring_timeout_s=BOUND_S, now=endpoint.now(),
    )  # fmt: skip
    endpoint.run_until(lambda: bool(endpoint.of(CallAnswered)), BOUND_S)
    return call


def transfer(
    tmp_path: Path,
    name: str,
    *,
    key: tuple[str, str] | None = None,
    status: str | None = None,
    notify_timeout_s: float = 10.0,
) -> tuple[UdpEndpoint, SippUas]:
    """Call SIPp, REFER the call, wait for the outcome, hang up; return both ends.

    ``key`` is a SIPp ``-key`` (a keyword of the messages); ``status`` is written into the
    scenario (SIPp reads a response's status code when it loads the scenario).
    """
    uas = SippUas(name, tmp_path, timeout_s=int(BOUND_S), extra=("-key", *key) if key else ())
    if status is not None:
        uas.scenario = scenario(f"{name}.xml", tmp_path, status=status)
    with uas, UdpEndpoint() as endpoint:
        call = answered_call(endpoint, uas)
        send_refer(endpoint.core, call, TARGET, now=endpoint.now(),
                   notify_timeout_s=notify_timeout_s)  # fmt: skip
        over = (ReferSucceeded, ReferFailed)
        endpoint.run_until(lambda: any(isinstance(e, over) for e in endpoint.events), BOUND_S)
        call.hang_up(now=endpoint.now())
        endpoint.run_until(lambda: bool(endpoint.of(CallEnded)), BOUND_S)
        run = uas.wait()
        assert run.returncode == 0, run.explain()
    return endpoint, uas


def outcome(endpoint: UdpEndpoint) -> list[tuple[str, int | None]]:
    kinds = (ReferAccepted, ReferProgress, ReferSucceeded, ReferFailed)
    return [(type(e).__name__, e.status) for e in endpoint.events if isinstance(e, kinds)]


def test_sipp_accepts_the_refer_and_notifies_200_ok_the_transfer_succeeds(tmp_path: Path) -> None:
    endpoint, uas = transfer(tmp_path, "uas_refer_notify", key=("refer_final", "200 OK"))

    assert outcome(endpoint) == [
        ("ReferAccepted", 202),
        ("ReferProgress", 100),
        ("ReferSucceeded", 200),
    ]
    (refer,) = uas.received("REFER")
    assert refer.header("Refer-To") == TARGET
    assert [m.status for m in uas.received() if m.cseq[1] == "NOTIFY"] == [200, 200]


def test_sipp_notifies_603_declined_the_transfer_fails_with_603(tmp_path: Path) -> None:
    endpoint, _ = transfer(tmp_path, "uas_refer_notify", key=("refer_final", "603 Declined"))

    assert outcome(endpoint)[-1] == ("ReferFailed", 603)
    assert endpoint.of(ReferFailed)[0].reason == "Declined"  # type: ignore[union-attr]


@pytest.mark.parametrize("status", ["405 Method Not Allowed", "501 Not Implemented"])
def test_sipp_refuses_the_refer_the_transfer_fails_with_its_status(
    tmp_path: Path, status: str
) -> None:
    endpoint, _ = transfer(tmp_path, "uas_refer_reject", status=status)

    code, reason = status.split(" ", 1)
    assert outcome(endpoint) == [("ReferFailed", int(code))]
    assert endpoint.of(ReferFailed)[0].reason == reason  # type: ignore[union-attr]


def test_sipp_accepts_and_never_notifies_the_transfer_fails_at_our_timeout(tmp_path: Path) -> None:
    endpoint, _ = transfer(tmp_path, "uas_refer_silent", notify_timeout_s=2.0)

    assert outcome(endpoint) == [("ReferAccepted", 202), ("ReferFailed", 408)]
    assert endpoint.of(ReferFailed)[0].reason == "no final NOTIFY within 2 s"  # type: ignore[union-attr]
