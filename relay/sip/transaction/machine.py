"""SIP transactions: states, inputs, events and the table-driven core (RFC 3261 §17).

Theory of operation
===================

1. A transaction is one request and the responses to it (RFC 3261 §17). Four
   state machines implement it: ``InviteClientTransaction`` and
   ``NonInviteClientTransaction`` in ``client.py`` (§17.1.1, §17.1.2),
   ``InviteServerTransaction`` and ``NonInviteServerTransaction`` in
   ``server.py`` (§17.2.1, §17.2.2). The INVITE machines carry RFC
   6026's ``ACCEPTED`` state and Timers L and M. This module holds what they
   share.
2. Sans-I/O: no socket, no clock, no callback. Every entry point takes ``now``
   (monotonic seconds). Output is queued: the caller drains
   ``messages_to_send()`` and then ``next_event()`` until it returns ``None``.
3. Messages are opaque (the type parameters ``RequestT`` and ``ResponseT``).
   A transaction stores the objects it is given and queues them again to
   retransmit, so a retransmission is the very same object. The caller tells
   it the two things it cannot see: whether the transport is reliable (at
   construction) and the status code of each response.
4. Each machine is a table, ``_TRANSITIONS[(state, input)] = (action, next
   state)``, plus one short method per action. Inputs come in three kinds
   (``LOCAL_INPUTS``, ``REMOTE_INPUTS``, ``TIMER_INPUTS``):

   - local inputs are the TU asking to send. A missing key raises
     ``TransactionError`` and nothing is sent: the caller broke the protocol.
   - remote inputs are what the network did (a message, or a transport error
     while sending). A machine that can receive a remote input has an entry for
     it in every state; where the RFC absorbs it (retransmissions, stray
     responses) the entry is an explicit no-op, so hostile input never raises.
     A remote input the machine can never receive (an ACK routed to a client
     transaction) is the caller's routing bug and raises ``TransactionError``.
   - timers are armed by actions and fire from ``handle_timer``. Each machine's
     ``_TIMERS_BY_STATE`` lists the timers that run in each state; entering a
     state cancels the others.

5. Time: ``get_timer()`` is the earliest deadline or ``None``;
   ``handle_timer(now)`` fires every timer due at ``now`` in deadline order. A
   retransmission interval runs from the ``now`` at which its timer was
   handled, so a late call never causes a burst. Timers D, I, J and K are zero
   on reliable transports: they are due at once, and the caller's usual
   "re-arm at ``get_timer()``" loop fires them.
6. Transport errors are reported where the RFC's figures show them: RFC 3261
   ends the transaction (§17.1.4, §17.2.4); RFC 6026 keeps the INVITE server
   transaction alive so it can still absorb retransmissions. Elsewhere the
   transaction sends nothing, and a transport error is absorbed.
7. ``TERMINATED`` is final: ``TransactionTerminated`` is the last event,
   ``get_timer()`` is ``None``, and the owner drops the transaction ("MUST be
   destroyed the instant it enters the Terminated state", §17.1.1.2).

Driving one, after every call into it (the transaction layer does this)::

    for message in tx.messages_to_send():
        transport.send(message)             # on failure: tx.transport_error(now)
    while (event := tx.next_event()) is not None:
        tu.handle(event)
    deadline = tx.get_timer()               # None: no timer; else call_at(deadline)
    ...                                     # when it fires: tx.handle_timer(loop.time())
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any, ClassVar, Generic, TypeAlias, TypeVar

from relay.sip.transaction.timers import Timers

RequestT = TypeVar("RequestT")
ResponseT = TypeVar("ResponseT")
SentT = TypeVar("SentT")  # what a machine sends: requests (client) or responses (server)

STATUS_CODE_MIN = 100  # RFC 3261 §7.2: Status-Code is three digits, 1xx to 6xx
STATUS_CODE_MAX = 699


class TransactionState(Enum):
    """Transaction states by their RFC names (RFC 3261 §17, RFC 6026 §7)."""

    CALLING = "Calling"
    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    CONFIRMED = "Confirmed"
    ACCEPTED = "Accepted"
    TERMINATED = "Terminated"


class TransactionInput(Enum):
    """What can happen to a transaction: the labels on RFC 3261's Figures 5 to 8.

    Timer C is absent: it is a proxy timer (RFC 3261 §16.6), not a transaction's.
    """

    SEND_REQUEST = "request from TU"  # creates a client transaction; never valid later
    SEND_1XX = "1xx from TU"
    SEND_2XX = "2xx from TU"
    SEND_300_699 = "300-699 from TU"
    RECV_1XX = "1xx"
    RECV_2XX = "2xx"
    RECV_300_699 = "300-699"
    RECV_REQUEST = "request retransmission"
    RECV_ACK = "ACK"
    TRANSPORT_ERROR = "Transport Err."
    TIMER_A = "Timer A"
    TIMER_B = "Timer B"
    TIMER_D = "Timer D"
    TIMER_E = "Timer E"
    TIMER_F = "Timer F"
    TIMER_G = "Timer G"
    TIMER_H = "Timer H"
    TIMER_I = "Timer I"
    TIMER_J = "Timer J"
    TIMER_K = "Timer K"
    TIMER_L = "Timer L"
    TIMER_M = "Timer M"


_I = TransactionInput
LOCAL_INPUTS = frozenset({_I.SEND_REQUEST, _I.SEND_1XX, _I.SEND_2XX, _I.SEND_300_699})
REMOTE_INPUTS = frozenset(
    {_I.RECV_1XX, _I.RECV_2XX, _I.RECV_300_699, _I.RECV_REQUEST, _I.RECV_ACK, _I.TRANSPORT_ERROR}
)
TIMER_INPUTS = frozenset(i for i in TransactionInput if i.name.startswith("TIMER_"))


# relay/sip/errors.py does not define LocalProtocolError yet. When it does, this
# becomes ``class TransactionError(LocalProtocolError)`` so callers catch either.
class TransactionError(Exception):
    """The caller used a transaction in a way RFC 3261 §17 does not allow.

    This is h11's ``LocalProtocolError``: an input the state does not accept,
    or a status code outside 100-699. The transaction is left as it was.
    """


@dataclass(frozen=True, slots=True)
class RequestReceived(Generic[RequestT]):
    """A server transaction was created for a request: pass it to the TU (§17.2.1, §17.2.2)."""

    request: RequestT
    """The request, as given to the transaction's constructor."""


