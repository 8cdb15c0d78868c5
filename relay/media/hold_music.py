"""Hold music, sans-I/O: decode a file once, keep it in a bounded cache, loop it toward a leg.

Theory of operation:

1. **What is accepted** (`decode_hold_music`). A transfer's ``holdMusicUrl`` names an mp3 or a
   WAV file of at most ``MAX_DOWNLOAD_BYTES`` (the fetch, ``relay/transport/hold_music_fetch.py``,
   never reads past it). The bytes decide, not the ``Content-Type``: the first bytes must be a
   WAV header (``RIFF....WAVE``) or an mp3's (an ID3v2 tag, or an MPEG audio layer III frame
   sync), and PyAV then opens the data with that one demuxer (FFmpeg probes no other format), and
   the audio stream's codec must be one of `ALLOWED_CODECS`. Anything else, a file that does not
   decode, no audio, or more than ``MAX_DURATION_S`` of it, is a `HoldMusicRefused` naming why.
2. **One format kept** (`HoldClip`): 16 kHz 16-bit mono PCM (``CLIP_RATE_HZ``), whatever the
   file's rate and channels (PyAV's resampler downmixes and converts). Music on hold is heard
   through telephone codecs, so 8 kHz of audio band is plenty; keeping one rate keeps a 5-minute
   clip at 9.6 MB.
3. **Looped at the leg's rate** (`HoldMusicPlayer`). Each leg gets its own player: 20 ms frames at
   its codec's sample rate, the clip's 16 kHz resampled on the fly by the call path's polyphase
   resampler (``relay/media/resample.py``), wrapping from the end to the start with no gap. The
   sender (``relay/media/sender.py``) encodes them with the leg's encoder on its own 20 ms grid,
   where the agent's audio would have gone.
4. **The default** (`default_hold_music`) is ``relay/media/assets/hold.wav``, a 6-second loop
   that ``scripts/make_hold_music.py`` synthesizes (made by the project, never recorded). It is
   already 16 kHz mono 16-bit, so the stdlib's ``wave`` reads it: the default plays even where
   FFmpeg would not load. PyAV itself (FFmpeg's libraries, about 28 MB resident) is imported only
   when a URL's file is first decoded, as the codec registry imports native codecs.
5. **Cache** (`HoldMusicCache`): clips by URL, least recently used first out, bounded by count
   (``MAX_CACHED_CLIPS``) and by PCM bytes (``MAX_CACHE_BYTES``); an entry older than
   ``CACHE_TTL_S`` is fetched again (a user who replaces the file at the same URL is heard within
   the hour). ``now`` is an argument, as everywhere in the media core.

Hold music never reaches the agent, the recording or the caller-to-agent path: it only replaces
what the sender sends toward one leg.
"""

from __future__ import annotations

import functools
import io
import wave
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from relay.media.codecs.base import FRAME_MS
from relay.media.resample import PolyphaseResampleStream

if TYPE_CHECKING:
    import av

__all__ = [
    "ALLOWED_CODECS",
    "CLIP_RATE_HZ",
    "MAX_DOWNLOAD_BYTES",
    "MAX_DURATION_S",
    "HoldClip",
    "HoldMusicCache",
    "HoldMusicPlayer",
    "HoldMusicRefused",
    "decode_hold_music",
    "default_hold_music",
]

MAX_DOWNLOAD_BYTES = 5_000_000
"""The largest hold music file (5 MB); the fetch refuses a larger one without reading past it."""
MAX_DURATION_S = 300
"""The longest hold music (5 minutes): a longer file is refused, not cut."""
CLIP_RATE_HZ = 16000
MAX_CACHED_CLIPS = 16
MAX_CACHE_BYTES = 48_000_000
"""Decoded PCM the cache holds at most: five 5-minute clips (9.6 MB each), or many short ones."""
CACHE_TTL_S = 3600.0
DEFAULT_ASSET = Path(__file__).parent / "assets" / "hold.wav"

ALLOWED_CODECS = {
    "wav": frozenset(
        {"pcm_s16le", "pcm_s24le", "pcm_s32le", "pcm_u8", "pcm_f32le", "pcm_mulaw", "pcm_alaw"}
    ),
    "mp3": frozenset({"mp3", "mp3float"}),
}
"""Per container, the audio codecs accepted in it (FFmpeg's decoder names)."""

_CLIP_FRAME_SAMPLES = CLIP_RATE_HZ * FRAME_MS // 1000


class HoldMusicRefused(ValueError):
    """A hold music file (or its fetch) is refused; the message says why, without the URL's secrets."""


@dataclass(frozen=True, slots=True)
class HoldClip:
    """Decoded hold music: 16 kHz 16-bit mono PCM, looped by each leg's `HoldMusicPlayer`."""

    pcm: bytes = field(repr=False)
    source: str
    """Where it came from: ``default``, or the URL's scheme and host (never its query)."""

    @property
    def duration_s(self) -> float:
        """Return how long one pass of the loop lasts."""
        return len(self.pcm) / 2 / CLIP_RATE_HZ

    def player(self, sample_rate_hz: int) -> HoldMusicPlayer:
        """Return a new player of this clip at a codec's sample rate, from the start."""
        return HoldMusicPlayer(self, sample_rate_hz)


