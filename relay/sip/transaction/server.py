"""Server transactions: INVITE (RFC 3261 §17.2.1, RFC 6026 §7.1) and non-INVITE (§17.2.2).

Theory of operation (rules 1 to 7 of ``machine.py`` apply; these add to them)
=================================================================================

1. The constructor is the first request arriving: it queues
   ``RequestReceived(request)`` for the TU. Whether and when to send
   ``100 Trying`` is the caller's policy (§17.2.1 asks for it within 200 ms
   unless the TU answers sooner); it is sent like any response.
2. The TU's responses go through ``send_response(response, status_code,
   now=...)``; the status code picks the input (``SEND_1XX``, ``SEND_2XX`` or
   ``SEND_300_699``). A response the state does not allow raises
   ``TransactionError`` and is not sent. RFC 3261 says to discard a second
   final response in Completed (§17.2.2): raising is that discard, made loud.
3. A retransmitted request (``receive_request``) is answered with the last
   response sent, if any, and never reaches the TU (§17.2.1, §17.2.2).
4. INVITE, 300-699: the final response is retransmitted on Timer G, doubling
   up to T2 (unreliable transports only), until the ACK arrives; that ACK is
   absorbed (COMPLETED to CONFIRMED). Timer H gives up on it.
5. INVITE, 2xx: ACCEPTED (RFC 6026 §7.1). The transaction sends no 2xx
   retransmission of its own: the TU retransmits the 2xx (§13.3.1.4) through
   ``send_response`` until its ACK arrives. INVITE retransmissions are
   absorbed; an ACK is passed to the TU as ``AckReceived``. Timer L ends it.
6. A transport error is reported to the TU; the INVITE server transaction
   stays in its state to keep absorbing retransmissions (RFC 6026 §7.1), the
   non-INVITE one terminates once it has sent a response (Figure 8).
"""

from __future__ import annotations

from typing import ClassVar

from relay.sip.transaction.machine import (
    AckReceived,
    RequestReceived,
    RequestT,
    ResponseT,
    TimersByState,
    Transaction,
    TransactionInput,
    TransactionState,
    TransactionTimedOut,
    Transitions,
    status_class,
)
from relay.sip.transaction.timers import Timers

S = TransactionState
I = TransactionInput  # noqa: E741 - the table reads like the RFC's figures

_RESPONSE_INPUTS = {1: I.SEND_1XX, 2: I.SEND_2XX, 3: I.SEND_300_699}


class _ServerTransaction(Transaction[RequestT, ResponseT, ResponseT]):
    """Turn requests and TU responses into inputs; shared actions of both server machines."""

    def __init__(
        self, request: RequestT, *, reliable: bool, timers: Timers, state: TransactionState
    ) -> None:
        super().__init__(request, reliable=reliable, timers=timers, state=state)
        self._last_response: ResponseT | None = None
        self._emit(RequestReceived(request))

    def receive_request(self, request: RequestT, *, now: float) -> TransactionState:
        """Feed a retransmission of the request that matched this transaction (§17.2.3).

        Returns:
            The new state.
        """
        return self._handle(I.RECV_REQUEST, now, request)

    def send_response(
        self, response: ResponseT, status_code: int, *, now: float
    ) -> TransactionState:
        """Send a response from the TU.

        Returns:
            The new state.

        Raises:
            TransactionError: if the state does not allow this response (a
                response after a non-2xx final, a non-2xx after a 2xx, anything
                after TERMINATED), or ``status_code`` is not in 100..699.
        """
        return self._handle(_RESPONSE_INPUTS[status_class(status_code)], now, response)

    def _send_response(self, now: float, response: ResponseT | None) -> None:
        assert response is not None
        self._last_response = response
        self._send(response)

    def _resend_last_response(self, now: float, _: object) -> None:
        if self._last_response is not None:
            self._send(self._last_response)


# Shared actions under short names, so that the tables below read like the figures.
_send_response = _ServerTransaction._send_response
_resend_last_response = _ServerTransaction._resend_last_response
_report_transport_error = Transaction._report_transport_error


