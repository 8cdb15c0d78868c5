"""Bridging two SIP legs' media in the relay: the caller and a transfer's target, with no agent.

Theory of operation:

1. `bridge` takes two legs' RTP sessions (``relay/transport/rtp_session.py``), both started, and
   diverts each (``RtpSession.divert``): the packets a leg accepts (after its source latch and
   rate limit) stop going to the agent and come here, and the leg's own sender stops, its queued
   agent audio dropped. The agent's stream is detached first by the caller of `bridge` (the
   transfer's orchestration); the bridge takes each leg's listener seat, so nothing the legs say
   reaches an agent while bridged.
2. Each direction is a `relay.media.bridge_path.BridgePath`: passthrough (re-stamped) when the
   legs share a codec, decode/resample/encode otherwise, RFC 4733 events carried over. A packet
   goes from one leg's datagram callback to the other leg's socket in that same callback: no
   queue, no task, so the bridge adds no buffering beyond what cutting 20 ms frames needs when
   the packet durations differ.
3. A re-INVITE on either leg (a new codec, hold) is followed: the path is rebuilt when either
   leg's negotiated media changes, and a leg the other holds (its direction does not send)
   gets nothing.
4. Digits: telephone-events go on as telephone-events, or as SIP INFO (the leg's
   ``info_dtmf``, set by its call) toward a leg that negotiated none, with the key press's
   duration. A digit that came as SIP INFO (the only digits a diverted leg's listener seat
   hears) goes on as the other leg's telephone-events, or as SIP INFO of
   ``INFO_DTMF_DURATION_MS``.
5. `Bridge.stop` gives both legs back (undiverted, listener seats empty): their senders resume
   with silence, ready for an agent to listen again or for the call to end.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from relay.bridge.media_port import MediaListener
from relay.media.bridge_path import BridgePath, BridgePathStats
from relay.media.rtp import RtpPacket
from relay.sip.sdp.offer_answer import NegotiatedMedia

if TYPE_CHECKING:
    from relay.media.call_media import CallMedia

__all__ = ["INFO_DTMF_DURATION_MS", "Bridge", "BridgeLeg", "BridgeUnavailable", "bridge"]

logger = logging.getLogger("sipline.relay.bridge")

INFO_DTMF_DURATION_MS = 100
"""Duration of a digit that came as SIP INFO, passed on (``application/dtmf`` has none)."""


class BridgeUnavailable(RuntimeError):
    """A leg has no media to bridge (not started yet, or already ended)."""


class BridgeLeg(Protocol):
    """What the bridge needs of a leg: ``relay.transport.rtp_session.RtpSession``."""

    media: CallMedia | None
    info_dtmf: Callable[[str, int], None] | None

    def listen(self, listener: MediaListener | None) -> None: ...

    def divert(self, sink: Callable[[RtpPacket, float], None] | None) -> bool: ...

    def send_bridged(self, packet: RtpPacket) -> None: ...


class _Direction:
    """One way of the bridge: from ``source``'s accepted packets to ``target``'s socket."""

    def __init__(self, source: BridgeLeg, target: BridgeLeg) -> None:
        self.source, self.target = source, target
        self._path: BridgePath | None = None
        self._media: tuple[NegotiatedMedia, NegotiatedMedia] | None = None
        self.stats: list[BridgePathStats] = []
        """One per path built (a re-INVITE that changes the media builds another)."""

    @property
    def path(self) -> BridgePath | None:
        """Return the path in use (None before the first packet)."""
        return self._path

    def packet(self, packet: RtpPacket, now: float) -> None:
        """Take a source packet (from its datagram callback) and send what it becomes."""
        path = self._current_path()
        if path is None:
            return
        for out in path.forward(packet, now):
            self.target.send_bridged(out)
        for digit, duration_ms in path.take_digits():
            self.send_info(digit, duration_ms)

    def info_digit(self, digit: str) -> None:
        """Take a digit the source leg got as SIP INFO: events toward the target, else INFO."""
        path = self._current_path()
        packets = [] if path is None else path.digit_packets(digit, INFO_DTMF_DURATION_MS)
        for out in packets:
            self.target.send_bridged(out)
        if path is not None and not packets:
            self.send_info(digit, INFO_DTMF_DURATION_MS)

    def send_info(self, digit: str, duration_ms: int) -> None:
        send = self.target.info_dtmf
        if send is None:
            logger.warning("bridged digit dropped: no telephone-event and no INFO on the other leg")
        else:
            send(digit, duration_ms)

    def _current_path(self) -> BridgePath | None:
        source, target = self.source.media, self.target.media
        if source is None or target is None:
            return None
        media = (source.negotiated, target.negotiated)
        if self._path is None or media != self._media:
            self._path, self._media = BridgePath(*media, target.packetizer), media
            self.stats.append(self._path.stats)
        return self._path


class _Seat:
    """The bridge in a leg's listener seat: only digits matter (rule 4)."""

    def __init__(self, direction: _Direction) -> None:
        self._direction = direction

    def caller_audio(self, frame: bytes) -> None:
        """Ignore it: a diverted leg's audio goes by packet, not by frame."""

    def mark_played(self, name: str) -> None:
        """Ignore it: no agent placed marks here."""

    def dtmf(self, digit: str) -> None:
        """Take a digit the leg got as SIP INFO (its telephone-events come as packets)."""
        self._direction.info_digit(digit)


class Bridge:
    """Two legs' media joined (see the module docstring); `stop` gives them back."""

    def __init__(self, leg_a: BridgeLeg, leg_b: BridgeLeg) -> None:
        """Join ``leg_a`` and ``leg_b`` (use `bridge`, which checks them)."""
        self.legs = (leg_a, leg_b)
        self.a_to_b = _Direction(leg_a, leg_b)
        self.b_to_a = _Direction(leg_b, leg_a)
        self.stopped = False

    def start(self) -> None:
        """Divert both legs to the bridge and take their listener seats.

        Raises:
            BridgeUnavailable: a leg has no media; neither leg is left diverted.
        """
        leg_a, leg_b = self.legs
        if not leg_a.divert(self.a_to_b.packet):
            raise BridgeUnavailable("leg A has no media to bridge")
        if not leg_b.divert(self.b_to_a.packet):
            leg_a.divert(None)
            raise BridgeUnavailable("leg B has no media to bridge")
        leg_a.listen(_Seat(self.a_to_b))
        leg_b.listen(_Seat(self.b_to_a))

    def stop(self) -> None:
        """Give both legs back: undiverted, no listener (idempotent)."""
        if self.stopped:
            return
        self.stopped = True
        for leg in self.legs:
            leg.divert(None)
            leg.listen(None)

    def __str__(self) -> str:
        parts = []
        for name, direction in (("A->B", self.a_to_b), ("B->A", self.b_to_a)):
            path = direction.path
            if path is not None:
                kind = "passthrough" if path.passthrough else "transcode"
                parts.append(f"{name} {path.source.codec}->{path.target.codec} {kind}")
        return "; ".join(parts) or "bridge (no packet yet)"


def bridge(leg_a: BridgeLeg, leg_b: BridgeLeg) -> Bridge:
    """Join two started legs' media in the relay; `Bridge.stop` ends it.

    Raises:
        BridgeUnavailable: a leg has no media (not started, or ended).
    """
    joined = Bridge(leg_a, leg_b)
    joined.start()
    return joined
