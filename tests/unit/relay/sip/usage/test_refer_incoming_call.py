"""REFER in an incoming call's dialog, both ways, with the in-memory caller of ``harness.py``.

The usual transfer: a PBX calls the agent, then either the relay transfers the caller
(transferor, ``send_refer`` on the ``IncomingCall``) or the PBX transfers the agent
(transferee, ``ReferServers``). The caller is the harness's UAC on the real transaction layer
and dialog code; what it sends besides the call is written here as RFC 3515 §4.1 shows it.
"""

from __future__ import annotations

from relay.sip.syntax.sipfrag import SipFragStatus, parse_sipfrag
from relay.sip.syntax.uri import AbsoluteUri, SipUri
from relay.sip.usage.refer import ReferAccepted, ReferProgress, ReferSucceeded, send_refer
from relay.sip.usage.refer_server import ReferReceived, ReferServers
from tests.unit.relay.harness import UacUasPair

CAROL = "<sip:carol@chicago.example.com>"


def accept_all(
    refer_to: SipUri | AbsoluteUri, referred_by: str | None, headers: tuple[tuple[str, str], ...]
) -> bool:
    return True


def test_the_relay_transfers_the_caller_of_an_incoming_call() -> None:
    pair = UacUasPair()
    call = pair.establish()
    pair.uac.script["REFER"] = [(202, ())]

    sub = send_refer(pair.uas, call, CAROL, now=pair.now, notify_timeout_s=30.0)
    pair.pump()
    for frag, state in (("SIP/2.0 100 Trying", "active;expires=60"),
                        ("SIP/2.0 200 OK", "terminated;reason=noresource")):  # fmt: skip
        pair.uac.send("NOTIFY", pair.now, body=f"{frag}\r\n".encode(),
                      content_type="message/sipfrag",
                      headers=(("Event", f"refer;id={sub.id}"), ("Subscription-State", state)))  # fmt: skip
        pair.pump()

    (refer,) = [r for r in pair.uac.requests if r.method == "REFER"]
    assert refer.headers.get("Refer-To") == CAROL and refer.to.tag == call.dialog.id.remote_tag
    kinds = (ReferAccepted, ReferProgress, ReferSucceeded)
    assert [(type(e).__name__, e.status) for e in pair.events if isinstance(e, kinds)] == [
        ("ReferAccepted", 202),
        ("ReferProgress", 100),
        ("ReferSucceeded", 200),
    ]
    assert [r.status for r in pair.uac.responses if r.cseq.method == "NOTIFY"] == [200, 200]


def test_the_caller_transfers_the_agent_202_and_notifies_until_the_final_report() -> None:
    pair = UacUasPair(usage_starters=(ReferServers(accept_all),))
    call = pair.establish()

    pair.uac.send("REFER", pair.now, headers=(("Refer-To", CAROL),))
    pair.pump()
    (received,) = [e for e in pair.events if isinstance(e, ReferReceived)]
    received.server.report(200, now=pair.now)
    pair.pump()

    assert received.session is call
    assert [r.status for r in pair.uac.responses if r.cseq.method == "REFER"] == [202]
    notifies = [r for r in pair.uac.requests if r.method == "NOTIFY"]
    assert [parse_sipfrag(n.body) for n in notifies] == [
        SipFragStatus(100, "Trying"),
        SipFragStatus(200, "OK"),
    ]
    assert notifies[-1].headers.get("Subscription-State") == "terminated;reason=noresource"


def test_by_default_the_caller_s_refer_is_declined_not_405() -> None:
    pair = UacUasPair()
    pair.establish()

    pair.uac.send("REFER", pair.now, headers=(("Refer-To", CAROL),))
    pair.pump()

    assert [r.status for r in pair.uac.responses if r.cseq.method == "REFER"] == [603]
