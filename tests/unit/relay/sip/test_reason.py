"""The Reason header (``relay/sip/reason.py``) against RFC 3326 §3's examples and the value the
deploy contract fixes for a relay's shutdown (docs/relay.md, Shutting down)."""

from __future__ import annotations

import pytest

from relay.calls.ending import SHUTDOWN_REASON
from relay.sip.reason import reason_header


def _without_optional_spaces(value: str) -> str:
    return value.replace(" ;", ";")  # SEMI = SWS ";" SWS (RFC 3261 §25.1)


def test_rfc_3326_examples() -> None:
    """RFC 3326 §3: ``Reason: SIP ;cause=200 ;text="Call completed elsewhere"`` and
    ``Reason: Q.850 ;cause=16 ;text="Terminated"``."""
    assert reason_header(200, "Call completed elsewhere") == (
        "Reason",
        _without_optional_spaces('SIP ;cause=200 ;text="Call completed elsewhere"'),
    )
    assert reason_header(16, "Terminated", protocol="Q.850") == (
        "Reason",
        _without_optional_spaces('Q.850 ;cause=16 ;text="Terminated"'),
    )


def test_the_shutdown_reason_is_the_documented_one() -> None:
    assert SHUTDOWN_REASON == ("Reason", 'SIP;cause=503;text="relay shutting down"')


def test_quotes_and_backslashes_are_escaped() -> None:
    """quoted-string (RFC 3261 §25.1): ``\\"`` and ``\\\\`` are quoted-pairs."""
    assert reason_header(503, 'say "bye" \\ now')[1] == 'SIP;cause=503;text="say \\"bye\\" \\\\ now"'


@pytest.mark.parametrize("text", ["line\r\nX-Injected: 1", "bell\x07", "del\x7f"])
def test_a_control_character_is_refused_not_sent(text: str) -> None:
    with pytest.raises(ValueError, match="control characters"):
        reason_header(503, text)


@pytest.mark.parametrize("cause", [99, 700])
def test_a_sip_cause_is_a_status_code(cause: int) -> None:
    with pytest.raises(ValueError, match="100-699"):
        reason_header(cause, "x")
