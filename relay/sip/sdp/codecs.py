"""The audio codecs sipline can both encode and decode, as SDP names them.

Theory of operation:

1. A `CodecSpec` is one RTP payload format as it appears in ``a=rtpmap``:
   encoding name, RTP clock rate and channels (RFC 8866 §6.6). Two formats
   match when the name is equal ignoring case (RFC 4855 §3: media subtype
   names are case-insensitive) and clock rate and channels are equal.
2. `CODECS` holds only codecs the media layer can encode AND decode: PCMU,
   PCMA, G722, opus and AMR-WB. iLBC and G.722.1 are absent on purpose: no
   encoder is available to us (decoders alone are not enough for a call).
3. AMR-WB (G.722.2) is registered, but its encoder library may not load on a
   given host: callers leave it out of their preference list then. A
   preference list is therefore also the capability set for one call.
4. telephone-event (RFC 4733) is not a codec: `telephone_event_spec` gives the
   variant at a codec's clock rate (8000, 16000 or 48000).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from relay.sip.sdp.fields import RtpMap

TELEPHONE_EVENT = "telephone-event"  # RFC 4733 §7.1.1
DTMF_EVENTS = "0-15"  # RFC 4733 §3.2: DTMF digits 0-9, *, #, A-D


@dataclass(frozen=True, slots=True)
class CodecSpec:
    """One payload format sipline can negotiate, with the numbers our offers use."""

    name: str
    """Encoding name as we write it in ``a=rtpmap`` (``PCMU``, ``opus``)."""
    clock_rate_hz: int
    """RTP timestamp clock rate: 8000 for G722 (RFC 3551 §4.5.2), 48000 for opus (RFC 7587 §4.1)."""
    payload_type: int
    """The static payload type (RFC 3551 §6), or the dynamic one our offers use."""
    channels: int = 1
    """Channel count as written in ``a=rtpmap``: opus is always ``/2`` (RFC 7587 §7)."""
    sample_rate_hz: int | None = None
    """The audio sample rate when it differs from the clock rate (G722: 16000)."""
    fmtp: str | None = None
    """Format parameters we write for this codec: our receive preferences (RFC 7587 §6.1)."""
    answer_with_offer_fmtp: bool = False
    """Echo the offer's fmtp in the answer: AMR-WB octet-align must match (RFC 4867 §8.3.1)."""

    @property
    def label(self) -> str:
        """``name/clock[/channels]``, the rtpmap form, used in warnings and logs."""
        suffix = "" if self.channels == 1 else f"/{self.channels}"
        return f"{self.name}/{self.clock_rate_hz}{suffix}"

    def matches(self, rtpmap: RtpMap) -> bool:
        """Return True when an offered ``a=rtpmap`` is this format (RFC 3264 §6.1)."""
        return (
            rtpmap.encoding_name.casefold() == self.name.casefold()
            and rtpmap.clock_rate_hz == self.clock_rate_hz
            and rtpmap.channels == self.channels
        )

    def rtpmap(self, payload_type: int | None = None) -> RtpMap:
        """Return our ``a=rtpmap`` for this format, at our number unless one is given."""
        number = self.payload_type if payload_type is None else payload_type
        return RtpMap(number, self.name, self.clock_rate_hz, self.channels)


PCMU = CodecSpec("PCMU", 8000, payload_type=0)  # RFC 3551 §4.5.14
PCMA = CodecSpec("PCMA", 8000, payload_type=8)  # RFC 3551 §4.5.14
G722 = CodecSpec("G722", 8000, payload_type=9, sample_rate_hz=16000)  # RFC 3551 §4.5.2
OPUS = CodecSpec("opus", 48000, payload_type=96, channels=2, fmtp="useinbandfec=1")  # RFC 7587 §7
AMR_WB = CodecSpec(
    "AMR-WB", 16000, payload_type=97, answer_with_offer_fmtp=True
)  # G.722.2, RFC 4867 §8.1

CODECS: Mapping[str, CodecSpec] = {
    spec.name.casefold(): spec for spec in (PCMU, PCMA, G722, OPUS, AMR_WB)
}
_ALIASES = {"g.722": G722, "g.722.2": AMR_WB, "g.711u": PCMU, "g.711a": PCMA}

TELEPHONE_EVENTS: Mapping[int, CodecSpec] = {
    spec.clock_rate_hz: spec
    for spec in (
        CodecSpec(TELEPHONE_EVENT, 8000, payload_type=101, fmtp=DTMF_EVENTS),
        CodecSpec(TELEPHONE_EVENT, 16000, payload_type=102, fmtp=DTMF_EVENTS),
        CodecSpec(TELEPHONE_EVENT, 48000, payload_type=103, fmtp=DTMF_EVENTS),
    )
}
"""telephone-event at each clock rate we offer it (RFC 4733 §7.1.1)."""


def codec_spec(name: str) -> CodecSpec:
    """Look up a codec by encoding name (any case) or ITU name (``G.722``, ``G.722.2``).

    Raises:
        ValueError: for a codec we cannot both encode and decode (iLBC, G.722.1, G729, …).
    """
    key = name.strip().casefold()
    spec = CODECS.get(key) or _ALIASES.get(key)
    if spec is None:
        supported = ", ".join(s.name for s in CODECS.values())
        raise ValueError(f"unsupported codec {name!r}; sipline supports {supported}")
    return spec


def resolve_preference(names: Iterable[str]) -> tuple[CodecSpec, ...]:
    """Turn a preference list of names into specs, best first, duplicates dropped.

    Raises:
        ValueError: for an unknown codec name or an empty list.
    """
    specs: list[CodecSpec] = []
    for spec in map(codec_spec, names):
        if spec not in specs:
            specs.append(spec)
    if not specs:
        raise ValueError("codec preference is empty")
    return tuple(specs)


def telephone_event_spec(clock_rate_hz: int) -> CodecSpec | None:
    """Return telephone-event at this clock rate, or None when we have no such variant."""
    return TELEPHONE_EVENTS.get(clock_rate_hz)
