"""The offer/answer model (RFC 3264) for one audio stream, sans-I/O.

Theory of operation:

1. sipline carries one audio stream per call. As answerer (`negotiate`) it
   accepts the first offered ``m=audio`` line over ``RTP/AVP`` with a port other
   than 0 that has a codec in common with our preference list, and rejects every
   other m-line with port 0, keeping their number and order (RFC 3264 §6).
2. The codec is the first of OUR preference that the offer contains; it is
   matched by encoding name (any case), clock rate and channels, and answered
   with the offer's payload type number, dynamic or static (RFC 3264 §6.1).
3. telephone-event (RFC 4733) joins the codec when offered: at the codec's
   clock rate if offered so (opus 48000, AMR-WB 16000), else at 8000.
4. Direction is mirrored (RFC 3264 §6.1): what the offerer sends we receive,
   and we send only what it receives; ``local_direction`` lets us hold too.
   ``c=0.0.0.0`` in an offer means "send nothing to me" (RFC 3264 §8.4): the
   answer still mirrors the attribute, but `NegotiatedMedia.direction` (what
   the media layer does) does not send.
5. As offerer, `build_offer` writes our preference list with static or fixed
   dynamic payload types and telephone-event, and `accept_answer` reads the
   remote's answer into the same `NegotiatedMedia`; an answer that breaks
   RFC 3264 raises `AnswerError`.
6. No common codec is not an exception but a value, `NoCommonCodec`, which
   carries the 488 status and the 304/305 Warning (RFC 3261 §20.43, §21.4.26).

Size: a little over 400 lines: negotiate, build_offer and accept_answer share their matching
rules.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from relay.sip.sdp.codecs import (
    TELEPHONE_EVENT,
    CodecSpec,
    codec_spec,
    resolve_preference,
    telephone_event_spec,
)
from relay.sip.sdp.description import (
    Attribute,
    Connection,
    Direction,
    Fmtp,
    MediaDescription,
    Origin,
    RtpMap,
    SessionDescription,
)
from relay.sip.sdp.fields import fmtp_parameters

NOT_ACCEPTABLE_HERE = 488  # RFC 3261 §21.4.26
WARN_MEDIA_TYPE_NOT_AVAILABLE = 304  # RFC 3261 §20.43
WARN_INCOMPATIBLE_MEDIA_FORMAT = 305  # RFC 3261 §20.43
AUDIO = "audio"
RTP_AVP = "RTP/AVP"  # RFC 3551: SRTP (RTP/SAVP) and AVPF profiles are not accepted
DEFAULT_PTIME_MS = 20


class AnswerError(ValueError):
    """The remote's answer to our offer breaks RFC 3264 §6; the message says how."""


@dataclass(frozen=True, slots=True)
class NegotiatedMedia:
    """What the media layer needs once offer and answer agree (RFC 3264 §6.1)."""

    codec: str
    """Encoding name as sipline spells it (``opus``, ``G722``, ``PCMU``)."""
    payload_type: int
    """Payload type we send with: the number the remote expects to receive."""
    clock_rate_hz: int
    """RTP timestamp clock rate (8000 for G722, RFC 3551 §4.5.2)."""
    channels: int
    """Channel count from ``a=rtpmap`` (2 for opus, RFC 7587 §7)."""
    fmtp: str | None
    """The remote's format parameters: what our encoder must honour (RFC 7587 §7)."""
    ptime_ms: int
    """Packet duration to send: the remote's ``a=ptime``, capped by its ``a=maxptime``."""
    telephone_event_payload_type: int | None
    """Payload type for RFC 4733 events we send, or None when not negotiated."""
    remote_address: str
    """Where to send RTP: the effective ``c=`` address of the remote's m-line."""
    remote_port: int
    """Where to send RTP: the remote's m-line port."""
    direction: Direction
    """What we do: SENDRECV sends and receives; never sends to a 0.0.0.0 address."""
    receive_payload_type: int
    """Payload type the remote sends to us (equal to ``payload_type`` unless renumbered)."""
    receive_telephone_event_payload_type: int | None
    """Payload type of RFC 4733 events the remote sends to us, or None."""
    held_by_remote: bool
    """The remote's SDP holds the stream: sendonly, inactive or 0.0.0.0 (RFC 3264 §8.4)."""

    def fmtp_parameters(self) -> dict[str, str]:
        """Return ``fmtp`` as a dict with lower-cased names."""
        return fmtp_parameters(self.fmtp)