class HoldMusicPlayer:
    """One leg's position in a `HoldClip`, giving 20 ms frames at its codec's rate, looped."""

    def __init__(self, clip: HoldClip, sample_rate_hz: int) -> None:
        """Start at the clip's beginning; resample to ``sample_rate_hz`` when it differs."""
        self.clip = clip
        self.sample_rate_hz = sample_rate_hz
        self._samples = np.frombuffer(clip.pcm, dtype="<i2")
        self._position = 0
        self._resampler = (
            None
            if sample_rate_hz == CLIP_RATE_HZ
            else PolyphaseResampleStream(CLIP_RATE_HZ, sample_rate_hz)
        )

    def next_frame(self) -> bytes:
        """Return the next 20 ms of the loop, PCM16 at ``sample_rate_hz``."""
        end = self._position + _CLIP_FRAME_SAMPLES
        indices = np.arange(self._position, end) % len(self._samples)
        self._position = end % len(self._samples)
        pcm = self._samples[indices].tobytes()
        return pcm if self._resampler is None else self._resampler.process(pcm)


def _container_kind(data: bytes) -> str | None:
    """Return ``wav`` or ``mp3`` from the file's first bytes, else None."""
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return "wav"
    if data[:3] == b"ID3":  # ID3v2 tag before the first frame (id3.org, ID3v2.4 §3.1)
        return "mp3"
    # MPEG audio frame header (ISO/IEC 11172-3 §2.4.2.3): 11 sync bits, then layer '01' = III.
    if len(data) >= 2 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0 and data[1] & 0x06 == 0x02:
        return "mp3"
    return None


def decode_hold_music(
    data: bytes, *, source: str, max_duration_s: float = MAX_DURATION_S
) -> HoldClip:
    """Decode an mp3 or WAV file to a `HoldClip` (see the module docstring, rule 1).

    Raises:
        HoldMusicRefused: not an mp3 or WAV file, not decodable, no audio, or too long.
    """
    kind = _container_kind(data)
    if kind is None:
        raise HoldMusicRefused("not an mp3 or WAV file")
    try:
        import av  # noqa: PLC0415 (FFmpeg's libraries: loaded on the first file, not at start)
    except ImportError:  # pragma: no cover - the relay's requirements install it
        raise HoldMusicRefused("PyAV (FFmpeg) is not available to decode it") from None
    max_bytes = int(max_duration_s * CLIP_RATE_HZ) * 2
    chunks: list[bytes] = []
    size = 0
    try:
        with av.open(io.BytesIO(data), mode="r", format=kind) as container:
            if not container.streams.audio:
                raise HoldMusicRefused(f"the {kind} file has no audio stream")
            stream = container.streams.audio[0]
            codec = stream.codec_context.name
            if codec not in ALLOWED_CODECS[kind]:
                raise HoldMusicRefused(f"audio coded as {codec} is not accepted in a {kind} file")
            resampler = av.AudioResampler(format="s16", layout="mono", rate=CLIP_RATE_HZ)
            frames: Iterator[av.AudioFrame | None] = chain(container.decode(stream), (None,))
            for frame in frames:  # decoded one frame at a time: the bound holds before memory
                for out in resampler.resample(frame):
                    chunk = out.to_ndarray().astype("<i2", copy=False).tobytes()
                    size += len(chunk)
                    if size > max_bytes:
                        raise HoldMusicRefused(f"longer than {max_duration_s:g} s")
                    chunks.append(chunk)
    except av.FFmpegError as error:
        raise HoldMusicRefused(
            f"the {kind} file does not decode ({type(error).__name__})"
        ) from None
    if size < _CLIP_FRAME_SAMPLES * 2:
        raise HoldMusicRefused(f"the {kind} file holds less than {FRAME_MS} ms of audio")
    return HoldClip(b"".join(chunks), source)


@functools.cache
def default_hold_music() -> HoldClip:
    """Return the project's own loop (``relay/media/assets/hold.wav``), read once."""
    with wave.open(str(DEFAULT_ASSET), "rb") as asset:
        if (asset.getframerate(), asset.getnchannels(), asset.getsampwidth()) != (
            CLIP_RATE_HZ,
            1,
            2,
        ):
            raise ValueError(f"{DEFAULT_ASSET} is not {CLIP_RATE_HZ} Hz mono 16-bit")
        return HoldClip(asset.readframes(asset.getnframes()), "default")


class HoldMusicCache:
    """Clips by URL, least recently used out first, bounded by count, bytes and age."""

    def __init__(
        self,
        *,
        max_clips: int = MAX_CACHED_CLIPS,
        max_bytes: int = MAX_CACHE_BYTES,
        ttl_s: float = CACHE_TTL_S,
    ) -> None:
        """Start empty with these bounds."""
        self.max_clips, self.max_bytes, self.ttl_s = max_clips, max_bytes, ttl_s
        self._clips: OrderedDict[str, tuple[HoldClip, float]] = OrderedDict()
        self.bytes = 0
        """The PCM bytes held now."""

    def __len__(self) -> int:
        return len(self._clips)

    def get(self, url: str, now: float) -> HoldClip | None:
        """Return the clip cached for ``url`` unless it is older than the TTL; mark it used."""
        entry = self._clips.get(url)
        if entry is None:
            return None
        clip, stored_at = entry
        if now - stored_at >= self.ttl_s:
            self._remove(url)
            return None
        self._clips.move_to_end(url)
        return clip

    def put(self, url: str, clip: HoldClip, now: float) -> None:
        """Keep ``clip`` for ``url``, evicting the least recently used beyond the bounds.

        A clip larger than the whole byte bound is not kept (each use fetches it again).
        """
        if url in self._clips:
            self._remove(url)
        if len(clip.pcm) > self.max_bytes:
            return
        while self._clips and (
            len(self._clips) >= self.max_clips or self.bytes + len(clip.pcm) > self.max_bytes
        ):
            self._remove(next(iter(self._clips)))
        self._clips[url] = (clip, now)
        self.bytes += len(clip.pcm)

    def _remove(self, url: str) -> None:
        clip, _ = self._clips.pop(url)
        self.bytes -= len(clip.pcm)
