"""The media stages between an RTP payload and the agent's audio, and the agent's playout queue.

A call carries audio two ways, each a short chain of small stages (livekit/sip style):

- `ReceivePath`: caller payload -> decode -> resample -> the agent's format. A lost packet
  goes through the decoder's concealment and then the same chain.
- `SendPath`: the agent's format -> resample -> encode -> caller payload.

G.711 against the Twilio framing (μ-law 8 kHz) skips the PCM detour: μ-law passes through
untouched and A-law is one 256-entry table lookup each way, a few hundred nanoseconds per frame.
Every path names itself: ``str(path)`` is the chain, e.g.
``PCMU decode -> resample 8k->16k -> pcm16k``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from chalicelib.contracts import MediaFraming
from relay.media.codecs import FRAME_MS, CodecSpec, Decoder, Encoder
from relay.media.codecs.g711 import (
    ALAW_DECODE_TABLE,
    ALAW_ENCODE_TABLE,
    ULAW_DECODE_TABLE,
    ULAW_ENCODE_TABLE,
    PcmuDecoder,
    PcmuEncoder,
)
from relay.media.resample import PolyphaseResampleStream


class Stage(Protocol):
    """One step of a media chain: bytes in, bytes out, named by ``str()``."""

    def process(self, data: bytes) -> bytes:
        """Transform one chunk."""
        ...


@dataclass(frozen=True, slots=True)
class AgentFormat:
    """How the agent's audio is coded: its rate, sample size and what silence looks like."""

    framing: MediaFraming
    sample_rate_hz: int
    bytes_per_sample: int
    silence_byte: int

    @property
    def frame_bytes(self) -> int:
        """Return the size of one 20 ms frame."""
        return self.sample_rate_hz * FRAME_MS // 1000 * self.bytes_per_sample

    def duration_bytes(self, ms: float) -> int:
        """Return the size of ``ms`` milliseconds of audio (whole samples)."""
        return int(self.sample_rate_hz * ms / 1000) * self.bytes_per_sample


def agent_format(framing: MediaFraming) -> AgentFormat:
    """Return the format of an agent framing (contract 4)."""
    if framing is MediaFraming.TWILIO:
        return AgentFormat(framing, 8000, 1, 0xFF)  # μ-law of 0 is 0xFF
    rate_hz = 16000 if framing is MediaFraming.PCM16K else 48000
    return AgentFormat(framing, rate_hz, 2, 0)


class Chain:
    """Stages run in order; ``str()`` names them joined by arrows."""

    def __init__(self, stages: Sequence[Stage]) -> None:
        """Chain ``stages`` (none: pass through)."""
        self.stages = tuple(stages)

    def process(self, data: bytes) -> bytes:
        """Run ``data`` through every stage."""
        for stage in self.stages:
            data = stage.process(data)
        return data

    def reset(self) -> None:
        """Forget filter history (after silence that did not go through the chain)."""
        for stage in self.stages:
            if isinstance(stage, PolyphaseResampleStream):
                stage.reset()

    def __str__(self) -> str:
        return " -> ".join(map(str, self.stages)) or "passthrough"


class ByteTable:
    """Map every byte through a 256-entry table (μ-law <-> A-law)."""

    def __init__(self, name: str, table: np.ndarray) -> None:
        """Name the stage and keep the table."""
        self.name = name
        self._table = table.astype(np.uint8).tobytes()

    def process(self, data: bytes) -> bytes:
        """Translate each byte."""
        return data.translate(self._table)

    def __str__(self) -> str:
        return self.name


class Encode:
    """PCM16 at the codec's rate -> payload."""

    def __init__(self, name: str, encoder: Encoder) -> None:
        """Wrap ``encoder``; ``name`` is the codec's."""
        self.name, self.encoder = name, encoder

    def process(self, data: bytes) -> bytes:
        """Encode one frame."""
        return self.encoder.encode(data)

    def __str__(self) -> str:
        return f"{self.name} encode"


class Decode:
    """Payload -> PCM16 at the codec's rate."""

    def __init__(self, name: str, decoder: Decoder) -> None:
        """Wrap ``decoder``; ``name`` is the codec's."""
        self.name, self.decoder = name, decoder

    def process(self, data: bytes) -> bytes:
        """Decode one payload."""
        return self.decoder.decode(data)

    def __str__(self) -> str:
        return f"{self.name} decode"


class Label:
    """A stage that only names the end of a chain (``pcm16k``)."""

    def __init__(self, name: str) -> None:
        """Name it."""
        self.name = name

    def process(self, data: bytes) -> bytes:
        """Pass ``data`` on."""
        return data

    def __str__(self) -> str:
        return self.name


_ULAW_TO_ALAW = ALAW_ENCODE_TABLE[ULAW_DECODE_TABLE.view(np.uint16)]
_ALAW_TO_ULAW = ULAW_ENCODE_TABLE[ALAW_DECODE_TABLE.view(np.uint16)]


