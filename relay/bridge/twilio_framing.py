"""Twilio Media Streams framing on the agent WebSocket (contract 4, the default framing).

Theory of operation:

1. The relay is the WebSocket *client* and plays Twilio's part, so bots written for Twilio
   Media Streams (Pipecat's ``TwilioFrameSerializer`` among them) work unchanged. Every message
   is one JSON text frame.
2. To the agent, in this order: ``connected`` (no sequence number), ``start`` (sequence number
   1), then ``media`` every 20 ms (160 bytes of 8 kHz μ-law, base64), ``dtmf`` per digit,
   ``mark`` echoed once the audio queued before it has been played to the caller, and finally
   ``stop``. Each message after ``connected`` carries ``sequenceNumber``, a decimal string that
   starts at "1" and grows by one per message, like Twilio's. ``media.chunk`` counts media
   messages from "1" and ``media.timestamp`` is the milliseconds of caller audio sent before
   this chunk, both decimal strings as Twilio sends them.
3. ``start.customParameters`` maps names to strings, as Twilio's ``<Parameter>`` values are
   strings. sipline sets: ``call_id``, ``from_number`` (caller), ``to_number`` (callee) - the
   names Pipecat's runner promotes to ``call_data.from_number``/``to_number`` - ``agent_id`` and
   ``system_prompt`` when known, and ``template_context`` (and ``call_template`` when not empty)
   as **JSON text**: ``json.loads(params["template_context"])`` gives the rendered context with
   its types and nesting intact.
4. From the agent: ``media`` (a base64 μ-law payload of any length), ``mark`` (a name),
   ``clear`` (flush queued audio, for barge-in) and, a sipline extension, ``dtmf`` (digits for
   the caller, bounded in :mod:`relay.bridge.agent_dtmf`). ``streamSid`` and every unknown field are
   ignored (``extra="ignore"``: this is a third-party shape). Invalid JSON, an unknown
   ``event``, a message of the wrong shape and a payload that is not base64 are counted in
   :class:`FramingCounters` and dropped: an agent's bad message never ends the call.
5. This module is sans-I/O: :class:`TwilioFraming` turns bridge actions into message text and
   message text into :data:`AgentCommand` values; ``relay.bridge.agent_ws`` moves them. The
   messages' wire models (pydantic, both directions) are :mod:`relay.bridge.twilio_messages`,
   importable from here too; this module keeps the stream's state and the hot ``media`` path.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from relay.bridge.agent_dtmf import DigitsRefused, SendDigits, digits_command
from relay.bridge.twilio_messages import (
    AGENT_MESSAGE,
    DTMF_TRACK,
    INBOUND_TRACK,
    PROTOCOL,
    PROTOCOL_VERSION,
    RELAY_MESSAGE,
    AgentClear,
    AgentDtmf,
    AgentDtmfPayload,
    AgentMark,
    AgentMedia,
    AgentMediaPayload,
    AgentMessage,
    ConnectedMessage,
    DtmfMessage,
    DtmfPayload,
    MarkMessage,
    MarkPayload,
    MediaChunk,
    MediaFormat,
    MediaMessage,
    RelayMessage,
    StartMessage,
    StartMetadata,
    StopMessage,
    StopMetadata,
    TransferEnd,
    TransferMessage,
    TransferPayload,
    TwilioModel,
)
from relay.ids import IdSource
from relay.media.dtmf import KEYPAD_DIGITS

__all__ = [
    "AGENT_MESSAGE",
    "DTMF_TRACK",
    "FRAME_MS",
    "INBOUND_TRACK",
    "MULAW_ENCODING",
    "MULAW_FRAME_BYTES",
    "MULAW_SAMPLE_RATE_HZ",
    "PROTOCOL",
    "PROTOCOL_VERSION",
    "RELAY_MESSAGE",
    "AgentClear",
    "AgentCommand",
    "AgentDtmf",
    "AgentDtmfPayload",
    "AgentMark",
    "AgentMedia",
    "AgentMediaPayload",
    "AgentMessage",
    "CallInfo",
    "ClearAudio",
    "ConnectedMessage",
    "DtmfMessage",
    "DtmfPayload",
    "FramingCounters",
    "MarkMessage",
    "MarkPayload",
    "MediaChunk",
    "MediaFormat",
    "MediaMessage",
    "PlaceMark",
    "PlayAudio",
    "RelayMessage",
    "StartMessage",
    "StartMetadata",
    "StopMessage",
    "StopMetadata",
    "StreamIdentity",
    "TwilioFraming",
    "TwilioModel",
    "custom_parameters",
    "new_stream_sid",
]

MULAW_ENCODING = "audio/x-mulaw"
MULAW_SAMPLE_RATE_HZ = 8000
FRAME_MS = 20
MULAW_FRAME_BYTES = MULAW_SAMPLE_RATE_HZ * FRAME_MS // 1000  # 160: one byte per sample


# --- what the bridge acts on ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PlayAudio:
    """The agent sent audio for the caller, in the framing's audio format."""

    audio: bytes


