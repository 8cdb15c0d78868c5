"""The endpoint's usages and the dialogs each is bound to (RFC 5057 §3).

Theory of operation:

1. A dialog may carry several usages: the INVITE session, later a REFER subscription beside
   it. Binding a usage to a dialog is a registration: :meth:`UsageTable.bind` appends it to
   that dialog's usages, and the endpoint offers each in-dialog request, ACK and stray 2xx to
   them in that order; the first that takes it answers (``Usage.receive_*`` return whether they
   took it).
2. A usage may exist before any dialog (an outgoing INVITE awaiting its first response) and may
   own several dialogs (the early and confirmed dialogs of a forked INVITE, one per To tag):
   :meth:`UsageTable.add` holds it, :meth:`UsageTable.bind` can be called once per dialog.
3. A finished usage is removed from every dialog it was bound to; a dialog left with no usage
   is forgotten (RFC 5057 §5: the dialog ends with its last usage).
4. A request in a known dialog that none of its usages takes may start a new usage of that
   dialog: the endpoint offers it to its :class:`UsageStarter` s in order (a REFER starts the
   transferee's subscription, ``refer_server.py``); if none does, the endpoint answers 481.
   A starter binds the usage it makes with ``bind_dialog``, like any usage the application
   makes; the endpoint knows no method by name.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from relay.sip.dialog import Dialog, DialogId
from relay.sip.errors import LocalProtocolError
from relay.sip.syntax.message import Request
from relay.sip.transaction.layer import ServerTransaction, Usage

if TYPE_CHECKING:
    from relay.sip.endpoint import SipEndpoint

__all__ = ["UsageStarter", "UsageTable"]


class UsageStarter(Protocol):
    """What starts a usage of a known dialog for a request none of its usages took (rule 4)."""

    def start_usage(
        self,
        endpoint: SipEndpoint,
        dialog: Dialog,
        request: Request,
        tx: ServerTransaction,
        now: float,
    ) -> bool:
        """Take ``request`` (and answer ``tx``), starting a usage if it must; or return False."""
        ...


@dataclass(slots=True)
class _Bound:
    dialog: Dialog
    usages: list[Usage] = field(default_factory=list)


class UsageTable:
    """Usages by dialog, in the order they were bound, and dialogs by usage (rules 1 to 3)."""

    def __init__(self) -> None:
        self._dialogs: dict[DialogId, _Bound] = {}
        self._usages: dict[Usage, list[DialogId]] = {}

    def __iter__(self) -> Iterator[Usage]:
        """Iterate over every usage held, with or without a dialog."""
        return iter(list(self._usages))

    def __len__(self) -> int:
        """Return how many usages are held."""
        return len(self._usages)

    def __contains__(self, dialog_id: object) -> bool:
        """Return whether some usage is bound to the dialog ``dialog_id`` names."""
        return dialog_id in self._dialogs

    def add(self, usage: Usage) -> None:
        """Hold ``usage`` (rule 2); adding it again changes nothing."""
        self._usages.setdefault(usage, [])

    def bind(self, dialog: Dialog, usage: Usage) -> None:
        """Offer ``dialog``'s requests to ``usage`` after the usages already bound (rule 1).

        Raises:
            LocalProtocolError: another :class:`~relay.sip.dialog.Dialog` object holds that id.
        """
        bound = self._dialogs.setdefault(dialog.id, _Bound(dialog))
        if bound.dialog is not dialog:
            raise LocalProtocolError(f"dialog {dialog.id} is already bound to another Dialog")
        if usage not in bound.usages:
            bound.usages.append(usage)
        ids = self._usages.setdefault(usage, [])
        if dialog.id not in ids:
            ids.append(dialog.id)

    def usages_of(self, dialog_id: DialogId) -> tuple[Usage, ...]:
        """Return the usages bound to ``dialog_id``, in order (none for an unknown dialog)."""
        bound = self._dialogs.get(dialog_id)
        return () if bound is None else tuple(bound.usages)

    def dialog(self, dialog_id: DialogId) -> Dialog | None:
        """Return the dialog ``dialog_id`` names, if some usage is bound to it."""
        bound = self._dialogs.get(dialog_id)
        return None if bound is None else bound.dialog

    def dialogs(self) -> Iterator[Dialog]:
        """Iterate over every dialog some usage is bound to."""
        return iter([bound.dialog for bound in self._dialogs.values()])

    def remove(self, usage: Usage) -> None:
        """Forget ``usage``, and every dialog it leaves without a usage (rule 3)."""
        for dialog_id in self._usages.pop(usage, ()):
            bound = self._dialogs[dialog_id]
            bound.usages.remove(usage)
            if not bound.usages:
                del self._dialogs[dialog_id]
