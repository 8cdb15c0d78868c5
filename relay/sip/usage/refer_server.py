"""The transferee's REFER: a REFER received in a call's dialog (a PBX transferring the agent).

RFC 3515 §2.4, RFC 6665 §4.2 (the notifier), RFC 5589 §6. Theory of operation
=============================================================================

1. A REFER in a dialog that no usage of the dialog takes is offered to the endpoint's
   :class:`~relay.sip.usage.table.UsageStarter` s; :class:`ReferServers` is the one for REFER
   (the endpoint has one by default, declining every REFER). It never answers 405: a REFER
   is answered 202 or 603 once it is well formed, and the application hears of it
   (:class:`ReferReceived`).
2. Checks before the application is asked: the dialog's INVITE session still runs (else
   481); the CSeq is in order (else 500, RFC 3261 §12.2.2); exactly one ``Refer-To`` (400
   "Missing Refer-To header field" / "More than one Refer-To header field", RFC 3515 §2.4.1),
   bounded and well formed (400 naming it, ``syntax/refer_to.py``); ``Referred-By`` (RFC 3892)
   at most :data:`~relay.sip.syntax.refer_to.MAX_REFER_TO_CHARS` characters; at most
   :data:`MAX_REFERS_PER_DIALOG` transfers under way in the dialog (603 beyond).
3. The application's policy (:data:`ReferPolicy`, given to :class:`ReferServers`) decides
   from the target, ``Referred-By`` and the embedded header fields (``Replaces``...). A
   refusal is answered 603 Decline. An acceptance is answered 202 Accepted, and a
   :class:`ReferServer` usage is bound to the dialog: it sends at once a NOTIFY ``SIP/2.0 100
   Trying`` (``Subscription-State: active;expires=<expires_s>``, RFC 3515 §2.4.4), then one
   per :meth:`ReferServer.report` the application makes: a 1xx keeps the subscription active,
   a final status ends it (``terminated;reason=noresource``, RFC 3515 §2.4.7).
4. NOTIFYs carry ``Event: refer;id=<the REFER's CSeq>`` (RFC 3515 §2.4.6), our Contact and a
   ``message/sipfrag`` body. One NOTIFY is outstanding at a time: a report made while one
   waits for its response is sent after it, only the latest kept (RFC 6665 §4.2.2's rate
   rule in its simplest form). A NOTIFY answered 300-699 or unanswered ends the subscription
   (RFC 6665 §4.2.2: the subscriber is gone); so does ``expires_s`` without a final report:
   a last NOTIFY ``terminated;reason=timeout`` carries the latest status.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, TypeAlias

from relay.sip.dialog import Dialog
from relay.sip.errors import LocalProtocolError, RemoteProtocolError, SipParseError
from relay.sip.syntax.message import REASON_PHRASES, Request, Response
from relay.sip.syntax.refer_to import MAX_REFER_TO_CHARS, ReferTo, parse_refer_to
from relay.sip.syntax.sipfrag import SIPFRAG, format_sipfrag
from relay.sip.syntax.uri import AbsoluteUri, SipUri
from relay.sip.transaction.layer import ClientTransaction, ServerTransaction
from relay.sip.usage.call_state import CallState
from relay.sip.usage.invite_session import InviteSession
from relay.sip.usage.leg import Leg

if TYPE_CHECKING:
    from relay.sip.endpoint import SipEndpoint

__all__ = [
    "DEFAULT_EXPIRES_S",
    "MAX_REFERS_PER_DIALOG",
    "ReferPolicy",
    "SessionReferPolicy",
    "ReferReceived",
    "ReferServer",
    "ReferServers",
    "decline_every_refer",
]

MAX_REFERS_PER_DIALOG = 4
"""Most transfers one dialog may have under way at once (rule 2)."""
DEFAULT_EXPIRES_S = 180
"""How long a transfer may go without a final report (rule 4): RFC 3261's Timer C."""

ReferPolicy: TypeAlias = Callable[
    [SipUri | AbsoluteUri, str | None, tuple[tuple[str, str], ...]], bool
]
"""``accept(refer_to, referred_by, headers)``: whether to follow a REFER (rule 3)."""

