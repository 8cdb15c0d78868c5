"""How a call ends (``relay/calls/ending.py``), against docs/relay.md's How a call ends and Call
events tables. ``until_the_end`` (the wait) runs in tests/integration/relay/calls."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from chalicelib.contracts import CallEvent, LegEndReason, LegRole
from relay.bridge.agent_ws import AgentLeftReason
from relay.calls.ending import (
    AgentEnd,
    EndDetail,
    Ending,
    agent_left_reason,
    local_leg_end,
    max_duration_s,
    record_the_end,
    sip_leg_end,
)
from relay.calls.recorder import LegEvents
from relay.sip.usage.call_state import CallEndReason

DOCUMENTED_DETAILS = {
    "caller_hung_up", "agent_closed", "api_hang_up", "media_timeout", "connection_lost",
    "keepalive_timeout", "message_too_big", "protocol_error", "ended", "internal_error",
    "rtp_ports_exhausted", "max_duration", "agent_unreachable", "relay_shutdown",
    # an outgoing call's (How an unanswered outgoing call ends)
    "credentials_unavailable", "destination_invalid", "destination_not_found",
    "destination_unavailable", "dial_refused", "cancel_unanswered", "tls_verification_failed",
    # a cold transfer's (Transfers)
    "transferred", "bridged_leg_ended", "call_ended",
}  # fmt: skip
"""docs/relay.md: the ``detail`` values of ``agent_left`` and ``leg_ended``."""


def test_every_end_detail_is_a_documented_string() -> None:
    """The values are contract (events, docs): the enum must not rename them."""
    values = {detail.value for detail in EndDetail} | {r.value for r in AgentLeftReason}
    assert values == DOCUMENTED_DETAILS


@pytest.mark.parametrize(
    ("detail", "agent_left", "leg_ended"),
    [
        # "the agent closes its WebSocket | agent_left, leg_ended local_hangup"
        (AgentLeftReason.AGENT_CLOSED, None, "local_hangup"),
        # "the agent's connection breaks (...) | agent_left with reason error, leg_ended local_hangup"
        (AgentLeftReason.CONNECTION_LOST, "error", "local_hangup"),
        (AgentLeftReason.KEEPALIVE_TIMEOUT, "error", "local_hangup"),
        (AgentLeftReason.MESSAGE_TOO_BIG, "error", "local_hangup"),
        (AgentLeftReason.PROTOCOL_ERROR, "error", "local_hangup"),
        # "DELETE /api/calls/{callId} | agent_left, leg_ended local_hangup (detail api_hang_up)"
        (EndDetail.API_HANG_UP, None, "local_hangup"),
        # "no RTP from the caller for 30 s | agent_left, leg_ended timeout (detail media_timeout)"
        (EndDetail.MEDIA_TIMEOUT, None, "timeout"),
        # "maxDuration runs out | agent_left, leg_ended timeout (detail max_duration)"
        (EndDetail.MAX_DURATION, None, "timeout"),
        # Call events: "ended (the bridge failed)", reason error
        (EndDetail.BRIDGE_ENDED, "error", "local_hangup"),
        # "the relay shuts down (...) | agent_left, leg_ended error (detail relay_shutdown)"
        (EndDetail.RELAY_SHUTDOWN, None, "error"),
    ],
)
def test_an_end_on_our_side_maps_as_documented(
    detail: AgentEnd, agent_left: str | None, leg_ended: str
) -> None:
    assert agent_left_reason(detail) == agent_left
    assert local_leg_end(detail) == leg_ended


@pytest.mark.parametrize(
    ("ended", "by_remote", "reason"),
    [
        (CallEndReason.BYE, True, "remote_hangup"),  # the caller sends BYE
        (CallEndReason.BYE, False, "local_hangup"),
        (CallEndReason.CANCELLED, True, "remote_hangup"),  # CANCEL before the 200
        (CallEndReason.SESSION_EXPIRED, False, "timeout"),  # the session timer expires
        (CallEndReason.ACK_TIMEOUT, False, "timeout"),  # the 200 is never acknowledged
        (CallEndReason.REJECTED, False, "rejected"),  # Call events: "rejected"
    ],
)
def test_an_end_on_the_sip_side_maps_as_documented(
    ended: CallEndReason, by_remote: bool, reason: str
) -> None:
    assert sip_leg_end(ended, by_remote=by_remote) == reason


@pytest.mark.parametrize("ended", list(CallEndReason))
def test_every_sip_end_has_a_leg_end_reason(ended: CallEndReason) -> None:
    assert isinstance(sip_leg_end(ended, by_remote=True), LegEndReason)


def test_max_duration_none_is_no_bound() -> None:
    """docs/webhooks.md: ``maxDurationS`` ends the call that long after its answer."""
    assert max_duration_s(90.0) == 90.0
    assert max_duration_s(None) >= 365 * 24 * 3600


def _recorded(ending: Ending) -> tuple[list[tuple[str, str | None, str | None]], list[int]]:
    events: list[CallEvent] = []
    hung_up: list[int] = []
    leg = LegEvents(
        events.append,
        leg_id="924f6f13b6e2c684",
        role=LegRole.CALLER,
        call_id="01a212fa-d498-7736-b793-88e840fce7b3",
        clock=lambda: datetime(2026, 11, 25, 13, 52, 48, tzinfo=UTC),
    )
    record_the_end(leg, ending, lambda: hung_up.append(len(events)))
    return [(e.type.value, e.reason, e.detail) for e in events], hung_up


def test_we_hang_up_between_agent_left_and_leg_ended() -> None:
    """How a call ends: the API hang-up "sends stop to the agent, closes, sends BYE"."""
    events, hung_up = _recorded(Ending(EndDetail.API_HANG_UP))
    assert events == [
        ("agent_left", None, "api_hang_up"),
        ("leg_ended", "local_hangup", "api_hang_up"),
    ]
    assert hung_up == [1]  # after agent_left, before leg_ended
