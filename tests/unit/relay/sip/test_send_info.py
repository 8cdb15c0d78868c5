"""A digit sent as SIP INFO (application/dtmf-relay) within the dialog of an incoming call."""

from __future__ import annotations

from relay.calls.dtmf import DTMF_RELAY, dtmf_relay_body
from relay.sip.syntax.message import Request
from tests.unit.relay.harness import UacUasPair, is_


def test_an_info_goes_within_the_confirmed_dialog_with_the_next_cseq() -> None:
    pair = UacUasPair()
    call = pair.establish()
    assert call.send_info(DTMF_RELAY, dtmf_relay_body("1", 100), pair.now)
    pair.run(until=pair.now + 1)
    assert pair.labels()[-2:] == ["INFO", "200 INFO"]
    info = pair.wire[-2].message
    assert isinstance(info, Request)
    assert info.headers.get("Content-Type") == "application/dtmf-relay"
    assert info.body == b"Signal=1\r\nDuration=100\r\n"
    assert (info.cseq.method, info.cseq.number) == ("INFO", call.dialog.local_seq)  # §12.2.1.1
    assert info.to.tag == call.dialog.id.remote_tag and info.from_.tag == call.dialog.id.local_tag
    assert str(info.uri) == "sip:alice@192.0.2.10:5062"  # the caller's Contact


def test_no_info_before_the_ack_nor_after_the_end() -> None:
    pair = UacUasPair()
    pair.drop(is_("ACK"))
    call = pair.establish()
    assert not call.send_info(DTMF_RELAY, dtmf_relay_body("1", 100), pair.now)
    pair.run(until=2)  # the 2xx is resent and ACKed
    call.hang_up(now=pair.now)
    pair.run(until=pair.now + 1)
    assert not call.send_info(DTMF_RELAY, dtmf_relay_body("1", 100), pair.now)
    assert "INFO" not in pair.labels()


def test_a_refused_info_does_not_end_the_call() -> None:
    pair = UacUasPair()
    pair.uac.script["INFO"] = [(415, ())]
    call = pair.establish()
    assert call.send_info(DTMF_RELAY, dtmf_relay_body("1", 100), pair.now)
    pair.run(until=pair.now + 40)
    assert pair.labels()[-2:] == ["INFO", "415 INFO"]
    assert call.state.value == "Confirmed"
