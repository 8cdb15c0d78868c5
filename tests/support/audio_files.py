"""Audio files made on the spot with PyAV (FFmpeg's encoders: LAME, libopus, PCM): test inputs.

Each is a pure tone, so what survives decoding, resampling and transcoding can be checked by its
frequency (``tests/unit/relay/media/codecs/audio_checks.py``). The encoders are FFmpeg's, not the
relay's: the files are what a user's tools would make.
"""

from __future__ import annotations

import io

import av
import numpy as np

_DTYPES = {"s16": "<i2", "s32": "<i4", "flt": "<f4", "dbl": "<f8", "u8": "u1"}


def tone_file(
    container: str,
    codec: str,
    *,
    frequency_hz: float = 440.0,
    seconds: float = 2.0,
    rate_hz: int = 44100,
    layout: str = "stereo",
) -> bytes:
    """Return a file (``mp3``/``libmp3lame``, ``wav``/``pcm_s16le``, ``ogg``/``libopus``...)."""
    out = io.BytesIO()
    with av.open(out, "w", format=container) as target:
        stream = target.add_stream(codec, rate=rate_hz, layout=layout)
        context = stream.codec_context
        channels = context.layout.nb_channels
        frame_size = context.frame_size or 1024
        total = int(seconds * rate_hz)
        t = np.arange(total) / rate_hz
        wave = 0.3 * np.sin(2 * np.pi * frequency_hz * t)
        sample_format = context.format
        dtype = np.dtype(_DTYPES[sample_format.packed.name])
        scale = 1.0 if dtype.kind == "f" else float(np.iinfo(dtype).max)
        for start in range(0, total, frame_size):
            chunk = (wave[start : start + frame_size] * scale).astype(dtype)
            planes = np.tile(chunk, (channels, 1))
            array = planes if sample_format.is_planar else planes.T.reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(array), format=sample_format.name, layout=layout
            )
            frame.sample_rate = rate_hz
            frame.pts = start
            for packet in stream.encode(frame):
                target.mux(packet)
        for packet in stream.encode(None):
            target.mux(packet)
    return out.getvalue()


def mp3_tone(**options: object) -> bytes:
    """Return an mp3 (LAME) of a tone."""
    return tone_file("mp3", "libmp3lame", **options)  # type: ignore[arg-type]


def wav_tone(**options: object) -> bytes:
    """Return a 16-bit PCM WAV of a tone."""
    return tone_file("wav", "pcm_s16le", **options)  # type: ignore[arg-type]


def ogg_opus_tone(**options: object) -> bytes:
    """Return an Ogg Opus file of a tone (neither mp3 nor WAV)."""
    options.setdefault("rate_hz", 48000)
    return tone_file("ogg", "libopus", **options)  # type: ignore[arg-type]


FFMPEG_DECODERS = {"PCMU": "pcm_mulaw", "PCMA": "pcm_alaw", "G722": "adpcm_g722", "opus": "opus"}
"""FFmpeg's decoder for each RTP codec: an implementation independent of the relay's."""
FFMPEG_RATES_HZ = {"PCMU": 8000, "PCMA": 8000, "G722": 16000, "opus": 48000}


def decode_payloads(codec: str, payloads: list[bytes]) -> np.ndarray:
    """Decode RTP payloads in order with FFmpeg's decoder; return mono int16 samples."""
    context = av.CodecContext.create(FFMPEG_DECODERS[codec], "r")
    context.sample_rate = FFMPEG_RATES_HZ[codec]  # type: ignore[attr-defined]
    context.layout = "mono"  # type: ignore[attr-defined]
    resampler = av.AudioResampler(format="s16", layout="mono", rate=FFMPEG_RATES_HZ[codec])
    out: list[np.ndarray] = []
    for payload in payloads:
        for frame in context.decode(av.Packet(payload)):
            for converted in resampler.resample(frame):  # type: ignore[arg-type]
                out.append(converted.to_ndarray().reshape(-1))
    return np.concatenate(out).astype(np.int16) if out else np.zeros(0, np.int16)


FFMPEG_ENCODERS = {"PCMU": "pcm_mulaw", "PCMA": "pcm_alaw", "G722": "adpcm_g722", "opus": "libopus"}


def encode_payloads(codec: str, pcm: np.ndarray) -> list[bytes]:
    """Encode mono int16 samples at the codec's rate into 20 ms RTP payloads with FFmpeg."""
    rate_hz = FFMPEG_RATES_HZ[codec]
    context = av.CodecContext.create(FFMPEG_ENCODERS[codec], "w")
    context.sample_rate = rate_hz  # type: ignore[attr-defined]
    context.layout = "mono"  # type: ignore[attr-defined]
    context.format = av.AudioFormat("s16")  # type: ignore[attr-defined]
    frame_samples = rate_hz // 50
    payloads: list[bytes] = []
    for start in range(0, len(pcm) - frame_samples + 1, frame_samples):
        chunk = pcm[start : start + frame_samples].astype("<i2").reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(chunk, format="s16", layout="mono")
        frame.sample_rate = rate_hz
        frame.pts = start
        payloads.extend(bytes(packet) for packet in context.encode(frame))  # type: ignore[attr-defined]
    return payloads


def tone(frequency_hz: float, seconds: float, rate_hz: int, amplitude: float = 8000) -> np.ndarray:
    """Return a sine as int16 samples."""
    n = np.arange(int(seconds * rate_hz))
    return (amplitude * np.sin(2 * np.pi * frequency_hz * n / rate_hz)).astype(np.int16)
