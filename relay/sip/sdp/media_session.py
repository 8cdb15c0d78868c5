"""The offer/answer state of one established call: answering re-offers, re-offering (RFC 3264 §8).

Theory of operation:

1. :class:`MediaSession` holds the last SDP we sent (``local``), the last the peer sent
   (``remote``) and the codec preference of the call. It is a value: every step returns a new
   one, so a rejected re-offer leaves the call's media as it was (RFC 3261 §14.2).
2. A re-offer (hold, unhold, a session refresh carrying SDP, a PBX moving the call) is answered
   like the first offer, from the same address, port and ``o=`` session id, with the codec in
   use first so that a refresh does not switch codecs under the media layer.
3. Versions (RFC 3264 §8): an SDP identical to the last one we sent keeps its ``o=`` version;
   any change increments it.
4. Two offers of ours: :meth:`MediaSession.current_offer` is the last SDP we sent, unchanged,
   for a session refresh; :meth:`MediaSession.fresh_offer` lists every codec of the call,
   sendrecv, for a re-INVITE without SDP (RFC 3261 §14.2: the UAS must then make an offer).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from relay.sip.sdp.codecs import TELEPHONE_EVENT, codec_spec
from relay.sip.sdp.description import MediaDescription, SessionDescription
from relay.sip.sdp.offer_answer import (
    AUDIO,
    DEFAULT_PTIME_MS,
    Answer,
    NegotiatedMedia,
    NoCommonCodec,
    accept_answer,
    build_offer,
    negotiate,
)

__all__ = ["MediaSession", "supported_codecs"]


@dataclass(frozen=True, slots=True)
class MediaSession:
    """What each side last said about the media of one call."""

    local: SessionDescription
    """The last SDP we sent: our answer, or our offer while ``remote`` answers it."""
    remote: SessionDescription | None
    """The last SDP the peer sent; ``None`` while our first offer awaits its answer."""
    preference: tuple[str, ...]
    """Codec names, best first, as ``offer_answer`` accepts them."""

    @property
    def _audio(self) -> MediaDescription:
        return next(
            (m for m in self.local.media if m.media == AUDIO and m.port != 0), self.local.media[0]
        )

    @property
    def current_codec(self) -> str | None:
        """Return the codec of our audio stream (the first non-event format), if we know it."""
        for rtpmap in self._audio.rtpmaps:
            if rtpmap.encoding_name.casefold() != TELEPHONE_EVENT:
                try:
                    return codec_spec(rtpmap.encoding_name).name
                except ValueError:
                    return None
        return None

    def _ordered_preference(self) -> tuple[str, ...]:
        current = self.current_codec
        return self.preference if current is None else (current, *self.preference)

    def _local_address(self) -> str:
        connection = self.local.connection_for(self._audio)
        return connection.address if connection is not None else self.local.origin.address

    def _versioned(self, candidate: SessionDescription) -> SessionDescription:
        """Keep our ``o=`` version when nothing changed, else increment it (rule 3)."""
        version = self.local.origin.session_version
        same = candidate.with_version(version)
        return same if same == self.local else candidate.with_version(version + 1)

    def answer(self, offer: SessionDescription) -> tuple[MediaSession, Answer] | NoCommonCodec:
        """Answer a re-offer (rule 2); a :class:`NoCommonCodec` changes nothing (488)."""
        result = negotiate(
            offer,
            preference=self._ordered_preference(),
            local_address=self._local_address(),
            local_port=self._audio.port,
            session_id=self.local.origin.session_id,
            session_version=self.local.origin.session_version,
            ptime_ms=self._audio.ptime_ms or DEFAULT_PTIME_MS,
        )
        if isinstance(result, NoCommonCodec):
            return result
        answer = dataclasses.replace(result, sdp=self._versioned(result.sdp))
        return MediaSession(answer.sdp, offer, self.preference), answer

    def current_offer(self) -> SessionDescription:
        """Return the last SDP we sent, unchanged, to offer in a session refresh (rule 4)."""
        return self.local

    def fresh_offer(self) -> MediaSession:
        """Return the session after offering every codec of the call, sendrecv (rule 4)."""
        offer = build_offer(
            preference=self._ordered_preference(),
            local_address=self._local_address(),
            local_port=self._audio.port,
            session_id=self.local.origin.session_id,
            session_version=self.local.origin.session_version,
            ptime_ms=self._audio.ptime_ms or DEFAULT_PTIME_MS,
        )
        return MediaSession(self._versioned(offer), self.remote, self.preference)

    def answered(self, answer: SessionDescription) -> tuple[MediaSession, NegotiatedMedia]:
        """Read the peer's answer to ``local`` (our offer).

        Raises:
            AnswerError: the answer breaks RFC 3264 or rejects our audio stream.
        """
        media = accept_answer(self.local, answer)
        return MediaSession(self.local, answer, self.preference), media


def supported_codecs(sdp: SessionDescription) -> tuple[str, ...]:
    """Return the names of the codecs sipline supports in ``sdp``'s m-lines, in order."""
    names: list[str] = []
    for media in sdp.media:
        for rtpmap in media.rtpmaps:
            if rtpmap.encoding_name.casefold() == TELEPHONE_EVENT:
                continue
            try:
                name = codec_spec(rtpmap.encoding_name).name
            except ValueError:
                continue
            if name not in names:
                names.append(name)
    return tuple(names)
