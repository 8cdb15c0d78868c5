"""The transaction layer: matching, ownership, response routing and timers (RFC 3261 §17, §18).

Theory of operation
===================

1. Requests in. The top Via is stamped (``syntax/via.py``: received, rport), then the request is
   matched to a server transaction by its key (§17.2.3): top Via branch, sent-by and method,
   ACK counting as INVITE. A match is a retransmission (absorbed or answered by the machine)
   or the ACK of a non-2xx (absorbed). No match creates a transaction and a
   :class:`RequestArrived` for the TU, except for an ACK: one that matches nothing
   acknowledges a 2xx and goes up without a transaction (RFC 6026 §7.1), as does an ACK the
   Accepted state passes up.
2. Keys and handles are in ``match.py`` (with the RFC 2543 fallback).
3. Responses out go where ``via.response_destination`` says (§18.2.2). If a connection fails,
   the last response goes once more by the Via without it, and only a second failure reaches
   the machine.
4. Requests out: the TU builds the request with a Via from :meth:`TransactionLayer.new_via`
   (our sent-by, a fresh branch, ``rport`` asked for) and hands it to :meth:`send_request`
   with its destination and an ``owner``. Responses match by branch and CSeq method (§17.1.3);
   an unmatched response whose sent-by is ours is passed up without a transaction (a 2xx
   retransmitted after Timer M), anything else is dropped.
5. Ownership: every transaction carries the ``owner`` the TU sets, the
   :class:`~relay.sip.transaction.match.Usage` it belongs to; the layer never looks at it.
   Events name their transaction, so the TU finds the owner.
   Once a terminated transaction is dropped and the TU has taken every event (``next_event()``
   returned ``None``), its ``owner`` is cleared: the owner usually holds the transaction too,
   and that cycle would otherwise keep each call alive until a full collection of the cyclic
   GC, whose pauses under load were the relay's worst latency (``bench/sip_load.py``).
6. Time: the layer keeps every machine's deadline in one heap; ``get_timer()`` is the earliest,
   ``handle_timer(now)`` fires the due ones. A machine that terminates is dropped at once.
7. Output: ``datagrams_to_send()`` returns ``(bytes, Address)`` pairs; ``next_event()`` the
   :data:`LayerEvent` values for the TU. Nothing calls back.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TypeAlias

from relay.ids import IdSource, new_branch
from relay.sip.address import Address, Transport, TransportFailure
from relay.sip.errors import LocalProtocolError
from relay.sip.syntax.headers import Headers, Via
from relay.sip.syntax.message import Request, Response
from relay.sip.syntax.via import DEFAULT_PORTS, response_destination, stamp_top_via
from relay.sip.transaction.client import InviteClientTransaction, NonInviteClientTransaction
from relay.sip.transaction.deadlines import Deadlines
from relay.sip.transaction.machine import (
    AckReceived,
    RequestReceived,
    ResponseReceived,
    TransactionEvent,
    TransactionState,
    TransactionTimedOut,
    TransportFailed,
)
from relay.sip.transaction.match import (
    ClientMachine,
    ClientTransaction,
    ServerMachine,
    ServerTransaction,
    TransactionKey,
    Usage,
    client_key,
    server_key,
)
from relay.sip.transaction.server import InviteServerTransaction, NonInviteServerTransaction
from relay.sip.transaction.timers import Timers

__all__ = [
    "ClientTransaction",
    "LayerEvent",
    "RequestArrived",
    "ResponseArrived",
    "ServerTransaction",
    "TransactionFailed",
    "TransactionLayer",
    "Usage",
    "non_2xx_ack",
]


@dataclass(frozen=True, slots=True)
class RequestArrived:
    """A new request for the TU; ``transaction`` is ``None`` for an ACK to a 2xx."""

    request: Request
    source: Address
    transaction: ServerTransaction | None


@dataclass(frozen=True, slots=True)
class ResponseArrived:
    """A response for the TU; ``transaction`` is ``None`` for a stray one addressed to us."""

    response: Response
    source: Address | None
    transaction: ClientTransaction | None


@dataclass(frozen=True, slots=True)
class TransactionFailed:
    """A transaction timed out (Timer B, F or H) or its transport failed (§17.1.4, §17.2.4)."""

    transaction: ServerTransaction | ClientTransaction
    reason: str
    """``"Timer B"``, ``"Timer F"``, ``"Timer H"`` or ``"transport error"``."""


LayerEvent: TypeAlias = RequestArrived | ResponseArrived | TransactionFailed
_Transaction: TypeAlias = ServerTransaction | ClientTransaction


def non_2xx_ack(request: Request, response: Response) -> Request:
    """Build the ACK for a 300-699 response to our INVITE (RFC 3261 §17.1.1.3)."""
    fields = [
        ("Via", str(request.top_via)),
        ("Max-Forwards", "70"),
        ("From", request.headers.get("From") or ""),
        ("To", response.headers.get("To") or ""),
        ("Call-ID", request.call_id),
        ("CSeq", f"{request.cseq.number} ACK"),
    ]
    fields.extend(("Route", value) for value in request.headers.get_all("Route"))
    return Request("ACK", request.uri, headers=Headers(fields))


class TransactionLayer:
    """Own every transaction of one endpoint: match, drive, route, time (RFC 3261 §17).

    Args:
        local_addresses: our address per transport: the sent-by of our Via header fields.
        timers: T1, T2, T4.
        ids: where branches come from.
    """

    def __init__(
        self, *, local_addresses: Mapping[Transport, Address], timers: Timers, ids: IdSource
    ) -> None:
        self._local = dict(local_addresses)
        self._timers = timers
        self._ids = ids
        self._server: dict[TransactionKey, ServerTransaction] = {}
        self._client: dict[TransactionKey, ClientTransaction] = {}
        self._deadlines: Deadlines[_Transaction] = Deadlines()
        self._outbox: list[tuple[bytes, Address]] = []
        self._events: deque[LayerEvent] = deque()
        self._dropped: list[_Transaction] = []
        """Terminated and forgotten; their owners are cleared once the events are taken."""

    # --- output ---------------------------------------------------------------------------

    def datagrams_to_send(self) -> list[tuple[bytes, Address]]:
        """Return and forget the queued ``(bytes, Address)`` pairs, oldest first."""
        outbox, self._outbox = self._outbox, []
        return outbox

    def next_event(self) -> LayerEvent | None:
        """Return the oldest event for the TU, or ``None`` (then release the dropped owners)."""
        if self._events:
            return self._events.popleft()
        if self._dropped:
            for tx in self._dropped:
                tx.owner = None
            self._dropped.clear()
        return None

    def get_timer(self) -> float | None:
        """Return the earliest deadline of any transaction, or ``None``."""
        return self._deadlines.earliest()

    def handle_timer(self, now: float) -> None:
        """Fire every transaction timer due at ``now``."""
        for tx in self._deadlines.pop_due(now):
            tx.machine.handle_timer(now)
            self._drive(tx, now)

    def local_address(self, transport: Transport) -> Address:
        """Return our address on ``transport``.

        Raises:
            LocalProtocolError: we have no listener for it.
        """
        try:
            return self._local[transport]
        except KeyError:
            raise LocalProtocolError(f"no local address for transport {transport}") from None

    # --- server side ----------------------------------------------------------------------

    def receive_request(self, request: Request, source: Address, now: float) -> None:
        """Stamp, match and dispatch a request from the network (rules 1 and 2)."""
        if request.top_via.stamped(source.host, source.port) != request.top_via:
            request = replace(request, headers=stamp_top_via(request.headers, source))
        key = server_key(request)
        tx = self._server.get(key)
        if tx is None:
            self._new_server_transaction(key, request, source, now)
            return
        machine = tx.machine
        if request.method == "ACK" and isinstance(machine, InviteServerTransaction):
            machine.receive_ack(request, now=now)
        elif request.method != "ACK":
            machine.receive_request(request, now=now)
        self._drive(tx, now)

    def _new_server_transaction(
        self, key: TransactionKey, request: Request, source: Address, now: float
    ) -> None:
        if request.method == "ACK":
            self._events.append(RequestArrived(request, source, None))
            return
        reliable = source.transport.reliable
        machine: ServerMachine
        if request.method == "INVITE":
            machine = InviteServerTransaction(request, reliable=reliable, timers=self._timers)
        else:
            machine = NonInviteServerTransaction(request, reliable=reliable, timers=self._timers)
        tx = ServerTransaction(key, request, source, machine)
        self._server[key] = tx
        self._drive(tx, now)

    def send_response(self, tx: ServerTransaction, response: Response, now: float) -> None:
        """Send a response through its server transaction.

        A 2xx to an INVITE whose transaction has already ended (Timer L) is still sent, straight
        to the transaction's destination: the TU retransmits it until the ACK (§13.3.1.4).

        Raises:
            TransactionError: the transaction's state does not allow this response.
        """
        if (
            tx.state is TransactionState.TERMINATED
            and 200 <= response.status < 300
            and tx.request.method == "INVITE"
        ):
            self._outbox.append((bytes(response), tx.destination))
            return
        tx.machine.send_response(response, response.status, now=now)
        self._drive(tx, now)

    def has_server_transaction(self, request: Request) -> bool:
        """Return whether ``request`` matches a server transaction that exists (§17.2.3)."""
        return server_key(request) in self._server

    def find_invite(self, cancel: Request) -> ServerTransaction | None:
        """Return the INVITE transaction a CANCEL targets (RFC 3261 §9.2), if it still exists."""
        key = server_key(cancel)
        return self._server.get(replace(key, method="INVITE"))

    def send_stateless(self, message: Request | Response, destination: Address) -> None:
        """Queue a message outside any transaction (an ACK to a 2xx, a stateless response)."""
        self._outbox.append((bytes(message), destination))

    # --- client side ----------------------------------------------------------------------

    def new_via(self, transport: Transport) -> Via:
        """Return a Via for a request we send: our sent-by, a new branch, ``rport`` (RFC 3581 §3)."""
        local = self.local_address(transport)
        params = (("branch", new_branch(self._ids)), ("rport", None))
        return Via(transport=transport.via_name, host=local.host, port=local.port, params=params)

    def send_request(
        self, request: Request, destination: Address, now: float, *, owner: Usage | None = None
    ) -> ClientTransaction:
        """Send a request in a new client transaction (RFC 3261 §17.1).

        Raises:
            LocalProtocolError: for ACK (not a transaction: use :meth:`send_stateless`) or a
                request without a branch.
        """
        branch = request.branch
        if request.method == "ACK" or not branch:
            raise LocalProtocolError(f"cannot start a client transaction for {request.method}")
        reliable = destination.transport.reliable
        machine: ClientMachine
        if request.method == "INVITE":
            machine = InviteClientTransaction(
                request, reliable=reliable, timers=self._timers, now=now, ack_factory=non_2xx_ack
            )
        else:
            machine = NonInviteClientTransaction(
                request, reliable=reliable, timers=self._timers, now=now
            )
        key = client_key(branch, request.method)
        tx = ClientTransaction(key, request, destination, machine, owner)
        self._client[key] = tx
        self._drive(tx, now)
        return tx

    def abandon(self, tx: ClientTransaction) -> None:
        """Forget a client transaction its TU gave up on; a late response is then a stray.

        RFC 3261 §9.1: an INVITE with no final response 64*T1 after its CANCEL is destroyed
        (in PROCEEDING it has no timer of its own that would end it).
        """
        if self._client.get(tx.key) is tx:
            self._forget(tx)

    def receive_response(self, response: Response, source: Address | None, now: float) -> None:
        """Match a response to its client transaction (RFC 3261 §17.1.3) and dispatch it."""
        key = client_key(response.branch or "", response.cseq.method)
        tx = self._client.get(key)
        if tx is None:
            if self._is_ours(response.top_via):
                self._events.append(ResponseArrived(response, source, None))
            return
        tx.machine.receive_response(response, response.status, now=now)
        self._drive(tx, now)

    def _is_ours(self, via: Via) -> bool:
        return any(
            via.host == local.host and (via.port or DEFAULT_PORTS[transport]) == local.port
            for transport, local in self._local.items()
        )

    # --- transport trouble ----------------------------------------------------------------

    def transport_error(
        self,
        destination: Address,
        now: float,
        failure: TransportFailure = TransportFailure.UNREACHABLE,
    ) -> None:
        """Handle a failed send to ``destination`` (RFC 3261 §18.2.2, §17.1.4, §17.2.4); a
        client transaction that fails so keeps ``failure`` for its owner to read."""
        for tx in [t for t in self._server.values() if t.destination == destination]:
            if destination.connection_id is not None:
                tx.destination = response_destination(
                    tx.request.top_via, replace(tx.source, connection_id=None)
                )
                if tx.last_sent is not None:
                    self._outbox.append((tx.last_sent, tx.destination))
                continue
            tx.machine.transport_error(now)
            self._drive(tx, now)
        for ctx in [t for t in self._client.values() if t.destination == destination]:
            ctx.failure = failure
            ctx.machine.transport_error(now)
            self._drive(ctx, now)

    def connection_lost(self, connection_id: int) -> None:
        """Send later responses of the transactions on a closed stream without it (§18.2.2)."""
        for tx in self._server.values():
            if tx.destination.connection_id == connection_id:
                source = replace(tx.source, connection_id=None)
                tx.destination = response_destination(tx.request.top_via, source)
        for ctx in self._client.values():
            if ctx.destination.connection_id == connection_id:
                ctx.destination = replace(ctx.destination, connection_id=None)

    # --- driving a machine ----------------------------------------------------------------

    def _drive(self, tx: _Transaction, now: float) -> None:
        """Queue what the machine sent, turn its events into layer events, re-arm its timer."""
        if isinstance(tx, ServerTransaction):
            for response in tx.machine.messages_to_send():
                tx.last_sent = bytes(response)
                self._outbox.append((tx.last_sent, tx.destination))
        else:
            for request in tx.machine.messages_to_send():
                self._outbox.append((bytes(request), tx.destination))
        while (event := tx.machine.next_event()) is not None:
            self._translate(tx, event)
        if tx.state is TransactionState.TERMINATED:
            self._forget(tx)
        else:
            self._deadlines.set(tx, tx.machine.get_timer())

    def _translate(self, tx: _Transaction, event: TransactionEvent[Request, Response]) -> None:
        if isinstance(event, RequestReceived) and isinstance(tx, ServerTransaction):
            self._events.append(RequestArrived(event.request, tx.source, tx))
        elif isinstance(event, AckReceived) and isinstance(tx, ServerTransaction):
            self._events.append(RequestArrived(event.ack, tx.source, None))
        elif isinstance(event, ResponseReceived) and isinstance(tx, ClientTransaction):
            self._events.append(ResponseArrived(event.response, tx.destination, tx))
        elif isinstance(event, TransactionTimedOut):
            self._events.append(TransactionFailed(tx, f"Timer {event.timer}"))
        elif isinstance(event, TransportFailed):
            self._events.append(TransactionFailed(tx, "transport error"))
        # TransactionTerminated needs no event: _drive reads the state and forgets the machine

    def _forget(self, tx: _Transaction) -> None:
        self._deadlines.set(tx, None)
        self._dropped.append(tx)
        if isinstance(tx, ServerTransaction):
            if self._server.get(tx.key) is tx:
                del self._server[tx.key]
        elif self._client.get(tx.key) is tx:
            del self._client[tx.key]