SessionReferPolicy: TypeAlias = Callable[
    [InviteSession, SipUri | AbsoluteUri, str | None, tuple[tuple[str, str], ...]], bool
]
"""``accept(session, refer_to, referred_by, headers)``: the policy of an application that
decides per call (the relay: each call carries its account's ``incomingRefer``)."""


def decline_every_refer(
    refer_to: SipUri | AbsoluteUri, referred_by: str | None, headers: tuple[tuple[str, str], ...]
) -> bool:
    """Decline every REFER: the endpoint's default policy (603 Decline)."""
    return False


@dataclass(frozen=True, slots=True)
class ReferReceived:
    """A REFER came in a call's dialog and was answered: 202 (``server.accepted``) or 603."""

    session: InviteSession
    refer_to: ReferTo
    referred_by: str | None
    server: ReferServer
    """Report the referred request's progress on it (:meth:`ReferServer.report`)."""


class _State(Enum):
    ACTIVE = "active"
    TERMINATED = "terminated"


class ReferServer:
    """The subscription a REFER we accepted created: we notify (rules 3 and 4)."""

    def __init__(
        self,
        session: InviteSession,
        refer: Request,
        *,
        leg: Leg,
        accepted: bool,
        expires_s: float,
        now: float,
    ) -> None:
        self.session = session
        self.leg = leg
        self.accepted = accepted
        """Whether the REFER was answered 202 (else 603, and nothing follows)."""
        self.id = str(refer.cseq.number)
        self._expires_s = expires_s
        self._deadline: float | None = now + expires_s if accepted else None
        self._state = _State.ACTIVE if accepted else _State.TERMINATED
        self._last = (100, "Trying")
        self._outstanding: ClientTransaction | None = None
        self._queued: tuple[int, str, str | None] | None = None

    @property
    def finished(self) -> bool:
        """Whether the subscription is over and its last NOTIFY sent: the endpoint forgets it."""
        return self._state is _State.TERMINATED and self._queued is None

    @property
    def terminated(self) -> bool:
        """Whether the subscription is over (a final report, a refusal, expiry, a 481)."""
        return self._state is _State.TERMINATED

    def report(self, status: int, reason: str | None = None, *, now: float) -> bool:
        """Tell the referrer the referred request's status: a NOTIFY (rule 3).

        Returns:
            False, sending nothing, once the subscription is over.

        Raises:
            LocalProtocolError: ``status`` is not 100-699.
        """
        if not 100 <= status <= 699:
            raise LocalProtocolError(f"a sipfrag status is 100-699, not {status}")
        if self._state is _State.TERMINATED:
            return False
        self.leg.touch(self)
        phrase = reason if reason is not None else REASON_PHRASES.get(status, "Unknown")
        self._last = (status, phrase)
        ending = "noresource" if status >= 200 else None
        if ending is not None:
            self._state, self._deadline = _State.TERMINATED, None
        self._notify(status, phrase, ending, now)
        return True

    def _notify(self, status: int, reason: str, ending: str | None, now: float) -> None:
        if self._outstanding is not None:
            self._queued = (status, reason, ending)
            return
        remaining = 0 if self._deadline is None else max(0, int(self._deadline - now))
        state = f"terminated;reason={ending}" if ending else f"active;expires={remaining}"
        headers = (
            ("Event", f"refer;id={self.id}"),
            ("Subscription-State", state),
            ("Contact", str(self.leg.dialog.local_contact)),
        )
        body = format_sipfrag(status, reason)
        try:
            self._outstanding = self.leg.send(
                "NOTIFY", now, owner=self, headers=headers, sdp=body, content_type=SIPFRAG
            )
        except RemoteProtocolError:  # the dialog's next hop is not routable
            self._end()

    def _end(self) -> None:
        self._state, self._deadline, self._queued = _State.TERMINATED, None, None

    # --- the Usage protocol ---------------------------------------------------------------

    def receive_request(self, request: Request, tx: ServerTransaction, now: float) -> bool:
        """Requests in the dialog belong to the session or another usage."""
        return False

    def receive_ack(self, ack: Request, now: float) -> bool:
        """ACKs belong to the session."""
        return False

    def receive_response(
        self, response: Response, tx: ClientTransaction | None, now: float
    ) -> bool:
        """Take the response to a NOTIFY: send the queued one, or end on a failure (rule 4)."""
        if tx is None:
            return False
        if response.status < 200 or tx is not self._outstanding:
            return True
        self._outstanding = None
        if response.status >= 300:
            self._end()
        elif self._queued is not None:
            status, reason, ending = self._queued
            self._queued = None
            self._notify(status, reason, ending, now)
        return True

    def transaction_failed(self, tx: ServerTransaction | ClientTransaction, now: float) -> None:
        """A NOTIFY unanswered ends the subscription (rule 4)."""
        if tx is self._outstanding:
            self._outstanding = None
            self._end()

    def get_timer(self) -> float | None:
        """Return when the subscription expires without a final report (rule 4)."""
        return self._deadline

    def handle_timer(self, now: float) -> None:
        """Expire the subscription: a last NOTIFY ``terminated;reason=timeout`` (rule 4)."""
        if self._deadline is not None and self._deadline <= now:
            self._state, self._deadline = _State.TERMINATED, None
            self._notify(*self._last, "timeout", now)


