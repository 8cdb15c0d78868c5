"""What every leg the relay dials does with its callee's signalling, whatever the call it serves.

An outgoing call's leg (``outgoing.py``) and a transfer's second leg (``transfer_leg.py``) are
both an ``OutgoingCall`` with an RTP session: the callee's first ringing 1xx is recorded
``ringing`` once, its SIP INFO digits (``application/dtmf-relay``) become digit events on the
leg's media, and a digit for a callee without telephone-event goes out as INFO. The flows own
the rest (placing the call, its ends); this base holds only what they share.
"""

from __future__ import annotations

from chalicelib.contracts import CallEventType
from relay.calls.deps import CallDeps
from relay.calls.dtmf import DTMF_RELAY, dtmf_relay_body, dtmf_relay_digit
from relay.calls.recorder import LegEvents
from relay.sip.usage.invite_session import CallProgress
from relay.sip.usage.outgoing import OutgoingCall
from relay.transport.rtp_session import RtpSession


class DialledLeg:
    """The shared part of a dialled leg; subclasses set the attributes in ``__init__``."""

    deps: CallDeps
    events: LegEvents
    session: RtpSession | None
    call: OutgoingCall | None
    rang: bool

    def info_dtmf(self, content_type: str | None, body: bytes) -> None:
        """Turn a SIP INFO ``application/dtmf-relay`` (``Signal=5``) into the same digit event."""
        digit = dtmf_relay_digit(content_type, body)
        if digit is not None and self.session is not None:
            self.session.inject_dtmf(digit)

    def progress(self, event: CallProgress) -> None:
        """Record ``ringing`` for the first 1xx other than 100 (180, 183...)."""
        if not self.rang:
            self.rang = True
            self.events.record(CallEventType.RINGING, sip_status=event.status)

    def _send_dtmf_info(self, digit: str, duration_ms: int) -> None:
        """Send a digit as INFO (the callee has no telephone-event)."""
        call = self.call
        if call is not None and call.send_info(
            DTMF_RELAY, dtmf_relay_body(digit, duration_ms), self.deps.now()
        ):
            self.deps.transmit()
