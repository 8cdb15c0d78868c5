"""What an agent bridge comes to: the outcome that ended it and the counters of what it did.

Theory of operation:

1. :meth:`relay.bridge.agent_ws.AgentBridge.run` returns exactly one :data:`BridgeOutcome`, the
   first of: the agent's socket closed (:class:`AgentLeft`, which ends the call); no connection
   could be opened within the bounds (:class:`AgentUnreachable`); the bridge was stopped because
   the caller hung up (:class:`BridgeStopped`); or a bridge task failed, a bug
   (:class:`BridgeFailed`). The call layer (``relay/calls/``) turns it into the call's end
   reason; :class:`AgentLeftReason` values are ``agent_left`` details (``docs/relay.md``).
2. :func:`agent_left` reads *why* a socket closed from websockets' record of the close frames:
   when we closed first, our close code says how the agent misbehaved (1009 over
   ``max_message_bytes``, 1011 "keepalive" for unanswered pings, any other for a protocol
   error); otherwise the agent's close frame, or none at all (a dropped connection).
3. :class:`BridgeCounters` count what one bridge did (frames, marks, digits, drops) for the
   call's events and metrics; the bridge and its connect attempts write them.

Pure: no I/O here, only the vocabulary the bridge and the call layer share.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode

__all__ = [
    "AgentLeft",
    "AgentLeftReason",
    "AgentUnreachable",
    "BridgeCounters",
    "BridgeFailed",
    "BridgeOutcome",
    "BridgeStopped",
    "agent_left",
]


@dataclass(slots=True)
class BridgeCounters:
    """What one bridge did, for call events and metrics."""

    connect_attempts: int = 0
    media_frames_out: int = 0
    media_frames_dropped: int = 0
    """Caller frames dropped because the agent did not read them in time (or the socket closed)."""
    agent_audio_bytes: int = 0
    agent_audio_dropped_bytes: int = 0
    """Agent audio the media core dropped because it ran too far ahead of playout."""
    marks_in: int = 0
    marks_echoed: int = 0
    marks_dropped: int = 0
    clears: int = 0
    dtmf_out: int = 0
    bad_dtmf: int = 0


class AgentLeftReason(StrEnum):
    """Why the agent's socket closed."""

    AGENT_CLOSED = "agent_closed"
    """The agent sent a close frame (the code says why)."""
    CONNECTION_LOST = "connection_lost"
    """The connection dropped without a closing handshake."""
    KEEPALIVE_TIMEOUT = "keepalive_timeout"
    """The agent stopped answering pings."""
    MESSAGE_TOO_BIG = "message_too_big"
    """The agent sent a message over ``max_message_bytes``."""
    PROTOCOL_ERROR = "protocol_error"
    """The agent broke the WebSocket protocol (e.g. a text frame that is not UTF-8)."""


@dataclass(frozen=True, slots=True)
class AgentLeft:
    """The agent's socket closed: the call ends."""

    reason: AgentLeftReason
    close_code: int | None = None
    close_reason: str = ""


@dataclass(frozen=True, slots=True)
class AgentUnreachable:
    """No connection could be opened within the bounds: the call ends (or is rejected)."""

    attempts: int
    error: str


@dataclass(frozen=True, slots=True)
class BridgeStopped:
    """``AgentBridge.stop`` was called (the caller hung up): ``stop`` was sent."""


@dataclass(frozen=True, slots=True)
class BridgeFailed:
    """A bridge task failed (a bug): the call ends with reason ``internal_error``."""

    reason: str = "internal_error"


BridgeOutcome = AgentLeft | AgentUnreachable | BridgeStopped | BridgeFailed


def agent_left(closed: ConnectionClosed) -> AgentLeft:
    """Classify how the socket closed, from websockets' record of the close frames."""
    sent = closed.sent
    if sent is not None and not closed.rcvd_then_sent:  # we closed first: the agent misbehaved
        if sent.code == CloseCode.MESSAGE_TOO_BIG:
            return AgentLeft(AgentLeftReason.MESSAGE_TOO_BIG, sent.code, sent.reason)
        if sent.code == CloseCode.INTERNAL_ERROR and "keepalive" in sent.reason:
            return AgentLeft(AgentLeftReason.KEEPALIVE_TIMEOUT, sent.code, sent.reason)
        if sent.code != CloseCode.NORMAL_CLOSURE:
            return AgentLeft(AgentLeftReason.PROTOCOL_ERROR, sent.code, sent.reason)
    if closed.rcvd is not None:
        return AgentLeft(AgentLeftReason.AGENT_CLOSED, closed.rcvd.code, closed.rcvd.reason)
    return AgentLeft(AgentLeftReason.CONNECTION_LOST, CloseCode.ABNORMAL_CLOSURE)
