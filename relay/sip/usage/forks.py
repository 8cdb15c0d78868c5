"""The dialogs an outgoing INVITE creates, one per To tag, bounded (RFC 3261 §12.1.2, §13.2.2.4).

Theory of operation
===================

1. A proxy may fork our INVITE: each branch that answers with a To tag creates a dialog of its
   own, early on a 1xx, confirmed on a 2xx (§12.1.2). :class:`Forks` keeps them by To tag; each
   :class:`Fork` has its :class:`~relay.sip.usage.leg.Leg` and, once its 2xx is ACKed, that ACK,
   which every retransmission of the 2xx gets again (§13.2.2.4).
2. Each dialog kept is bound to the call with the endpoint (``bind``), so the requests of the
   far end in it (a BYE, an UPDATE in the early dialog) and stray 2xx reach the call.
3. A 2xx for a To tag we know updates that dialog: it is confirmed, and its route set and
   remote target are recomputed from the 2xx (§13.2.2.4). A Contact that does not parse or
   names nothing we can route to leaves an early dialog uncreated; for a 2xx it makes the dialog
   :func:`~relay.sip.usage.invite_request.unroutable_dialog` (``usable`` false): the ACK and
   the BYE go where the INVITE went.
4. Bound: at most :data:`MAX_FORKS` dialogs are kept per call. Beyond it a 1xx creates no
   dialog and a 2xx is answered by a dialog that is not kept (its ACK is sent, the call does
   not BYE it, its retransmissions are not re-ACKed); only the 2xx that answers the call is
   always kept.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from relay.sip.address import Address
from relay.sip.dialog import Dialog
from relay.sip.errors import RemoteProtocolError
from relay.sip.syntax.message import Request, Response
from relay.sip.transaction.layer import Usage
from relay.sip.usage.invite_request import unroutable_dialog
from relay.sip.usage.leg import Leg

__all__ = ["MAX_FORKS", "Fork", "Forks"]

MAX_FORKS = 8
"""Most dialogs (early or confirmed, one per To tag) one outgoing call keeps."""


@dataclass(slots=True, eq=False)
class Fork:
    """One dialog of the call (rule 1)."""

    leg: Leg
    kept: bool
    """Whether the dialog is in the table and bound (rule 4)."""
    usable: bool = True
    """Whether its remote target is routable (rule 3)."""
    ack: tuple[Request, Address] | None = None
    """The ACK sent for its 2xx, and where it went."""

    def send_ack(self, cseq: int) -> Request:
        """ACK the 2xx numbered ``cseq`` (§13.2.2.4), or resend the ACK already sent."""
        if self.ack is None:
            self.ack = self.leg.send_ack(cseq)
        else:
            self.leg.layer.send_stateless(*self.ack)
        return self.ack[0]


class Forks:
    """The call's dialogs by To tag (rules 1 to 4)."""

    def __init__(self, template: Leg, bind: Callable[[Dialog, Usage], None], owner: Usage) -> None:
        """Make legs like ``template``'s; bind each kept dialog to ``owner`` with ``bind``."""
        self._template = template
        self._bind = bind
        self._owner = owner
        self._forks: dict[str, Fork] = {}

    def __len__(self) -> int:
        """Return how many dialogs are kept."""
        return len(self._forks)

    def get(self, tag: str) -> Fork | None:
        """Return the dialog of To tag ``tag``, if kept."""
        return self._forks.get(tag)

    def acked(self) -> bool:
        """Return whether some 2xx was ACKed (the call then lingers to ACK it again)."""
        return any(fork.ack is not None for fork in self._forks.values())

    def early(self, invite: Request, response: Response, destination: Address) -> Fork | None:
        """Return the dialog a 1xx with a To tag creates or names (rules 1, 3, 4)."""
        tag = response.to.tag
        if tag is None:
            return None
        known = self._forks.get(tag)
        if known is not None or len(self._forks) >= MAX_FORKS:
            return known
        try:
            dialog = Dialog.as_uac(invite, response, source=destination)
            dialog.destination()
        except RemoteProtocolError:
            return None
        return self._keep(tag, dialog, usable=True)

    def confirmed(
        self, invite: Request, response: Response, destination: Address, *, answer: bool
    ) -> Fork:
        """Return the dialog a 2xx confirms (rules 3, 4); ``answer``: it answers the call."""
        tag = response.to.tag or ""
        try:
            dialog = Dialog.as_uac(invite, response, source=destination)
            dialog.destination()
            usable = True
        except RemoteProtocolError:
            dialog, usable = unroutable_dialog(invite, response, destination), False
        known = self._forks.get(tag)
        if known is not None:
            _update(known.leg.dialog, dialog)
            known.usable = usable
            return known
        if answer or len(self._forks) < MAX_FORKS:
            return self._keep(tag, dialog, usable=usable)
        return Fork(self._leg(dialog), kept=False, usable=usable)

    def _keep(self, tag: str, dialog: Dialog, *, usable: bool) -> Fork:
        fork = Fork(self._leg(dialog), kept=True, usable=usable)
        self._forks[tag] = fork
        self._bind(dialog, self._owner)
        return fork

    def _leg(self, dialog: Dialog) -> Leg:
        t = self._template
        return Leg(dialog, layer=t.layer, ids=t.ids, timers=t.timers, settings=t.settings,
                   touch=t.touch)  # fmt: skip


def _update(dialog: Dialog, confirmed: Dialog) -> None:
    """Recompute an early dialog's state from the 2xx that confirms it (§13.2.2.4)."""
    dialog.remote_uri = confirmed.remote_uri
    dialog.remote_target = confirmed.remote_target
    dialog.route_set = confirmed.route_set
    dialog.local_contact = confirmed.local_contact
    dialog.local_seq = confirmed.local_seq
