"""A DTMF digit as a SIP INFO body: ``application/dtmf-relay`` (sans-I/O).

The relay sends a digit this way when the remote's SDP has no ``telephone-event`` (RFC 4733),
one INFO per digit within the dialog (RFC 6086's INFO, used here without an Info Package, as
the legacy usage of §9 describes and as carriers and PBXs take it). The body is the de facto
format of Cisco gateways, which Asterisk, FreeSWITCH and baresip read (it has no RFC)::

    Signal=5
    Duration=100

``Signal`` is the digit itself (0-9, ``*``, ``#``, A-D) and ``Duration`` the tone's length in
milliseconds. Incoming INFO is read by the call layer, which also takes ``Signal=10``/``11``.
"""

from __future__ import annotations

DTMF_RELAY = "application/dtmf-relay"


def dtmf_relay_body(digit: str, duration_ms: int) -> bytes:
    """Return the ``application/dtmf-relay`` body for one digit.

    The digit set is the media layer's to check (``relay.media.dtmf.DTMF_DIGITS``); this only
    refuses what would break the body's lines.

    Raises:
        ValueError: ``digit`` is not one ASCII letter, figure, ``*`` or ``#``, or the duration
            is not positive.
    """
    if len(digit) != 1 or not digit.isascii() or not (digit.isalnum() or digit in "*#"):
        raise ValueError("not a DTMF digit")
    if duration_ms <= 0:
        raise ValueError("a DTMF duration must be positive")
    return f"Signal={digit}\r\nDuration={duration_ms}\r\n".encode("ascii")