@dataclass(frozen=True, slots=True)
class Answer:
    """Our answer to an offer: the SDP to send and the media it sets up."""

    sdp: SessionDescription
    media: NegotiatedMedia


@dataclass(frozen=True, slots=True)
class NoCommonCodec:
    """The offer has nothing we can use: answer 488 with a Warning (RFC 3261 §20.43)."""

    supported: tuple[CodecSpec, ...]
    warn_code: int = WARN_INCOMPATIBLE_MEDIA_FORMAT
    status_code: int = NOT_ACCEPTABLE_HERE

    @property
    def warning(self) -> str:
        """The warn-text: names what we support; safe inside a quoted-string."""
        codecs = ", ".join(spec.label for spec in self.supported)
        if self.warn_code == WARN_MEDIA_TYPE_NOT_AVAILABLE:
            return f"Media type not available: supported media is audio {RTP_AVP} with {codecs}"
        return f"Incompatible media format: supported codecs are {codecs}"

    def warning_header(self, agent: str) -> str:
        """Return a Warning header value: ``305 <agent> "<text>"`` (RFC 3261 §20.43)."""
        return f'{self.warn_code} {agent} "{self.warning}"'


@dataclass(frozen=True, slots=True)
class _Choice:
    """A codec (and maybe telephone-event) picked from one offered m-line."""

    index: int
    spec: CodecSpec
    rtpmap: RtpMap
    telephone_event: RtpMap | None


def negotiate(
    offer: SessionDescription,
    *,
    preference: Sequence[str],
    local_address: str,
    local_port: int,
    session_id: int,
    session_version: int,
    ptime_ms: int = DEFAULT_PTIME_MS,
    local_direction: Direction = Direction.SENDRECV,
) -> Answer | NoCommonCodec:
    """Answer an offer with the first codec of our preference that it contains.

    Args:
        offer: the remote's SDP offer.
        preference: codec names, best first; also the capability set of this call.
        local_address, local_port: where we receive RTP.
        session_id, session_version: our ``o=`` numbers (RFC 3264 §5, §8).
        ptime_ms: the packet duration we want to receive.
        local_direction: SENDRECV normally; SENDONLY or INACTIVE to hold.

    Raises:
        ValueError: when ``preference`` names a codec we cannot encode and decode.
    """
    specs = resolve_preference(preference)
    choice = _choose(offer, specs)
    if choice is None:
        has_audio = any(_is_usable_audio(offer, m) for m in offer.media)
        code = WARN_INCOMPATIBLE_MEDIA_FORMAT if has_audio else WARN_MEDIA_TYPE_NOT_AVAILABLE
        return NoCommonCodec(specs, warn_code=code)
    offered = offer.media[choice.index]
    direction = answer_direction(offer.direction_for(offered), local_direction)
    accepted = _answer_media(offered, choice, local_port, ptime_ms, direction)
    media = tuple(
        accepted if i == choice.index else _rejected(m) for i, m in enumerate(offer.media)
    )
    sdp = _session(local_address, session_id, session_version, media)
    return Answer(sdp, _negotiated(offer, offered, choice, direction, ptime_ms))


def answer_direction(offered: Direction, local: Direction = Direction.SENDRECV) -> Direction:
    """Mirror an offered direction, limited by what we want (RFC 3264 §6.1).

    sendonly gets recvonly, recvonly gets sendonly, inactive gets inactive,
    sendrecv gets ``local``.
    """
    return Direction.from_flags(
        sends=offered.receives and local.sends, receives=offered.sends and local.receives
    )


def build_offer(
    *,
    preference: Sequence[str],
    local_address: str,
    local_port: int,
    session_id: int,
    session_version: int,
    ptime_ms: int = DEFAULT_PTIME_MS,
    direction: Direction = Direction.SENDRECV,
) -> SessionDescription:
    """Write an offer of one audio stream with our codecs and telephone-event (RFC 3264 §5).

    telephone-event is offered at 8000 Hz and at every other clock rate of an
    offered codec that has a variant (16000 for AMR-WB, 48000 for opus).

    Raises:
        ValueError: when ``preference`` names a codec we cannot encode and decode.
    """
    specs = resolve_preference(preference)
    rates = dict.fromkeys([*(s.clock_rate_hz for s in specs), 8000])
    events = [e for e in map(telephone_event_spec, rates) if e is not None]
    attributes: list[Attribute] = []
    for spec in (*specs, *events):
        attributes.append(spec.rtpmap().to_attribute())
        if spec.fmtp is not None:
            attributes.append(Fmtp(str(spec.payload_type), spec.fmtp).to_attribute())
    attributes += [Attribute("ptime", str(ptime_ms)), Attribute(direction.value)]
    formats = tuple(str(s.payload_type) for s in (*specs, *events))
    media = MediaDescription(AUDIO, local_port, RTP_AVP, formats, attributes=tuple(attributes))
    return _session(local_address, session_id, session_version, (media,))