@dataclass(frozen=True, slots=True)
class PlaceMark:
    """The agent asked to be told when the audio it sent so far has been played."""

    name: str


@dataclass(frozen=True, slots=True)
class ClearAudio:
    """The agent asked to drop the audio queued for the caller."""


AgentCommand = PlayAudio | PlaceMark | ClearAudio | SendDigits | DigitsRefused


@dataclass(slots=True)
class FramingCounters:
    """What arrived from the agent, and what of it was dropped."""

    messages_in: int = 0
    invalid_json: int = 0
    unknown_events: int = 0
    invalid_messages: int = 0
    """Valid JSON of a known event but the wrong shape (or not an object)."""
    bad_payloads: int = 0
    """Media whose payload is not base64, or not whole samples."""
    bad_dtmf: int = 0
    """``dtmf`` messages whose digits or duration are out of bounds."""

    @property
    def dropped(self) -> int:
        """Return how many agent messages were dropped as bad input."""
        invalid = self.invalid_json + self.unknown_events + self.invalid_messages
        return invalid + self.bad_payloads + self.bad_dtmf


# --- identity and start parameters ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StreamIdentity:
    """The Twilio identifiers of one stream.

    ``call_sid`` and ``account_sid`` are what a Twilio bot puts in its REST hang-up
    (``POST /2010-04-01/Accounts/{account_sid}/Calls/{call_sid}.json``).
    """

    stream_sid: str
    call_sid: str
    account_sid: str


def new_stream_sid(ids: IdSource) -> str:
    """Return a Twilio-shaped stream SID: "MZ" and 32 hex digits."""
    return "MZ" + ids.token(16)


@dataclass(frozen=True, slots=True)
class CallInfo:
    """What the agent is told about the call in ``start.customParameters``."""

    call_id: str
    caller: str
    callee: str
    template_context: Mapping[str, Any] = field(default_factory=dict)
    agent_id: str | None = None
    system_prompt: str | None = None
    call_template: Mapping[str, Any] = field(default_factory=dict)
    auth_token: str | None = None
    """The per-call token of sipline's Twilio-compatible hang-up (``chalicelib.twilio_compat``)."""
    direction: str = "incoming"
    """``incoming`` (the caller called us) or ``outgoing`` (we called the callee)."""
    extra: Mapping[str, str] = field(default_factory=dict)
    """More parameters, added as they are (a warm transfer's operator leg: ``sipline_leg``...)."""


def custom_parameters(call: CallInfo) -> dict[str, str]:
    """Return ``start.customParameters`` for ``call``: strings only, structures as JSON text."""
    params = {
        "call_id": call.call_id,
        "from_number": call.caller,
        "to_number": call.callee,
        "template_context": _json_text(call.template_context),
        "direction": call.direction,
    }
    if call.agent_id is not None:
        params["agent_id"] = call.agent_id
    if call.system_prompt is not None:
        params["system_prompt"] = call.system_prompt
    if call.call_template:
        params["call_template"] = _json_text(call.call_template)
    if call.auth_token is not None:
        params["auth_token"] = call.auth_token
    params.update(call.extra)
    return params


def _json_text(value: Mapping[str, Any]) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


# --- the framing ---------------------------------------------------------------------------------


