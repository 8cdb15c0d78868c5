"""DTMF by SIP INFO: the ``application/dtmf-relay`` body, read (one digit) and written.

Theory of operation
===================

Digits reach a call two ways (docs/codecs.md, DTMF): RFC 4733 telephone-events in RTP, which
the media core reads, and SIP INFO requests, which the SIP endpoint answers 200 and passes up
(``InfoReceived``). This module reads the INFO body; the call then injects the digit into its
RTP session, so the agent gets one ``dtmf`` message per key whichever way it came.

The body is the de facto ``application/dtmf-relay`` format (no RFC; Cisco's, which trunks
copy): ``Signal=5\\r\\nDuration=160``. ``Signal`` is one of the sixteen DTMF digits
(``relay.media.dtmf.DTMF_DIGITS``); ``10`` and ``11`` are also read as ``*`` and ``#``, as some
senders write the event number. Any other content type (``application/dtmf`` included), a body
without ``Signal``, or a signal that is not one digit gives nothing.

The relay writes the same format when the agent sends a digit and the remote's SDP has no
``telephone-event`` (RFC 4733): one INFO per digit within the dialog (RFC 6086's legacy INFO
usage, §9, which carriers, Asterisk, FreeSWITCH and baresip take), ``Signal=<digit>`` and
``Duration=<ms>`` on CRLF-terminated lines.
"""

from __future__ import annotations

from relay.media.dtmf import DTMF_DIGITS

DTMF_RELAY = "application/dtmf-relay"
_EVENT_NUMBERS = {"10": "*", "11": "#"}


def dtmf_relay_digit(content_type: str | None, body: bytes) -> str | None:
    """Return the digit of an ``application/dtmf-relay`` INFO body, if it carries one."""
    if (content_type or "").split(";")[0].strip().lower() != DTMF_RELAY:
        return None
    for line in body.decode("utf-8", "replace").splitlines():
        name, _, value = line.partition("=")
        if name.strip().lower() == "signal":
            digit = value.strip().upper()
            digit = _EVENT_NUMBERS.get(digit, digit)
            return digit if len(digit) == 1 and digit in DTMF_DIGITS else None
    return None


def dtmf_relay_body(digit: str, duration_ms: int) -> bytes:
    """Return the ``application/dtmf-relay`` body for one digit.

    Raises:
        ValueError: ``digit`` is not one of the sixteen DTMF digits, or the duration is not
            positive.
    """
    if len(digit) != 1 or digit.upper() not in DTMF_DIGITS:
        raise ValueError("not a DTMF digit")
    if duration_ms <= 0:
        raise ValueError("a DTMF duration must be positive")
    return f"Signal={digit.upper()}\r\nDuration={duration_ms}\r\n".encode("ascii")
