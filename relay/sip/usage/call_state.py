"""The states, inputs and end reasons of a call, by the RFC's names.

The transition tables that join states and inputs are ``InviteSession._SESSION_TRANSITIONS``
(``invite_session.py``) and the tables of its subclasses (``IncomingCall._TRANSITIONS`` in
``incoming.py``, ``OutgoingCall._TRANSITIONS`` in ``outgoing.py``).
"""

from __future__ import annotations

from enum import Enum, StrEnum

__all__ = ["LOCAL_INPUTS", "CallEndReason", "CallInput", "CallState"]


class CallState(Enum):
    """States of a call (RFC 3261 §12.1.1 dialog states, RFC 6026 Accepted).

    For an outgoing call, PROCEEDING is "INVITE sent, nothing heard", EARLY "a provisional
    response came" (CANCEL may now be sent, RFC 3261 §9.1), and ACCEPTED is never used: we ACK
    the 2xx at once.
    """

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
    RECV_PROVISIONAL = "1xx to our INVITE"
    RECV_2XX = "2xx to our INVITE"
    RECV_2XX_AFTER_HANG_UP = "2xx to our INVITE after our hang-up"
    RECV_2XX_UNUSABLE = "2xx to our INVITE without a usable answer or Contact"
    RECV_FINAL = "3xx-6xx to our INVITE that ends the call"
    RESEND = "INVITE to resend (challenge answered, next target)"
    RING_TIMEOUT = "no final response within the ring timeout"
    CANCEL_TIMEOUT = "64*T1 after our hang-up without a final response"


LOCAL_INPUTS = frozenset({CallInput.RINGING, CallInput.ACCEPT, CallInput.REJECT, CallInput.HANG_UP})
"""The application's calls: a missing table entry for one raises ``LocalProtocolError``."""


class CallEndReason(StrEnum):
    """Why a call ended, in SIP terms (the glue maps it to the events contract)."""

    CANCELLED = "cancelled"
    """Cancelled before the answer: the caller sent CANCEL (``by_remote``, RFC 3261 §9.2), or we
    hung up our outgoing call before it was answered (status 487, or the final that came
    instead, or 408 when none came within 64*T1 of our CANCEL, §9.1)."""
    REJECTED = "rejected"
    """The INVITE got 300-699: our answer (the decision, a 503, a 488...), or the far end's to
    our outgoing call (``by_remote``; a 401/407 we could not answer included)."""
    BYE = "bye"
    """A BYE ended it (``by_remote`` says whose)."""
    ACK_TIMEOUT = "ack_timeout"
    """Our 2xx was never acknowledged within 64*T1; we sent BYE (RFC 3261 §13.3.1.4)."""
    SESSION_EXPIRED = "session_expired"
    """No session refresh in time; we sent BYE (RFC 4028 §10)."""
    REQUEST_FAILED = "request_failed"
    """An in-dialog request of ours got 408 or 481 or timed out; we sent BYE (§12.2.1.2)."""
    TRANSACTION_FAILED = "transaction_failed"
    """The INVITE transaction failed before a final response: a transport error, or for our
    outgoing call every target timed out (408), failed or answered 503 (the last seen), or the
    2xx named no Contact we could reach (ACKed and BYEd, status ``None``)."""
    RING_TIMEOUT = "ring_timeout"
    """Our outgoing call had no final response within its ring timeout; we cancelled it."""
    MEDIA_FAILED = "media_failed"
    """The ACK to our late-offer 2xx carried no usable answer; we sent BYE (§13.3.1.4)."""
