"""The states and inputs of an incoming call, by the RFC's names.

The transition table that joins them is ``IncomingCall._TRANSITIONS`` in ``incoming.py``.
"""

from __future__ import annotations

from enum import Enum

__all__ = ["LOCAL_INPUTS", "CallInput", "CallState"]


class CallState(Enum):
    """States of an incoming call (RFC 3261 §12.1.1 dialog states, RFC 6026 Accepted)."""

    PROCEEDING = "Proceeding"
    EARLY = "Early"
    ACCEPTED = "Accepted"
    CONFIRMED = "Confirmed"
    TERMINATED = "Terminated"


class CallInput(Enum):
    """What can happen to an incoming call."""

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