def accept_answer(offer: SessionDescription, answer: SessionDescription) -> NegotiatedMedia:
    """Read the remote's answer to our offer (RFC 3264 §7).

    Raises:
        AnswerError: when the answer breaks RFC 3264 §6 or rejects our audio stream.
    """
    if len(answer.media) != len(offer.media):
        raise AnswerError(
            f"answer has {len(answer.media)} m-lines but the offer has {len(offer.media)}"
        )
    index = next((i for i, m in enumerate(offer.media) if _is_usable_audio(offer, m)), None)
    if index is None:
        raise AnswerError("our offer has no audio stream")
    ours, theirs = offer.media[index], answer.media[index]
    if theirs.port == 0:
        raise AnswerError(f"answer rejected the audio stream (m-line {index + 1}, port 0)")
    sent = _answered_codec(ours, theirs)
    received = next(r for r in ours.rtpmaps if _same_format(r, sent))
    sent_event = _telephone_event(theirs, sent.clock_rate_hz)
    received_event = next((r for r in ours.rtpmaps if _same_format(r, sent_event)), None)
    if received_event is None:
        sent_event = None  # RFC 4733 events only in a variant both sides named
    address = _remote_address(answer, theirs)
    direction = answer_direction(answer.direction_for(theirs), offer.direction_for(ours))
    return NegotiatedMedia(
        codec=_spec_for(sent).name,
        payload_type=sent.payload_type,
        clock_rate_hz=sent.clock_rate_hz,
        channels=sent.channels,
        fmtp=theirs.fmtp(sent.payload_type),
        ptime_ms=_send_ptime_ms(theirs, ours.ptime_ms or DEFAULT_PTIME_MS),
        telephone_event_payload_type=_payload_type(sent_event),
        remote_address=address,
        remote_port=theirs.port,
        direction=_effective(direction, answer, theirs),
        receive_payload_type=received.payload_type,
        receive_telephone_event_payload_type=_payload_type(received_event),
        held_by_remote=answer.is_hold(theirs),
    )


# --- answerer helpers ------------------------------------------------------------


def _is_usable_audio(sdp: SessionDescription, media: MediaDescription) -> bool:
    """An RTP/AVP audio stream, not disabled (port 0), with a ``c=`` that applies to it."""
    is_audio = media.media == AUDIO and media.proto == RTP_AVP and media.port != 0
    return is_audio and sdp.connection_for(media) is not None


def _choose(offer: SessionDescription, specs: Sequence[CodecSpec]) -> _Choice | None:
    """Pick the first usable audio m-line and, in it, the first of our codecs it offers."""
    for index, media in enumerate(offer.media):
        if not _is_usable_audio(offer, media):
            continue
        offered = media.rtpmaps
        for spec in specs:
            rtpmap = next((r for r in offered if spec.matches(r)), None)
            if rtpmap is not None:
                event = _telephone_event(media, spec.clock_rate_hz)
                return _Choice(index, spec, rtpmap, event)
    return None


def _telephone_event(media: MediaDescription, clock_rate_hz: int) -> RtpMap | None:
    """Return offered telephone-event at the codec's clock rate, else at 8000 (RFC 4733 §2.1)."""
    events = [r for r in media.rtpmaps if r.encoding_name.casefold() == TELEPHONE_EVENT]
    for rate in (clock_rate_hz, 8000):
        match = next((r for r in events if r.clock_rate_hz == rate), None)
        if match is not None:
            return match
    return None


def _answer_media(
    offered: MediaDescription, choice: _Choice, port: int, ptime_ms: int, direction: Direction
) -> MediaDescription:
    codec_fmtp = offered.fmtp(choice.rtpmap.payload_type)
    ours = codec_fmtp if choice.spec.answer_with_offer_fmtp else choice.spec.fmtp
    attributes = [choice.rtpmap.to_attribute()]
    if ours is not None:
        attributes.append(Fmtp(str(choice.rtpmap.payload_type), ours).to_attribute())
    formats = [str(choice.rtpmap.payload_type)]
    event = choice.telephone_event
    if event is not None:
        formats.append(str(event.payload_type))
        event_spec = telephone_event_spec(event.clock_rate_hz)
        attributes.append(event.to_attribute())
        if event_spec is not None and event_spec.fmtp is not None:
            attributes.append(Fmtp(str(event.payload_type), event_spec.fmtp).to_attribute())
    attributes += [Attribute("ptime", str(ptime_ms)), Attribute(direction.value)]
    return MediaDescription(
        AUDIO, port, offered.proto, tuple(formats), attributes=tuple(attributes)
    )


