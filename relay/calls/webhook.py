"""The INVITE webhook's body (contract 1): what the control plane is told about an INVITE.

Theory of operation
===================

The control plane decides from an :class:`~chalicelib.contracts.InviteWebhook` alone
(docs/webhooks.md). It is built from three things the SIP layer already has:

- the packet's **source** (address, port, transport): only where the packet came from counts,
  never a header that claims an address;
- the **request** (the INVITE, its top Via stamped): Request-URI, From (URI, display name,
  tag), To, Call-ID and every header in arrival order;
- the SDP **offer**, if any: its codecs as ``encoding/clock[/channels]`` names
  (``PCMU/8000``, ``opus/48000/2``), in the order offered.

Text goes through :func:`~relay.sip.text.readable`: bytes that are not UTF-8 (an older PBX's
Latin-1 display name) arrive as U+FFFD, never as raw bytes the JSON body cannot hold.
"""

from __future__ import annotations

from chalicelib.contracts import InviteWebhook
from relay.sip.address import Address
from relay.sip.sdp.description import SessionDescription
from relay.sip.syntax.message import Request
from relay.sip.syntax.text import readable


def invite_webhook(
    request: Request, source: Address, offer: SessionDescription | None, edge_id: str
) -> InviteWebhook:
    """Describe an INVITE for the control plane (see the module docstring)."""
    from_, to = request.from_, request.to
    return InviteWebhook(
        source_ip=source.host,
        source_port=source.port,
        transport=source.transport,
        request_uri=readable(str(request.uri)),
        from_uri=readable(str(from_.uri)),
        from_display_name=readable(from_.display) if from_.display else None,
        from_tag=readable(from_.tag or ""),
        to_uri=readable(str(to.uri)),
        sip_call_id=readable(request.call_id),
        headers=[(readable(name), readable(value)) for name, value in request.headers],
        offered_codecs=[] if offer is None else offered_codecs(offer),
        edge_id=edge_id,
    )


def offered_codecs(offer: SessionDescription) -> list[str]:
    """The codecs of an SDP offer, as ``encoding/clock[/channels]``, in the order offered."""
    names: list[str] = []
    for media in offer.media:
        for rtpmap in media.rtpmaps:
            channels = f"/{rtpmap.channels}" if rtpmap.channels != 1 else ""
            names.append(f"{rtpmap.encoding_name}/{rtpmap.clock_rate_hz}{channels}")
    return names
