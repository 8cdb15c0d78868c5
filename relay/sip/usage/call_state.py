"""The states, inputs and end reasons of a call, by the RFC's names.

The transition tables that join states and inputs are ``InviteSession._SESSION_TRANSITIONS``
(``invite_session.py``) and the tables of its subclasses (``IncomingCall._TRANSITIONS`` in
``incoming.py``).
"""

from __future__ import annotations

from enum import Enum, StrEnum

__all__ = ["LOCAL_INPUTS", "CallEndReason", "CallInput", "CallState"]


class CallState(Enum):
    """States of a call (RFC 3261 §12.1.1 dialog states, RFC 6026 Accepted)."""

    PROCEEDING = "Proceeding"
    EARLY = "Early"
    ACCEPTED = "Accepted"
    CONFIRMED = "Confirmed"
    TERMINATED = "Terminated"


class CallInput(Enum):
    """What can happen to a call."""

    RINGING = "ringing()"
    ACCEPT = "accept()"
    REJECT = "reject()"
    HANG_UP = "hang_up()"
    RECV_ACK = "ACK"
    RECV_ACK_AFTER_HANG_UP = "ACK while a hang-up waits for it"
    RECV_ACK_WITHOUT_ANSWER = "ACK without a usable answer to our offer"
    RECV_CANCEL = "CANCEL"
    RECV_BYE = "BYE"
    INVITE_FAILED = "INVITE transaction failed"
    ACK_TIMEOUT = "64*T1 without ACK"
    SESSION_EXPIRED = "session expired"
    REQUEST_FAILED = "in-dialog request failed"


LOCAL_INPUTS = frozenset({CallInput.RINGING, CallInput.ACCEPT, CallInput.REJECT, CallInput.HANG_UP})
"""The application's calls: a missing table entry for one raises ``LocalProtocolError``."""


class CallEndReason(StrEnum):
    """Why a call ended, in SIP terms (the glue maps it to the events contract)."""

    CANCELLED = "cancelled"
    """The caller sent CANCEL before our final response (RFC 3261 §9.2)."""
    REJECTED = "rejected"
    """We answered the INVITE with 300-699 (the decision, a 503, a 488...)."""
    BYE = "bye"
    """A BYE ended it (``by_remote`` says whose)."""
    ACK_TIMEOUT = "ack_timeout"
    """Our 2xx was never acknowledged within 64*T1; we sent BYE (RFC 3261 §13.3.1.4)."""
    SESSION_EXPIRED = "session_expired"
    """No session refresh in time; we sent BYE (RFC 4028 §10)."""
    REQUEST_FAILED = "request_failed"
    """An in-dialog request of ours got 408 or 481 or timed out; we sent BYE (§12.2.1.2)."""
    TRANSACTION_FAILED = "transaction_failed"
    """The INVITE transaction failed (transport error) before a final response."""
    MEDIA_FAILED = "media_failed"
    """The ACK to our late-offer 2xx carried no usable answer; we sent BYE (§13.3.1.4)."""