class ReceivePath:
    """Caller payloads (and losses) -> agent audio."""

    def __init__(self, codec: CodecSpec, decoder: Decoder, agent: AgentFormat) -> None:
        """Build the chain from ``codec`` to ``agent``."""
        self.codec, self.agent = codec, agent
        self._decoder = decoder
        self._direct: Stage | None = None
        after: list[Stage] = []
        if codec.sample_rate_hz != agent.sample_rate_hz:
            after.append(PolyphaseResampleStream(codec.sample_rate_hz, agent.sample_rate_hz))
        if agent.framing is MediaFraming.TWILIO:
            after.append(Encode("PCMU", PcmuEncoder()))
            if codec.name == "PCMU":
                self._direct = Label("passthrough")
            elif codec.name == "PCMA":
                self._direct = ByteTable("PCMA->PCMU", _ALAW_TO_ULAW)
        self.after_decode = Chain(after)
        self._last_payload = b""
        self._decoder_behind = False  # the direct path skipped the decoder since the last loss

    @property
    def delay_ms(self) -> float:
        """Return the algorithmic delay of the chain (the resampler's group delay)."""
        stages = self.after_decode.stages
        return sum(s.delay_ms for s in stages if isinstance(s, PolyphaseResampleStream))

    def audio(self, payload: bytes) -> bytes:
        """Return the agent audio of one payload.

        Raises:
            ValueError: the decoder rejects the payload.
        """
        if self._direct is not None:
            self._last_payload, self._decoder_behind = payload, True
            return self._direct.process(payload)
        return self.after_decode.process(self._decoder.decode(payload))

    def conceal(self, samples: int, next_payload: bytes | None = None) -> bytes:
        """Return agent audio standing in for ``samples`` lost samples (at the codec's rate)."""
        if self._decoder_behind:
            # The fast path never fed the decoder: prime its concealment with the last packet.
            self._decoder.decode(self._last_payload)
            self._decoder_behind = False
        return self.after_decode.process(self._decoder.conceal(samples, next_payload=next_payload))

    def silence(self, agent_bytes: int) -> bytes:
        """Return silence in the agent's format, forgetting filter history."""
        self.after_decode.reset()
        return bytes((self.agent.silence_byte,)) * agent_bytes

    def __str__(self) -> str:
        if self._direct is not None:
            return f"{self._direct} -> {self.agent.framing.value}"
        stages = [f"{self.codec.name} decode", *map(str, self.after_decode.stages)]
        return " -> ".join([*stages, self.agent.framing.value])


class SendPath:
    """Agent audio, 20 ms at a time -> caller payloads."""

    def __init__(self, codec: CodecSpec, encoder: Encoder, agent: AgentFormat) -> None:
        """Build the chain from ``agent`` to ``codec``."""
        self.codec, self.agent = codec, agent
        self._encoder = encoder
        self._direct: Stage | None = None
        before: list[Stage] = []
        if agent.framing is MediaFraming.TWILIO:
            before.append(Decode("PCMU", PcmuDecoder()))
            if codec.name == "PCMU":
                self._direct = Label("passthrough")
            elif codec.name == "PCMA":
                self._direct = ByteTable("PCMU->PCMA", _ULAW_TO_ALAW)
        if codec.sample_rate_hz != agent.sample_rate_hz:
            before.append(PolyphaseResampleStream(agent.sample_rate_hz, codec.sample_rate_hz))
        self.before_encode = Chain(before)
        self._silence_pcm = bytes(codec.frame_bytes)
        self._silence_payload: bytes | None = None
        if codec.name in ("PCMU", "PCMA"):  # stateless: one silent payload serves every tick
            self._silence_payload = encoder.encode(self._silence_pcm)

    @property
    def delay_ms(self) -> float:
        """Return the algorithmic delay of the chain (the resampler's group delay)."""
        stages = self.before_encode.stages
        return sum(s.delay_ms for s in stages if isinstance(s, PolyphaseResampleStream))

    def frame(self, audio: bytes) -> bytes:
        """Return the payload of one 20 ms frame of agent audio."""
        if self._direct is not None:
            return self._direct.process(audio)
        return self._encoder.encode(self.before_encode.process(audio))

    def pcm(self, pcm: bytes) -> bytes:
        """Return the payload of 20 ms of PCM16 already at the codec's rate (hold music)."""
        self.before_encode.reset()  # the agent's audio after it starts from a clean filter
        return self._encoder.encode(pcm)

    def silence(self) -> bytes:
        """Return the payload of 20 ms of silence (encoded, so codec state stays continuous)."""
        self.before_encode.reset()  # speech after the silence starts from a clean filter
        if self._silence_payload is not None:
            return self._silence_payload
        return self._encoder.encode(self._silence_pcm)

    def __str__(self) -> str:
        if self._direct is not None:
            return f"{self.agent.framing.value} -> {self._direct}"
        stages = [self.agent.framing.value, *map(str, self.before_encode.stages)]
        return " -> ".join([*stages, f"{self.codec.name} encode"])
