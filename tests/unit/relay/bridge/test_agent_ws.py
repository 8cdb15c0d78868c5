"""The bridge's pure part: the framing chosen for the media endpoint."""

from __future__ import annotations

from chalicelib.contracts import MediaFraming
from relay.bridge.agent_ws import framing_for
from relay.bridge.hd_framing import HdFraming
from relay.bridge.twilio_framing import StreamIdentity, TwilioFraming

IDENTITY = StreamIdentity(stream_sid="MZ1", call_sid="CA1", account_sid="AC1")


def test_the_endpoint_framing_picks_the_sans_io_framing() -> None:
    twilio = framing_for(MediaFraming.TWILIO, IDENTITY)
    wide = framing_for(MediaFraming.PCM16K, IDENTITY)
    full = framing_for(MediaFraming.PCM48K, IDENTITY)
    assert type(twilio) is TwilioFraming
    assert isinstance(wide, HdFraming) and wide.media_format.sample_rate == 16000
    assert isinstance(full, HdFraming) and full.media_format.sample_rate == 48000
