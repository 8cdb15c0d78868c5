"""DTMF that arrives by SIP INFO: the ``application/dtmf-relay`` body, read as one digit.

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