class ReferServers:
    """Start a :class:`ReferServer` for each acceptable REFER in a dialog (rules 1 to 3).

    Args:
        accept: the application's policy; by default every REFER is declined (603).
        expires_s: how long an accepted transfer may go without a final report.
        accept_in: a policy told the call too; when given, it decides instead of ``accept``.
    """

    def __init__(
        self,
        accept: ReferPolicy = decline_every_refer,
        *,
        expires_s: float = DEFAULT_EXPIRES_S,
        accept_in: SessionReferPolicy | None = None,
    ) -> None:
        self._accept: SessionReferPolicy = accept_in or (
            lambda _session, uri, by, headers: accept(uri, by, headers)
        )
        self._expires_s = expires_s

    def start_usage(
        self,
        endpoint: SipEndpoint,
        dialog: Dialog,
        request: Request,
        tx: ServerTransaction,
        now: float,
    ) -> bool:
        """Answer a REFER no usage of ``dialog`` took; leave any other request (rule 1)."""
        if request.method != "REFER":
            return False
        usages = endpoint.usages_of(dialog.id)
        session = next((u for u in usages if isinstance(u, InviteSession)), None)
        if session is None:
            return False
        leg = endpoint.new_leg(dialog)
        if session.state is CallState.TERMINATED:
            leg.respond(tx, 481, now)
        elif not dialog.accept_cseq(request):
            leg.respond(tx, 500, now, reason="CSeq Out Of Order")
        else:
            self._answer(endpoint, session, leg, tx, now)
        return True

    def _answer(
        self, endpoint: SipEndpoint, session: InviteSession, leg: Leg, tx: ServerTransaction,
        now: float,
    ) -> None:  # fmt: skip
        request = tx.request
        try:
            refer_to, referred_by = _read_refer(request)
        except SipParseError as err:
            leg.respond(tx, 400, now, reason=err.message)
            return
        usages = endpoint.usages_of(leg.dialog.id)
        busy = sum(isinstance(u, ReferServer) and not u.terminated for u in usages)
        accepted = busy < MAX_REFERS_PER_DIALOG and self._accept(
            session, refer_to.uri, referred_by, refer_to.headers
        )
        server = ReferServer(
            session, request, leg=leg, accepted=accepted, expires_s=self._expires_s, now=now
        )
        if accepted:
            leg.respond(tx, 202, now)
            endpoint.bind_dialog(leg.dialog, server)
            server.report(100, now=now)
        else:
            leg.respond(tx, 603, now)
        endpoint.emit(ReferReceived(session, refer_to, referred_by, server))


def _read_refer(request: Request) -> tuple[ReferTo, str | None]:
    """Return the REFER's target and Referred-By once they pass rule 2's checks."""
    values = request.headers.get_all("Refer-To")
    if not values:
        raise SipParseError("Missing Refer-To header field", header="Refer-To")
    if len(values) > 1:
        raise SipParseError("More than one Refer-To header field", header="Refer-To")
    referred_by = request.headers.get("Referred-By")
    if referred_by is not None and len(referred_by) > MAX_REFER_TO_CHARS:
        raise SipParseError(
            f"Referred-By longer than {MAX_REFER_TO_CHARS} characters", header="Referred-By"
        )
    return parse_refer_to(values[0]), referred_by