@dataclass(frozen=True, slots=True)
class ResponseReceived(Generic[ResponseT]):
    """A client transaction passed a response to the TU (§17.1.1.2, §17.1.2.2, RFC 6026 §7.2).

    In ``ACCEPTED`` this includes retransmitted 2xx and 2xx from other forks,
    which the TU must ACK again (RFC 3261 §13.2.2.4).
    """

    response: ResponseT
    """The response, as given to ``receive_response``."""


@dataclass(frozen=True, slots=True)
class AckReceived(Generic[RequestT]):
    """An ACK to a 2xx reached the INVITE server transaction in ACCEPTED (RFC 6026 §7.1).

    It is not absorbed: the TU (the dialog) must see it. An ACK to a non-2xx
    final response is absorbed and produces no event (RFC 3261 §17.2.1).
    """

    ack: RequestT
    """The ACK request, as given to ``receive_ack``."""


@dataclass(frozen=True, slots=True)
class TransactionTimedOut:
    """Timer B, F or H fired: the transaction failed for lack of an answer (§17.1.1.2, §17.2.1)."""

    timer: str
    """The RFC's name of the timer that fired: ``"B"``, ``"F"`` or ``"H"``."""


@dataclass(frozen=True, slots=True)
class TransportFailed:
    """The transport reported an error sending this transaction's message (§17.1.4, §17.2.4)."""


@dataclass(frozen=True, slots=True)
class TransactionTerminated:
    """The transaction entered TERMINATED; its owner can drop it. Always the last event."""


TransactionEvent: TypeAlias = (
    RequestReceived[RequestT]
    | ResponseReceived[ResponseT]
    | AckReceived[RequestT]
    | TransactionTimedOut
    | TransportFailed
    | TransactionTerminated
)

_Action: TypeAlias = Callable[[Any, float, Any], None]
Transitions: TypeAlias = dict[
    tuple[TransactionState, TransactionInput], tuple[_Action | None, TransactionState]
]
TimersByState: TypeAlias = dict[TransactionState, frozenset[TransactionInput]]


