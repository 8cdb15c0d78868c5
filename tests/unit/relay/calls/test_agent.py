"""The agent's side of a call (``relay/calls/agent.py``) from an accepted INVITE or a ``dial``.

Expected ids from docs/agents.md (To the agent, ``start``): ``accountSid`` of the ``default``
account, ``callSid`` as ``CA`` and the call id's hex digits; the bounds from docs/relay.md
(8 s agent connection bound, replaced by the template's ``joinTimeout``).
"""

from __future__ import annotations

import pytest

from chalicelib.contracts import DialCommand, InviteAccepted
from chalicelib.egress import EgressPolicy
from relay.calls.agent import AgentTarget, bridge_parts, uri_user
from relay.calls.deps import CallDeps
from relay.ids import SeededIdSource
from relay.sip.syntax.uri import SipUri
from relay.transport.rtp_session import RtpPortAllocator

CALL_ID = "01a21309-b4ff-70aa-a9fc-33057764874d"
COMMON = {
    "callId": CALL_ID,
    "accountId": "default",
    "agentId": "01a212fd-2942-7967-9c4e-f2fd0a75ea38",
    "mediaEndpoint": {"url": "wss://agent.example/ws", "framing": "twilio"},
    "systemPrompt": "You help Bob.",
    "templateContext": {"customer_name": "Bob"},
    "callTemplate": {"voice": "Mark"},
}


def _deps() -> CallDeps:
    async def never(_: object) -> InviteAccepted:
        raise AssertionError("not asked")

    return CallDeps(
        decide=never,
        record=lambda _: None,
        transmit=lambda: None,
        now=lambda: 0.0,
        ports=RtpPortAllocator("127.0.0.1", 20000, 20001),  # binds nothing until asked
        ids=SeededIdSource(3),
        advertised_address="127.0.0.1",
        edge_id="edge-1",
        webhook_secret="secret",
        retry_after_s=5,
        egress=EgressPolicy(),
    )


TARGETS = {
    "accepted INVITE": lambda **extra: InviteAccepted.model_validate(
        {"action": "accept", **COMMON, **extra}
    ),
    "dial command": lambda **extra: DialCommand.model_validate(
        {"type": "dial", "to": "sip:+15551234567@carrier.example", "from": "+15550100",
         **COMMON, **extra}
    ),
}  # fmt: skip


@pytest.mark.parametrize("kind", TARGETS)
def test_both_kinds_of_call_reach_their_agent_with_the_same_ids_and_context(kind: str) -> None:
    target: AgentTarget = TARGETS[kind]()
    identity, info, settings = bridge_parts(
        target, caller="+15551234567", callee="capture", deps=_deps()
    )
    assert identity.account_sid == "AC37a8eec1ce19687d132fe29051dca629"
    assert identity.call_sid == "CA01a21309b4ff70aaa9fc33057764874d"
    assert identity.stream_sid.startswith("MZ") and len(identity.stream_sid) == 34
    assert (info.call_id, info.caller, info.callee) == (CALL_ID, "+15551234567", "capture")
    assert info.agent_id == "01a212fd-2942-7967-9c4e-f2fd0a75ea38"
    assert info.system_prompt == "You help Bob."
    assert (info.template_context, info.call_template) == (
        {"customer_name": "Bob"}, {"voice": "Mark"}
    )  # fmt: skip
    assert info.auth_token is not None and len(info.auth_token) == 32
    assert settings.connect_timeout_s == 8.0


@pytest.mark.parametrize("kind", TARGETS)
def test_join_timeout_replaces_the_connection_bound(kind: str) -> None:
    target: AgentTarget = TARGETS[kind](joinTimeoutS=20)
    _, _, settings = bridge_parts(target, caller="a", callee="b", deps=_deps())
    assert settings.connect_timeout_s == 20


def test_the_user_of_a_sip_uri_names_the_party() -> None:
    """docs/agents.md: ``from_number`` is ``+15551234567`` for ``sip:+15551234567@...``."""
    assert uri_user(SipUri(user="+15551234567", host="127.0.0.1", port=5479)) == "+15551234567"
    assert uri_user(SipUri(host="127.0.0.1")) == ""
    assert uri_user("tel:+15551234567") == "tel:+15551234567"