def _rejected(offered: MediaDescription) -> MediaDescription:
    """Reject a stream: same media and proto, port 0, the offer's formats (RFC 3264 §6)."""
    return MediaDescription(offered.media, 0, offered.proto, offered.formats)


def _negotiated(
    offer: SessionDescription,
    offered: MediaDescription,
    choice: _Choice,
    direction: Direction,
    ptime_ms: int,
) -> NegotiatedMedia:
    event_pt = _payload_type(choice.telephone_event)
    return NegotiatedMedia(
        codec=choice.spec.name,
        payload_type=choice.rtpmap.payload_type,
        clock_rate_hz=choice.rtpmap.clock_rate_hz,
        channels=choice.rtpmap.channels,
        fmtp=offered.fmtp(choice.rtpmap.payload_type),
        ptime_ms=_send_ptime_ms(offered, ptime_ms),
        telephone_event_payload_type=event_pt,
        remote_address=_remote_address(offer, offered),
        remote_port=offered.port,
        direction=_effective(direction, offer, offered),
        receive_payload_type=choice.rtpmap.payload_type,
        receive_telephone_event_payload_type=event_pt,
        held_by_remote=offer.is_hold(offered),
    )


# --- shared helpers --------------------------------------------------------------


def _session(
    address: str, session_id: int, session_version: int, media: tuple[MediaDescription, ...]
) -> SessionDescription:
    address_type = _address_type(address)
    return SessionDescription(
        origin=Origin("-", session_id, session_version, address, address_type=address_type),
        connection=Connection(address, address_type=address_type),
        media=media,
    )


def _address_type(address: str) -> str:
    """Return ``IP6`` for an IPv6 literal, else ``IP4`` (RFC 8866 §5.7)."""
    try:
        return "IP6" if ipaddress.ip_address(address).version == 6 else "IP4"
    except ValueError:
        return "IP4"


def _remote_address(sdp: SessionDescription, media: MediaDescription) -> str:
    connection = sdp.connection_for(media)
    if connection is None:
        raise AnswerError(f"no c= line applies to the {media.media} stream")
    return connection.address


def _effective(direction: Direction, sdp: SessionDescription, media: MediaDescription) -> Direction:
    """Never send to ``c=0.0.0.0``: neither RTP nor RTCP goes there (RFC 3264 §8.4)."""
    connection = sdp.connection_for(media)
    if connection is not None and connection.is_null:
        return Direction.from_flags(sends=False, receives=direction.receives)
    return direction


def _send_ptime_ms(remote: MediaDescription, default_ms: int) -> int:
    """Send at the remote's ``a=ptime``, else ours, never above its ``a=maxptime``."""
    ptime = remote.ptime_ms or default_ms
    return min(ptime, remote.maxptime_ms) if remote.maxptime_ms else ptime


def _payload_type(rtpmap: RtpMap | None) -> int | None:
    return None if rtpmap is None else rtpmap.payload_type


def _same_format(a: RtpMap, b: RtpMap | None) -> bool:
    return b is not None and (a.encoding_name.casefold(), a.clock_rate_hz, a.channels) == (
        b.encoding_name.casefold(),
        b.clock_rate_hz,
        b.channels,
    )


def _spec_for(rtpmap: RtpMap) -> CodecSpec:
    try:
        return codec_spec(rtpmap.encoding_name)
    except ValueError:
        raise AnswerError(
            f"answer chose {rtpmap.encoding_name}, which sipline cannot encode"
        ) from None


def _answered_codec(ours: MediaDescription, theirs: MediaDescription) -> RtpMap:
    """Return the answer's first format that is a codec we offered (RFC 3264 §7)."""
    offered = [r for r in ours.rtpmaps if r.encoding_name.casefold() != TELEPHONE_EVENT]
    for rtpmap in theirs.rtpmaps:
        if any(_same_format(rtpmap, o) for o in offered):
            return rtpmap
    raise AnswerError("answer has no codec from our offer")
