"""Placing an outgoing call: the INVITE usage the application makes on an endpoint (sans-I/O).

The endpoint creates the usages that incoming requests start (``IncomingCall``); the ones the
application starts are made here, from the endpoint's public means (rule 4 of
``relay/sip/endpoint.py``): its ids and settings to write the first request, a leg for the
dialog the INVITE implies, ``bind_dialog`` for the dialogs its responses create, ``emit`` for
the call's events, ``add_usage`` to have it timed and forgotten once finished. The endpoint
itself knows no usage kind beyond the incoming call; the registration client of a later issue
is made the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from relay.sip.address import Address
from relay.sip.digest import Credentials
from relay.sip.errors import LocalProtocolError
from relay.sip.sdp.description import SessionDescription
from relay.sip.syntax.uri import SipUri
from relay.sip.usage.invite_request import build_invite, dialog_before_answer
from relay.sip.usage.outgoing import OutgoingCall

if TYPE_CHECKING:
    from relay.sip.endpoint import SipEndpoint

__all__ = ["place_call"]


def place_call(
    endpoint: SipEndpoint,
    *,
    targets: Sequence[Address],
    request_uri: SipUri,
    from_user: str,
    from_display: str | None = None,
    offer: SessionDescription,
    preference: Sequence[str],
    credentials: Credentials | None,
    headers: Sequence[tuple[str, str]] = (),
    ring_timeout_s: float,
    now: float,
) -> OutgoingCall:
    """Send an INVITE to ``targets[0]`` through ``endpoint`` and return the call it starts.

    ``targets`` are tried in order on 503 or timeout (RFC 3263 §4.3); ``headers`` are extra
    ``X-`` header fields. The call's events (``CallProgress``, ``CallAnswered``, ``CallEnded``)
    come from the endpoint's ``next_event`` (``usage/outgoing.py``).

    Raises:
        LocalProtocolError: no target, no local address for its transport, or a value that
            cannot go on the wire (a control character, a header field not named ``X-``).
    """
    if not targets:
        raise LocalProtocolError("place_call needs at least one target")
    invite = build_invite(
        endpoint.transactions, endpoint.ids, endpoint.settings, target=targets[0],
        request_uri=request_uri, from_user=from_user, from_display=from_display,
        offer=bytes(offer), headers=headers,
    )  # fmt: skip
    call = OutgoingCall(
        invite, leg=endpoint.new_leg(dialog_before_answer(invite, targets[0])), targets=targets,
        bind=endpoint.bind_dialog, emit=endpoint.emit, offer=offer, preference=preference,
        credentials=credentials, ring_timeout_s=ring_timeout_s, now=now,
    )  # fmt: skip
    endpoint.add_usage(call)
    return call