def status_class(status_code: int) -> int:
    """Return 1 for 1xx, 2 for 2xx and 3 for 300-699.

    Raises:
        TransactionError: if ``status_code`` is not in 100..699; a parser
            upstream must have rejected such a response already.
    """
    if not STATUS_CODE_MIN <= status_code <= STATUS_CODE_MAX:
        raise TransactionError(f"status code {status_code} is outside 100-699")
    return min(status_code // 100, 3)


class Transaction(Generic[RequestT, ResponseT, SentT]):
    """Run a ``_TRANSITIONS`` table: the machinery shared by the four machines.

    Subclasses set ``_TRANSITIONS`` and ``_TIMERS_BY_STATE`` and add the entry
    points that turn a call into an input. ``SentT`` is what the machine sends:
    ``RequestT`` for a client, ``ResponseT`` for a server.
    """

    _TRANSITIONS: ClassVar[Transitions]
    _TIMERS_BY_STATE: ClassVar[TimersByState]

    def __init__(
        self, request: RequestT, *, reliable: bool, timers: Timers, state: TransactionState
    ) -> None:
        self._request = request
        self._reliable = reliable
        self._timers = timers
        self._state = state
        self._deadlines: dict[TransactionInput, float] = {}
        self._outbox: list[SentT] = []
        self._events: deque[TransactionEvent[RequestT, ResponseT]] = deque()

    @property
    def state(self) -> TransactionState:
        """The current state."""
        return self._state

    @property
    def request(self) -> RequestT:
        """The request this transaction was created for."""
        return self._request

    @property
    def reliable(self) -> bool:
        """Whether the transport is reliable (TCP, TLS, SCTP), which disables retransmission."""
        return self._reliable

    def messages_to_send(self) -> list[SentT]:
        """Return and forget the messages queued for the transport, oldest first."""
        outbox, self._outbox = self._outbox, []
        return outbox

    def next_event(self) -> TransactionEvent[RequestT, ResponseT] | None:
        """Return the oldest queued event, or ``None`` when there is none."""
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        """Return the earliest timer deadline (monotonic seconds), or ``None``."""
        return min(self._deadlines.values(), default=None)

    def handle_timer(self, now: float) -> None:
        """Fire every timer whose deadline is at or before ``now``, earliest first."""
        while True:
            due = {timer: at for timer, at in self._deadlines.items() if at <= now}
            if not due:
                return
            timer = min(due, key=due.__getitem__)
            del self._deadlines[timer]
            self._handle(timer, now)

    def transport_error(self, now: float) -> TransactionState:
        """Report that the transport failed to send this transaction's message (§17.1.4, §17.2.4).

        Returns:
            The new state.
        """
        return self._handle(TransactionInput.TRANSPORT_ERROR, now)

    def _handle(
        self, input_: TransactionInput, now: float, message: RequestT | ResponseT | None = None
    ) -> TransactionState:
        """Look ``input_`` up in the table, run the action, then change state.

        The action runs first so that if it raises (only the caller's
        ``ack_factory`` can) the transaction stays in its state.
        """
        entry = self._TRANSITIONS.get((self._state, input_))
        if entry is None:
            raise TransactionError(
                f"{type(self).__name__}: {input_.value!r} is not allowed"
                f" in state {self._state.value}"
            )
        action, next_state = entry
        if action is not None:
            action(self, now, message)
        if next_state is not self._state:
            self._state = next_state
            running = self._TIMERS_BY_STATE.get(next_state, frozenset())
            self._deadlines = {t: at for t, at in self._deadlines.items() if t in running}
            if next_state is TransactionState.TERMINATED:
                self._events.append(TransactionTerminated())
        return self._state

    def _arm(self, timer: TransactionInput, now: float, delay_s: float) -> None:
        """Set ``timer`` to fire ``delay_s`` after ``now``; leaving the state cancels it."""
        self._deadlines[timer] = now + delay_s

    def _send(self, message: SentT) -> None:
        self._outbox.append(message)

    def _emit(self, event: TransactionEvent[RequestT, ResponseT]) -> None:
        self._events.append(event)

    def _report_transport_error(self, now: float, message: object) -> None:
        self._emit(TransportFailed())
