"""The CPU cost of bridging two SIP legs in the relay, per packet, beside the agent path's.

    .venv/bin/python -m bench.bridge_path [--seconds 1.0]

One direction of a bridge (`relay.media.bridge_path.BridgePath.forward`) takes a caller's 20 ms
packet and returns the other leg's: passthrough (same codec: re-stamped), or transcoded (decode,
resample, encode). Timed beside it, in the same run, the agent path's work per 20 ms each way
for the same caller codec: `ReceivePath.audio` (payload to the agent's format) plus
`SendPath.frame` (the agent's audio back to a payload), Twilio framing (μ-law 8 kHz). A bridged
call runs two directions, an agent call one of each path: the figure per call is twice the
direction's cost, against receive plus send. In-process, one core, no sockets: the cost of
the media work only (socket I/O per packet is the same for both kinds of call). Figures are the
best of five runs, in µs per packet.
"""

from __future__ import annotations

import argparse
from typing import Any

from bench.codecs import _per_call_us, _signal
from bench.machine import banner
from chalicelib.contracts import MediaFraming
from relay.media.bridge_path import BridgePath
from relay.media.codecs import get_decoder, get_encoder, get_spec
from relay.media.pipeline import ReceivePath, SendPath, agent_format
from relay.media.rtp import RtpPacket, RtpPacketizer
from relay.sip.sdp.fields import Direction
from relay.sip.sdp.offer_answer import NegotiatedMedia

PAIRS = [("PCMU", "PCMU"), ("opus", "opus"), ("PCMU", "G722"), ("G722", "PCMU"),
         ("PCMU", "opus"), ("opus", "PCMU")]  # fmt: skip
PAYLOAD_TYPES = {"PCMU": 0, "G722": 9, "opus": 111}


def _media(codec: str) -> NegotiatedMedia:
    spec = get_spec(codec)
    values: dict[str, Any] = dict(
        codec=spec.name, payload_type=PAYLOAD_TYPES[codec], clock_rate_hz=spec.clock_rate_hz,
        channels=spec.channels, fmtp=None, ptime_ms=20, telephone_event_payload_type=101,
        remote_address="192.0.2.1", remote_port=4000, direction=Direction.SENDRECV,
        receive_payload_type=PAYLOAD_TYPES[codec], receive_telephone_event_payload_type=101,
        held_by_remote=False,
    )  # fmt: skip
    return NegotiatedMedia(**values)


def _packets(codec: str, count: int = 500) -> list[RtpPacket]:
    spec = get_spec(codec)
    encoder = get_encoder(spec.name)
    packetizer = RtpPacketizer(ssrc=1, sequence_number=0, timestamp=0)
    frames = _signal(spec.sample_rate_hz, count)
    return [
        packetizer.packetize(
            encoder.encode(frame),
            payload_type=PAYLOAD_TYPES[codec],
            samples=spec.timestamp_increment,
        )
        for frame in frames
    ]


def bridge_us(source: str, target: str, seconds: float) -> float:
    """Return µs per packet for one direction from ``source`` to ``target``."""
    packets = _packets(source)
    path = BridgePath(
        _media(source), _media(target), RtpPacketizer(ssrc=2, sequence_number=0, timestamp=0)
    )
    index = [0]

    def forward(_: bytes) -> object:
        # Sequence numbers move on forever, as in a call (a replayed one would be dropped late).
        packet = packets[index[0] % len(packets)]
        index[0] += 1
        fresh = RtpPacket(
            payload_type=packet.payload_type, sequence_number=index[0] & 0xFFFF,
            timestamp=(index[0] * get_spec(source).timestamp_increment) & 0xFFFFFFFF,
            ssrc=packet.ssrc, payload=packet.payload,
        )  # fmt: skip
        return path.forward(fresh, 0.0)

    return _per_call_us(forward, [b""], seconds)


def agent_us(codec: str, seconds: float) -> float:
    """Return µs per 20 ms for the agent path (receive + send) with ``codec`` on the wire."""
    spec = get_spec(codec)
    agent = agent_format(MediaFraming.TWILIO)
    receive = ReceivePath(spec, get_decoder(spec.name), agent)
    send = SendPath(spec, get_encoder(spec.name), agent)
    payloads = [p.payload for p in _packets(codec)]
    agent_frames = [receive.audio(p) for p in payloads]
    pairs = list(zip(payloads, agent_frames, strict=True))
    index = [0]

    def both_ways(_: bytes) -> object:
        payload, frame = pairs[index[0] % len(pairs)]
        index[0] += 1
        receive.audio(payload)
        return send.frame(frame)

    return _per_call_us(both_ways, [b""], seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="time per measurement")
    seconds = parser.parse_args().seconds
    print(banner("Bridged legs vs agent path: media CPU per 20 ms packet (best of 5)"))
    print(f"{'caller -> target':<18}{'bridge µs/pkt':>14}{'bridged call µs/20ms':>22}"
          f"{'agent call µs/20ms':>20}")  # fmt: skip
    for source, target in PAIRS:
        one_way = bridge_us(source, target, seconds)
        back = bridge_us(target, source, seconds)
        print(
            f"{source + ' -> ' + target:<18}{one_way:>14.1f}{one_way + back:>22.1f}"
            f"{agent_us(source, seconds):>20.1f}"
        )


if __name__ == "__main__":
    main()
