"""The requests of an outgoing call before its dialog: INVITE, its resubmissions, CANCEL.

RFC 3261 §8.1.1, §13.2.1, §9.1, §22.2; RFC 3263 §4.3. Theory of operation
=========================================================================

1. :func:`build_invite` writes the initial INVITE (§8.1.1, §13.2.1): Request-URI and To are
   the target URI (To without tag); From is ``sip:<from_user>@<our advertised host>`` with a
   fresh tag and an optional display name (always quoted, ``"`` and ``\\`` escaped); a fresh
   Call-ID; CSeq 1; our Contact for the transport of the first target; ``Allow``,
   ``Supported: timer``, ``User-Agent``; the application's extra ``X-`` header fields; the SDP
   offer. Values are checked before they reach the wire: a control character in the user, the
   display name or an extra field, or an extra field not named ``X-...``, raises
   ``LocalProtocolError``.
2. :func:`resubmit` is the same request sent again, after a challenge (§22.2) or to the next
   target (RFC 3263 §4.3): same Call-ID, From (tag), To, Request-URI and body; a new Via
   branch, the CSeq number plus one, the Contact of the new target's transport, and the
   credential fields the digest session gives.
3. :func:`build_cancel` copies what §9.1 names from the INVITE it cancels: Request-URI,
   Call-ID, From, To, the CSeq number (method CANCEL), the top Via (same branch) and Route.
4. :func:`dialog_before_answer` is the dialog state an INVITE implies before any response
   (remote tag empty): the call's leg speaks through it until a 2xx names the real dialog.
   :func:`unroutable_dialog` stands in for the dialog of a 2xx whose Contact we cannot use:
   it sends the ACK and the BYE where the INVITE went (the call ends at once).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from relay.ids import IdSource, new_call_id, new_tag
from relay.sip.address import Address, Transport
from relay.sip.dialog import Dialog, DialogId
from relay.sip.digest import Retry
from relay.sip.errors import LocalProtocolError
from relay.sip.syntax.headers import Headers
from relay.sip.syntax.message import Request, Response, build_request
from relay.sip.syntax.uri import NameAddr, SipUri
from relay.sip.transaction.layer import TransactionLayer
from relay.sip.usage.leg import SDP, UserAgentSettings, local_contact

__all__ = [
    "build_cancel",
    "check_text",
    "checked_extra_headers",
    "build_invite",
    "dialog_before_answer",
    "resubmit",
    "unroutable_dialog",
]

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_EXTRA_NAME = re.compile(r"X-[A-Za-z0-9\-.!%*_+`'~]+", re.IGNORECASE)  # an X- token


def check_text(what: str, value: str) -> None:
    """Raise ``LocalProtocolError`` if ``value``, bound for field ``what``, has a control."""
    if _CONTROL.search(value):
        raise LocalProtocolError(f"{what} holds a control character")


def checked_extra_headers(headers: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """Return ``headers`` once each is an ``X-`` field without a control (rule 1)."""
    for name, value in headers:
        if not _EXTRA_NAME.fullmatch(name):
            raise LocalProtocolError(f"extra header field {name[:40]!r} is not an X- header")
        check_text(f"extra header field {name}", value)
    return list(headers)


def _contact(local: Address, uri: SipUri) -> NameAddr:
    return local_contact(local, sips=uri.scheme == "sips" and local.transport is Transport.TLS)


def build_invite(
    layer: TransactionLayer,
    ids: IdSource,
    settings: UserAgentSettings,
    *,
    target: Address,
    request_uri: SipUri,
    from_user: str,
    from_display: str | None,
    offer: bytes,
    headers: Sequence[tuple[str, str]] = (),
) -> Request:
    """Build the initial INVITE of an outgoing call (rule 1).

    Raises:
        LocalProtocolError: a bad user, display name or extra header field; no local address
            for the target's transport.
    """
    if not from_user:
        raise LocalProtocolError("from_user is empty")
    check_text("from_user", from_user)
    if from_display is not None:
        check_text("from_display", from_display)
    extra = checked_extra_headers(headers)
    local = layer.local_address(target.transport)
    from_ = NameAddr(
        uri=SipUri(scheme="sip", user=from_user, host=local.host),
        display=from_display or None,
        params=(("tag", new_tag(ids)),),
    )
    fields = [*settings.capability_headers, ("User-Agent", settings.user_agent), *extra]
    return build_request(
        "INVITE",
        request_uri,
        via=layer.new_via(target.transport),
        from_=from_,
        to=NameAddr(uri=request_uri),
        call_id=new_call_id(ids, local.host),
        cseq=1,
        contact=_contact(local, request_uri),
        extra_headers=fields,
        body=offer,
        content_type=SDP,
    )


def resubmit(
    invite: Request, layer: TransactionLayer, *, target: Address, credentials: Retry
) -> Request:
    """Return ``invite`` to send again to ``target`` (rule 2)."""
    headers = invite.headers.with_replaced("Via", str(layer.new_via(target.transport)))
    headers = headers.with_replaced("CSeq", f"{invite.cseq.number + 1} INVITE")
    if isinstance(invite.uri, SipUri):
        contact = _contact(layer.local_address(target.transport), invite.uri)
        headers = headers.with_replaced("Contact", str(contact))
    return Request("INVITE", invite.uri, headers=credentials.apply(headers), body=invite.body)


def build_cancel(invite: Request) -> Request:
    """Return the CANCEL of ``invite`` (RFC 3261 §9.1, rule 3)."""
    fields = [
        ("Via", str(invite.top_via)),
        ("Max-Forwards", "70"),
        ("From", invite.headers.get("From") or ""),
        ("To", invite.headers.get("To") or ""),
        ("Call-ID", invite.call_id),
        ("CSeq", f"{invite.cseq.number} CANCEL"),
    ]
    fields.extend(("Route", route) for route in invite.headers.get_all("Route"))
    user_agent = invite.headers.get("User-Agent")
    if user_agent is not None:
        fields.append(("User-Agent", user_agent))
    return Request("CANCEL", invite.uri, headers=Headers(fields))


def dialog_before_answer(invite: Request, destination: Address) -> Dialog:
    """Return the dialog state ``invite`` implies before any response (rule 4)."""
    uri = invite.uri
    return Dialog(
        id=DialogId(invite.call_id, invite.from_.tag or "", ""),
        local_uri=invite.from_,
        remote_uri=invite.to,
        remote_target=uri,
        route_set=invite.routes,
        secure=isinstance(uri, SipUri) and uri.scheme == "sips",
        local_contact=invite.contacts[0],
        local_seq=invite.cseq.number,
        flow=destination,
    )


def unroutable_dialog(invite: Request, response: Response, destination: Address) -> Dialog:
    """Return a dialog for a 2xx whose Contact is unusable: requests go where the INVITE went."""
    dialog = dialog_before_answer(invite, destination)
    dialog.id = DialogId.of_response(response)
    dialog.remote_uri = response.to
    params: tuple[tuple[str, str | None], ...] = ()
    if destination.transport is not Transport.UDP:
        params = (("transport", destination.transport.value),)
    user = invite.uri.user if isinstance(invite.uri, SipUri) else None
    host = destination.host
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 reference in a URI (RFC 3261 §25.1)
    dialog.remote_target = SipUri(host=host, port=destination.port, user=user, params=params)
    dialog.route_set = ()
    return dialog
