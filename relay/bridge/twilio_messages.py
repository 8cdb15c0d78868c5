"""Twilio Media Streams messages as pydantic models: the wire shapes of both directions.

Theory of operation:

1. These are third-party shapes: Twilio's Media Streams messages as Twilio sends and takes them
   (camelCase JSON, the ``event`` field naming each), so bots written for Twilio work unchanged.
   Every model ignores unknown fields (``extra="ignore"``) and is immutable; ``to_json`` spells
   a message as Twilio does (camelCase, compact).
2. To the agent (:data:`RelayMessage`): ``connected``, ``start``, ``media``, ``dtmf``, ``mark``
   and ``stop``, and, a sipline extension, ``transfer`` (how a transfer the agent asked for
   ended: an ``event`` name a stock Twilio consumer, Pipecat's ``TwilioFrameSerializer``
   included, ignores). :data:`RELAY_MESSAGE` parses any of them: what an agent does, and what the
   tests and the demo agent (``relay/bridge/demo_agent.py``) check the relay's output with.
3. From the agent (:data:`AgentMessage`): ``media``, ``mark``, ``clear`` and, a sipline
   extension, ``dtmf`` (digits for the caller; their bounds are checked in
   :mod:`relay.bridge.agent_dtmf`, not here). ``streamSid`` is accepted and ignored.
   :data:`AGENT_MESSAGE` is the one parser of agent input; its validation errors say which
   kind of bad input it was (JSON, unknown ``event``, wrong shape).

The framing that fills and reads them, with the stream's state (sequence numbers, chunks,
counters), is :mod:`relay.bridge.twilio_framing`; these names are importable from there too.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter
from pydantic.alias_generators import to_camel

from relay.bridge.agent_dtmf import DEFAULT_DURATION_MS

__all__ = [
    "AGENT_MESSAGE",
    "AgentClear",
    "AgentDtmf",
    "AgentDtmfPayload",
    "AgentMark",
    "AgentMedia",
    "AgentMediaPayload",
    "AgentMessage",
    "ConnectedMessage",
    "DTMF_TRACK",
    "DtmfMessage",
    "DtmfPayload",
    "INBOUND_TRACK",
    "MarkMessage",
    "MarkPayload",
    "MediaChunk",
    "MediaFormat",
    "MediaMessage",
    "PROTOCOL",
    "PROTOCOL_VERSION",
    "RELAY_MESSAGE",
    "RelayMessage",
    "StartMessage",
    "StartMetadata",
    "StopMessage",
    "StopMetadata",
    "TransferEnd",
    "TransferMessage",
    "TransferPayload",
    "TwilioModel",
]

PROTOCOL = "Call"  # Twilio's "connected" message
PROTOCOL_VERSION = "1.0.0"
INBOUND_TRACK = "inbound"  # the caller's audio, as Twilio names it in "media" and "start"
DTMF_TRACK = "inbound_track"  # Twilio's track name in "dtmf" messages


class TwilioModel(BaseModel):
    """Base of the Twilio Media Streams models: camelCase JSON, unknown fields ignored, immutable."""

    model_config = ConfigDict(
        extra="ignore", frozen=True, alias_generator=to_camel, populate_by_name=True
    )

    def to_json(self) -> str:
        """Return the message as Twilio spells it (camelCase, compact)."""
        return self.model_dump_json(by_alias=True)


class MediaFormat(TwilioModel):
    """``start.mediaFormat``: how the ``media`` payloads are encoded."""

    encoding: str = Field(description='"audio/x-mulaw" (Twilio), or the HD framing\'s encoding.')
    sample_rate: int = Field(description="Samples per second.")
    channels: int = Field(default=1, description="Always 1 (mono).")


class StartMetadata(TwilioModel):
    """``start.start``: the stream's identity and format."""

    stream_sid: str
    account_sid: str
    call_sid: str
    tracks: list[str]
    custom_parameters: dict[str, str] = Field(
        description="Call id, caller, callee and JSON-encoded template context (strings only)."
    )
    media_format: MediaFormat


class ConnectedMessage(TwilioModel):
    """First message of a stream."""

    event: Literal["connected"] = "connected"
    protocol: str = PROTOCOL
    version: str = PROTOCOL_VERSION


