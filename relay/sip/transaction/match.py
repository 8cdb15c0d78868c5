"""How a message finds its transaction: keys and the handles the layer keeps (RFC 3261 §17).

A server transaction is found by the top Via's branch, its sent-by and the method, ACK
counting as INVITE (§17.2.3); a client transaction by branch and CSeq method (§17.1.3), the
sent-by being always ours. A branch without the magic cookie comes from an RFC 2543 peer: its
key falls back to Call-ID, From tag and CSeq number. The handles pair a state machine with
where its messages go and the :class:`Usage` that owns it.

A :class:`Usage` is the transaction user of RFC 3261 §17: one use of a dialog (RFC 5057 §3),
such as the INVITE session of ``relay/sip/usage/``. It is declared here, beside the handles,
because each names the other; the layer never calls it, the endpoint does (``endpoint.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, TypeAlias

from relay.ids import BRANCH_MAGIC_COOKIE
from relay.sip.address import Address, TransportFailure
from relay.sip.syntax.message import Request, Response
from relay.sip.syntax.via import response_destination
from relay.sip.transaction.client import InviteClientTransaction, NonInviteClientTransaction
from relay.sip.transaction.machine import TransactionState
from relay.sip.transaction.server import InviteServerTransaction, NonInviteServerTransaction

__all__ = [
    "ClientMachine",
    "ClientTransaction",
    "ServerMachine",
    "ServerTransaction",
    "TransactionKey",
    "Usage",
    "client_key",
    "server_key",
]


ServerMachine: TypeAlias = (
    InviteServerTransaction[Request, Response] | NonInviteServerTransaction[Request, Response]
)
ClientMachine: TypeAlias = (
    InviteClientTransaction[Request, Response] | NonInviteClientTransaction[Request, Response]
)


@dataclass(frozen=True, slots=True)
class TransactionKey:
    """What identifies a transaction (RFC 3261 §17.1.3, §17.2.3)."""

    branch: str
    sent_by: str
    """The top Via's sent-by for server transactions; empty for ours (it is always us)."""
    method: str
    """The method that created the transaction (ACK matches INVITE)."""


class ServerTransaction:
    """A server transaction, where its responses go, and who owns it."""

    __slots__ = ("key", "request", "source", "destination", "machine", "owner", "last_sent")

    def __init__(
        self, key: TransactionKey, request: Request, source: Address, machine: ServerMachine
    ) -> None:
        self.key = key
        self.request = request
        """The request as stamped on arrival (its top Via has received/rport)."""
        self.source = source
        self.destination = response_destination(request.top_via, source)
        self.machine = machine
        self.owner: Usage | None = None
        self.last_sent: bytes | None = None

    @property
    def state(self) -> TransactionState:
        """The machine's state."""
        return self.machine.state


class ClientTransaction:
    """A client transaction, where its request goes, and who owns it."""

    __slots__ = ("key", "request", "destination", "machine", "owner", "failure")

    def __init__(
        self,
        key: TransactionKey,
        request: Request,
        destination: Address,
        machine: ClientMachine,
        owner: Usage | None,
    ) -> None:
        self.key = key
        self.request = request
        self.destination = destination
        self.machine = machine
        self.owner = owner
        self.failure: TransportFailure | None = None
        """Why the transport could not send the request, once it could not."""

    @property
    def state(self) -> TransactionState:
        """The machine's state."""
        return self.machine.state


class Usage(Protocol):
    """One use of a dialog, as the endpoint drives it (RFC 5057 §3; pjsip's dialog usages).

    The endpoint offers a usage what concerns it, then re-arms it (``get_timer()``) or forgets
    it (``finished``); a usage marks itself only when the application acts on it directly.
    """

    @property
    def finished(self) -> bool:
        """Whether the usage is over and may be forgotten, with every dialog it is bound to."""
        ...

    def receive_request(self, request: Request, tx: ServerTransaction, now: float) -> bool:
        """Take a request within one of its dialogs, or a CANCEL of its INVITE.

        Returns:
            Whether the usage took it (and answers ``tx``); if no usage does, the endpoint
            answers 481.
        """
        ...

    def receive_ack(self, ack: Request, now: float) -> bool:
        """Take an ACK to a 2xx within one of its dialogs; return whether it was its own."""
        ...

    def receive_response(
        self, response: Response, tx: ClientTransaction | None, now: float
    ) -> bool:
        """Take a response to its request (``tx``), or a stray 2xx (``tx`` is ``None``).

        Returns:
            Whether it was the usage's (a stray 2xx is offered to each usage of its dialog).
        """
        ...

    def transaction_failed(self, tx: ServerTransaction | ClientTransaction, now: float) -> None:
        """Take a timeout or transport failure of one of its transactions (RFC 3261 §8.1.3.1)."""
        ...

    def get_timer(self) -> float | None:
        """Return the usage's earliest deadline, or ``None``."""
        ...

    def handle_timer(self, now: float) -> None:
        """Fire what is due at ``now``."""
        ...


def server_key(request: Request) -> TransactionKey:
    """Return the key a request matches server transactions by (RFC 3261 §17.2.3)."""
    via = request.top_via
    method = "INVITE" if request.method == "ACK" else request.method
    sent_by = f"{via.host.lower()}:{via.port or ''}"
    branch = via.branch
    if branch is None or not branch.startswith(BRANCH_MAGIC_COOKIE):
        branch = f"rfc2543|{request.call_id}|{request.from_.tag}|{request.cseq.number}"
    return TransactionKey(branch, sent_by, method)


def client_key(branch: str, method: str) -> TransactionKey:
    """Return the key of our client transaction for ``branch`` and ``method`` (§17.1.3)."""
    return TransactionKey(branch, "", method)