class TwilioFraming:
    """Encode the relay's side of one Twilio Media Stream and decode the agent's (sans-I/O)."""

    media_format = MediaFormat(
        encoding=MULAW_ENCODING, sample_rate=MULAW_SAMPLE_RATE_HZ, channels=1
    )
    bytes_per_second = MULAW_SAMPLE_RATE_HZ  # one byte per sample
    sample_bytes = 1

    def __init__(self, identity: StreamIdentity) -> None:
        """Create the framing of one stream; one per call."""
        self.identity = identity
        self.counters = FramingCounters()
        self._sequence = 0
        self._chunk = 0
        self._audio_bytes_sent = 0
        self._stream_sid_json = json.dumps(identity.stream_sid)

    @property
    def frame_bytes(self) -> int:
        """Return the size of 20 ms of audio in this framing."""
        return self.bytes_per_second * FRAME_MS // 1000

    def _next_sequence(self) -> str:
        self._sequence += 1
        return str(self._sequence)

    def connected(self) -> str:
        """Return the ``connected`` message."""
        return ConnectedMessage().to_json()

    def start(self, parameters: Mapping[str, str]) -> str:
        """Return the ``start`` message carrying ``parameters`` as ``customParameters``."""
        sid = self.identity
        metadata = StartMetadata(
            stream_sid=sid.stream_sid,
            account_sid=sid.account_sid,
            call_sid=sid.call_sid,
            tracks=[INBOUND_TRACK],
            custom_parameters=dict(parameters),
            media_format=self.media_format,
        )
        message = StartMessage(
            sequence_number=self._next_sequence(), start=metadata, stream_sid=sid.stream_sid
        )
        return message.to_json()

    def media(self, audio: bytes) -> str | bytes:
        """Return the ``media`` message for one chunk of caller audio."""
        # The hot path (50 a second per call): formatted directly; tests check it against
        # MediaMessage. The payload is base64 and the SID is JSON-escaped once, at start.
        self._chunk += 1
        timestamp_ms = self._audio_bytes_sent * 1000 // self.bytes_per_second
        self._audio_bytes_sent += len(audio)
        payload = base64.b64encode(audio).decode("ascii")
        return (
            f'{{"event":"media","sequenceNumber":"{self._next_sequence()}",'
            f'"media":{{"track":"{INBOUND_TRACK}","chunk":"{self._chunk}",'
            f'"timestamp":"{timestamp_ms}","payload":"{payload}"}},'
            f'"streamSid":{self._stream_sid_json}}}'
        )

    def dtmf(self, digit: str) -> str:
        """Return the ``dtmf`` message for one digit (0-9, * or #).

        Raises:
            ValueError: ``digit`` is not a DTMF digit.
        """
        if digit not in KEYPAD_DIGITS:  # docs/agents.md: 0-9, * and #; A-D are not forwarded
            raise ValueError(f"not a DTMF digit: {digit!r}")
        return DtmfMessage(
            stream_sid=self.identity.stream_sid,
            sequence_number=self._next_sequence(),
            dtmf=DtmfPayload(digit=digit),
        ).to_json()

    def mark(self, name: str) -> str:
        """Return the ``mark`` message echoing the agent's mark ``name``."""
        return MarkMessage(
            sequence_number=self._next_sequence(),
            stream_sid=self.identity.stream_sid,
            mark=MarkPayload(name=name),
        ).to_json()

    def transfer(
        self, transfer_id: str, status: TransferEnd, *, sip_status: int | None, reason: str | None
    ) -> str:
        """Return the ``transfer`` message (a sipline extension): how a transfer ended."""
        return TransferMessage(
            sequence_number=self._next_sequence(),
            stream_sid=self.identity.stream_sid,
            transfer=TransferPayload(
                transfer_id=transfer_id,
                status=status,
                sip_status=sip_status,
                reason=reason,
            ),
        ).to_json()

    def stop(self) -> str:
        """Return the ``stop`` message."""
        sid = self.identity
        return StopMessage(
            sequence_number=self._next_sequence(),
            stop=StopMetadata(account_sid=sid.account_sid, call_sid=sid.call_sid),
            stream_sid=sid.stream_sid,
        ).to_json()

    def receive(self, data: str | bytes) -> AgentCommand | None:
        """Decode one agent message; return ``None`` (and count it) when it is dropped.

        A binary frame is read as JSON too: Twilio takes text frames only, but nothing is
        gained by refusing the same JSON in a binary frame.
        """
        self.counters.messages_in += 1
        try:
            message = AGENT_MESSAGE.validate_json(data)
        except ValidationError as error:
            self._count_invalid(error)
            return None
        if isinstance(message, AgentMedia):
            return self._play(message.media.payload)
        if isinstance(message, AgentMark):
            return PlaceMark(message.mark.name)
        if isinstance(message, AgentDtmf):
            command = digits_command(message.dtmf.digits, message.dtmf.duration_ms)
            self.counters.bad_dtmf += isinstance(command, DigitsRefused)
            return command
        return ClearAudio()

    def _count_invalid(self, error: ValidationError) -> None:
        kinds = {e["type"] for e in error.errors(include_url=False)}
        if "json_invalid" in kinds:
            self.counters.invalid_json += 1
        elif "union_tag_invalid" in kinds:
            self.counters.unknown_events += 1
        else:
            self.counters.invalid_messages += 1

    def _play(self, payload: str) -> PlayAudio | None:
        try:
            audio = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            self.counters.bad_payloads += 1
            return None
        if len(audio) % self.sample_bytes:
            self.counters.bad_payloads += 1
            return None
        return PlayAudio(audio)