class StartMessage(TwilioModel):
    """Second message: stream metadata, sent once."""

    event: Literal["start"] = "start"
    sequence_number: str
    start: StartMetadata
    stream_sid: str


class MediaChunk(TwilioModel):
    """``media.media`` to the agent: one 20 ms chunk of caller audio."""

    track: str = INBOUND_TRACK
    chunk: str
    timestamp: str
    payload: str


class MediaMessage(TwilioModel):
    """Caller audio to the agent."""

    event: Literal["media"] = "media"
    sequence_number: str
    media: MediaChunk
    stream_sid: str


class DtmfPayload(TwilioModel):
    """``dtmf.dtmf``: one digit the caller pressed."""

    track: str = DTMF_TRACK
    digit: str


class DtmfMessage(TwilioModel):
    """A DTMF digit to the agent."""

    event: Literal["dtmf"] = "dtmf"
    stream_sid: str
    sequence_number: str
    dtmf: DtmfPayload


class MarkPayload(TwilioModel):
    """``mark.mark``: the agent's label."""

    name: str


class MarkMessage(TwilioModel):
    """A mark echoed to the agent once the audio before it has played."""

    event: Literal["mark"] = "mark"
    sequence_number: str
    stream_sid: str
    mark: MarkPayload


class StopMetadata(TwilioModel):
    """``stop.stop``."""

    account_sid: str
    call_sid: str


class StopMessage(TwilioModel):
    """Last message: the call ended on the caller's side."""

    event: Literal["stop"] = "stop"
    sequence_number: str
    stop: StopMetadata
    stream_sid: str


class AgentMediaPayload(TwilioModel):
    """``media.media`` from the agent: only the payload matters."""

    payload: str


class AgentMedia(TwilioModel):
    """Agent audio to play to the caller (any length)."""

    event: Literal["media"]
    stream_sid: str | None = None
    media: AgentMediaPayload


class AgentMark(TwilioModel):
    """A label to echo back once the audio sent before it has been played."""

    event: Literal["mark"]
    stream_sid: str | None = None
    mark: MarkPayload


class AgentClear(TwilioModel):
    """Flush the agent audio queued for the caller, at once (barge-in)."""

    event: Literal["clear"]
    stream_sid: str | None = None


class AgentDtmfPayload(TwilioModel):
    """``dtmf.dtmf`` from the agent (a sipline extension): digits for the caller."""

    digits: str
    duration_ms: int = DEFAULT_DURATION_MS


class AgentDtmf(TwilioModel):
    """Send DTMF digits to the caller (a sipline extension; bounds in ``agent_dtmf``)."""

    event: Literal["dtmf"]
    stream_sid: str | None = None
    dtmf: AgentDtmfPayload


TransferEnd = Literal["failed", "declined", "referred", "bridged"]
"""How a transfer ended, as the agent is told."""


class TransferPayload(TwilioModel):
    """``transfer.transfer``: which transfer, how it ended (docs/agents.md)."""

    transfer_id: str
    status: TransferEnd
    sip_status: int | None = None
    reason: str | None = None


class TransferMessage(TwilioModel):
    """A transfer the agent asked for ended: ``failed`` (the caller stays), or the caller was
    handed on (``referred``, ``bridged``: ``stop`` follows)."""

    event: Literal["transfer"] = "transfer"
    sequence_number: str
    stream_sid: str
    transfer: TransferPayload


RelayMessage = Annotated[
    ConnectedMessage
    | StartMessage
    | MediaMessage
    | DtmfMessage
    | MarkMessage
    | StopMessage
    | TransferMessage,
    Field(discriminator="event"),
]
"""Any message the relay sends (what an agent parses)."""

AgentMessage = Annotated[
    AgentMedia | AgentMark | AgentClear | AgentDtmf, Field(discriminator="event")
]
"""Any message an agent may send."""

RELAY_MESSAGE: TypeAdapter[RelayMessage] = TypeAdapter(RelayMessage)
AGENT_MESSAGE: TypeAdapter[AgentMessage] = TypeAdapter(AgentMessage)
