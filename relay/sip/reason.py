"""The Reason header (RFC 3326): why a request such as BYE or CANCEL was sent (pure).

RFC 3326 §2 lets any request carry ``Reason: <protocol> ;cause=<code> ;text="<words>"``; with the
protocol ``SIP`` the cause is a SIP status code (§3). The relay sends one on the BYE that ends a
call because the relay is shutting down (``Reason: SIP;cause=503;text="relay shutting down"``,
docs/relay.md, Shutting down), so the far end, and a carrier's call records, can tell a relay
going away from a hang-up by the agent.

The text is a quoted-string (RFC 3261 §25.1): ``"`` and ``\\`` are escaped, and characters a
header line cannot carry (CR, LF and other controls) are refused rather than sent.
"""

from __future__ import annotations

__all__ = ["reason_header"]


def _quoted(text: str) -> str:
    if any(ord(c) < 0x20 and c != "\t" or ord(c) == 0x7F for c in text):
        raise ValueError("a Reason text cannot carry control characters")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def reason_header(cause: int, text: str, protocol: str = "SIP") -> tuple[str, str]:
    """Return the ``Reason`` header (name, value) for ``cause`` with ``text`` (RFC 3326 §2).

    Raises:
        ValueError: ``cause`` is not a SIP status code (100-699) or ``text`` holds a control
            character.
    """
    if protocol == "SIP" and not 100 <= cause <= 699:
        raise ValueError(f"a SIP Reason cause is a status code 100-699 (got {cause})")
    return ("Reason", f"{protocol};cause={cause};text={_quoted(text)}")
