"""SIP INFO digits (``relay/calls/dtmf.py``), read as docs/codecs.md (DTMF) says."""

from __future__ import annotations

import pytest

from relay.calls.dtmf import dtmf_relay_body, dtmf_relay_digit


@pytest.mark.parametrize(
    ("body", "digit"),
    [
        (b"Signal=5\r\nDuration=160", "5"),  # the docs' example
        (b"Signal=10\r\nDuration=160\r\n", "*"),  # "Signal=10 and 11 are also read as * and #"
        (b"Signal=11\r\nDuration=160\r\n", "#"),
        (b"Signal=*\r\nDuration=160\r\n", "*"),
        (b"Signal=#\r\n", "#"),
        (b"Signal= 0 \r\n", "0"),
        (b"signal=9\r\n", "9"),
        (b"Signal=d\r\n", "D"),  # "A-D are received but not forwarded" (the framing decides)
    ],
)
def test_a_dtmf_relay_body_gives_its_digit(body: bytes, digit: str) -> None:
    assert dtmf_relay_digit("application/dtmf-relay", body) == digit


@pytest.mark.parametrize(
    "content_type",
    ["application/dtmf-relay", "Application/DTMF-Relay", "application/dtmf-relay;x=1"],
)
def test_the_content_type_is_matched_without_case_or_parameters(content_type: str) -> None:
    assert dtmf_relay_digit(content_type, b"Signal=7\r\n") == "7"


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/dtmf", b"1"),  # "Other INFO bodies (application/dtmf included) are ignored"
        (None, b"Signal=5\r\n"),
        ("application/dtmf-relay", b"Duration=160\r\n"),  # no Signal
        ("application/dtmf-relay", b"Signal=55\r\n"),  # not one digit
        ("application/dtmf-relay", b"Signal=E\r\n"),  # not a DTMF digit
        ("application/dtmf-relay", b"Signal=\xff\r\n"),  # not UTF-8
        ("application/dtmf-relay", b""),
    ],
)
def test_anything_else_gives_no_digit(content_type: str | None, body: bytes) -> None:
    assert dtmf_relay_digit(content_type, body) is None


def test_the_body_is_the_cisco_format_asterisk_and_baresip_read() -> None:
    # "Signal=<digit>" and "Duration=<ms>", CRLF-terminated lines (docs/codecs.md)
    assert dtmf_relay_body("5", 100) == b"Signal=5\r\nDuration=100\r\n"
    assert dtmf_relay_body("#", 250) == b"Signal=#\r\nDuration=250\r\n"
    assert dtmf_relay_body("*", 40) == b"Signal=*\r\nDuration=40\r\n"


@pytest.mark.parametrize(
    ("digit", "duration_ms"),
    [("", 100), ("12", 100), ("\n", 100), ("=", 100), ("é", 100), ("1", 0)],
)
def test_the_body_refuses_what_would_break_its_lines(digit: str, duration_ms: int) -> None:
    with pytest.raises(ValueError, match="DTMF"):
        dtmf_relay_body(digit, duration_ms)
