"""The HD framing: 16-bit linear PCM at 16 or 48 kHz on the agent WebSocket (contract 4).

For agents that can take wideband audio (``MediaFraming.PCM16K`` / ``PCM48K``). It is the
Twilio Media Streams framing (:mod:`relay.bridge.twilio_framing`) with two changes, so an
agent written for one needs a few lines for the other:

1. **Audio travels in binary WebSocket frames**, raw PCM: signed 16-bit little-endian samples
   ("s16le"), mono, at the stream's sample rate, no header, no base64. From the relay, each
   binary frame is exactly 20 ms (640 bytes at 16 kHz, 1,920 bytes at 48 kHz). To the relay, a
   binary frame may hold any whole number of samples (an odd byte count is counted and
   dropped); it is queued and played out at real time, like Twilio ``media``. A JSON ``media``
   message whose base64 payload is s16le PCM is accepted too.
2. **``start.mediaFormat``** says ``{"encoding": "pcm_s16le", "sampleRate": 16000 | 48000,
   "channels": 1}``. (Not ``audio/L16``: that MIME type is big-endian by definition, RFC 3551
   §4.5.11, and this framing is little-endian, the byte order of every platform an agent runs
   on.)

Everything else is Twilio's, as JSON text frames: ``connected``, ``start`` (same
``customParameters``), ``dtmf``, ``mark`` and ``stop`` to the agent; ``mark`` and ``clear``
from it. ``sequenceNumber`` counts every message the relay sends, binary audio frames included,
so the number on a ``dtmf`` or ``mark`` tells how many audio frames came before it.

Why binary frames rather than base64 in JSON: at 48 kHz a 20 ms frame is 1,920 bytes, which
base64 and JSON would make 2,560+ characters to build and parse 50 times a second per call, and
every agent SDK hands binary WebSocket frames over as plain bytes, ready for a speech model.
"""

from __future__ import annotations

from relay.bridge.twilio_framing import (
    FRAME_MS,
    AgentCommand,
    MediaFormat,
    PlayAudio,
    StreamIdentity,
    TwilioFraming,
)

PCM16_ENCODING = "pcm_s16le"
HD_SAMPLE_RATES_HZ = (16000, 48000)
SAMPLE_BYTES = 2  # 16-bit samples


def hd_frame_bytes(sample_rate_hz: int) -> int:
    """Return the size of one 20 ms binary audio frame at ``sample_rate_hz``."""
    return sample_rate_hz * FRAME_MS // 1000 * SAMPLE_BYTES


class HdFraming(TwilioFraming):
    """Encode and decode one HD stream: Twilio control messages, binary s16le audio."""

    sample_bytes = SAMPLE_BYTES

    def __init__(self, identity: StreamIdentity, *, sample_rate_hz: int) -> None:
        """Create the framing of one stream.

        Raises:
            ValueError: ``sample_rate_hz`` is not 16,000 or 48,000.
        """
        if sample_rate_hz not in HD_SAMPLE_RATES_HZ:
            raise ValueError(f"HD framing runs at 16000 or 48000 Hz, not {sample_rate_hz}")
        super().__init__(identity)
        self.media_format = MediaFormat(
            encoding=PCM16_ENCODING, sample_rate=sample_rate_hz, channels=1
        )
        self.bytes_per_second = sample_rate_hz * SAMPLE_BYTES

    def media(self, audio: bytes) -> str | bytes:
        """Return one binary frame of caller audio (it takes a sequence number)."""
        self._next_sequence()
        return bytes(audio)

    def receive(self, data: str | bytes) -> AgentCommand | None:
        """Decode one agent message: binary frames are audio, text frames Twilio JSON."""
        if isinstance(data, str):
            return super().receive(data)
        self.counters.messages_in += 1
        if len(data) % SAMPLE_BYTES:
            self.counters.bad_payloads += 1
            return None
        return PlayAudio(bytes(data))