class InviteServerTransaction(_ServerTransaction[RequestT, ResponseT]):
    """Answer an INVITE (RFC 3261 §17.2.1, RFC 6026 §7.1).

    Args:
        request: The INVITE that created the transaction, passed to the TU as
            the first event.
        reliable: Whether the transport is reliable (no Timer G, Timer I is 0).
        timers: T1, T2, T4 and the timers derived from them.
    """

    def __init__(self, request: RequestT, *, reliable: bool, timers: Timers) -> None:
        super().__init__(request, reliable=reliable, timers=timers, state=S.PROCEEDING)
        self._interval_s = timers.G

    def receive_ack(self, ack: RequestT, *, now: float) -> TransactionState:
        """Feed an ACK that matched this transaction (§17.2.3).

        Returns:
            The new state.
        """
        return self._handle(I.RECV_ACK, now, ack)

    def _accept(self, now: float, response: ResponseT | None) -> None:
        self._send_response(now, response)
        self._arm(I.TIMER_L, now, self._timers.L)

    def _complete(self, now: float, response: ResponseT | None) -> None:
        self._send_response(now, response)
        if not self._reliable:
            self._arm(I.TIMER_G, now, self._interval_s)
        self._arm(I.TIMER_H, now, self._timers.H)

    def _retransmit(self, now: float, _: object) -> None:
        self._resend_last_response(now, None)
        self._interval_s = min(2 * self._interval_s, self._timers.T2)
        self._arm(I.TIMER_G, now, self._interval_s)

    def _time_out(self, now: float, _: object) -> None:
        self._emit(TransactionTimedOut("H"))

    def _confirm(self, now: float, _: object) -> None:
        self._arm(I.TIMER_I, now, self._timers.I(reliable=self._reliable))

    def _pass_ack_to_tu(self, now: float, ack: RequestT | None) -> None:
        assert ack is not None
        self._emit(AckReceived(ack))

    _TIMERS_BY_STATE: ClassVar[TimersByState] = {
        S.COMPLETED: frozenset({I.TIMER_G, I.TIMER_H}),
        S.CONFIRMED: frozenset({I.TIMER_I}),
        S.ACCEPTED: frozenset({I.TIMER_L}),
    }

    _TRANSITIONS: ClassVar[Transitions] = {
        (S.PROCEEDING, I.SEND_1XX): (_send_response, S.PROCEEDING),
        (S.PROCEEDING, I.SEND_2XX): (_accept, S.ACCEPTED),
        (S.PROCEEDING, I.SEND_300_699): (_complete, S.COMPLETED),
        (S.PROCEEDING, I.RECV_REQUEST): (_resend_last_response, S.PROCEEDING),
        (S.PROCEEDING, I.RECV_ACK): (None, S.PROCEEDING),  # stray: no final sent yet
        (S.PROCEEDING, I.TRANSPORT_ERROR): (_report_transport_error, S.PROCEEDING),
        (S.COMPLETED, I.TIMER_G): (_retransmit, S.COMPLETED),
        (S.COMPLETED, I.TIMER_H): (_time_out, S.TERMINATED),
        (S.COMPLETED, I.RECV_REQUEST): (_resend_last_response, S.COMPLETED),
        (S.COMPLETED, I.RECV_ACK): (_confirm, S.CONFIRMED),  # absorbed, not passed to the TU
        (S.COMPLETED, I.TRANSPORT_ERROR): (_report_transport_error, S.COMPLETED),
        (S.CONFIRMED, I.TIMER_I): (None, S.TERMINATED),
        (S.CONFIRMED, I.RECV_REQUEST): (None, S.CONFIRMED),  # absorbed
        (S.CONFIRMED, I.RECV_ACK): (None, S.CONFIRMED),  # ACK retransmission, absorbed
        (S.CONFIRMED, I.TRANSPORT_ERROR): (None, S.CONFIRMED),  # nothing sent here
        (S.ACCEPTED, I.SEND_2XX): (_send_response, S.ACCEPTED),  # TU's resend
        (S.ACCEPTED, I.TIMER_L): (None, S.TERMINATED),
        (S.ACCEPTED, I.RECV_REQUEST): (None, S.ACCEPTED),  # absorbed, not passed to the TU
        (S.ACCEPTED, I.RECV_ACK): (_pass_ack_to_tu, S.ACCEPTED),
        (S.ACCEPTED, I.TRANSPORT_ERROR): (_report_transport_error, S.ACCEPTED),
        (S.TERMINATED, I.RECV_REQUEST): (None, S.TERMINATED),
        (S.TERMINATED, I.RECV_ACK): (None, S.TERMINATED),
        (S.TERMINATED, I.TRANSPORT_ERROR): (None, S.TERMINATED),
    }


class NonInviteServerTransaction(_ServerTransaction[RequestT, ResponseT]):
    """Answer a request other than INVITE and ACK (RFC 3261 §17.2.2).

    Args:
        request: The request that created the transaction, passed to the TU
            as the first event.
        reliable: Whether the transport is reliable (Timer J is 0).
        timers: T1, T2, T4 and the timers derived from them.
    """

    def __init__(self, request: RequestT, *, reliable: bool, timers: Timers) -> None:
        super().__init__(request, reliable=reliable, timers=timers, state=S.TRYING)

    def _complete(self, now: float, response: ResponseT | None) -> None:
        self._send_response(now, response)
        self._arm(I.TIMER_J, now, self._timers.J(reliable=self._reliable))

    _TIMERS_BY_STATE: ClassVar[TimersByState] = {S.COMPLETED: frozenset({I.TIMER_J})}

    _TRANSITIONS: ClassVar[Transitions] = {
        (S.TRYING, I.SEND_1XX): (_send_response, S.PROCEEDING),
        (S.TRYING, I.SEND_2XX): (_complete, S.COMPLETED),
        (S.TRYING, I.SEND_300_699): (_complete, S.COMPLETED),
        (S.TRYING, I.RECV_REQUEST): (None, S.TRYING),  # discarded (§17.2.2)
        (S.TRYING, I.TRANSPORT_ERROR): (None, S.TRYING),  # nothing sent yet
        (S.PROCEEDING, I.SEND_1XX): (_send_response, S.PROCEEDING),
        (S.PROCEEDING, I.SEND_2XX): (_complete, S.COMPLETED),
        (S.PROCEEDING, I.SEND_300_699): (_complete, S.COMPLETED),
        (S.PROCEEDING, I.RECV_REQUEST): (_resend_last_response, S.PROCEEDING),
        (S.PROCEEDING, I.TRANSPORT_ERROR): (_report_transport_error, S.TERMINATED),
        (S.COMPLETED, I.TIMER_J): (None, S.TERMINATED),
        (S.COMPLETED, I.RECV_REQUEST): (_resend_last_response, S.COMPLETED),
        (S.COMPLETED, I.TRANSPORT_ERROR): (_report_transport_error, S.TERMINATED),
        (S.TERMINATED, I.RECV_REQUEST): (None, S.TERMINATED),
        (S.TERMINATED, I.TRANSPORT_ERROR): (None, S.TERMINATED),
    }
