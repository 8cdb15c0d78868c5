"""Client transactions: INVITE (RFC 3261 §17.1.1, RFC 6026 §7.2) and non-INVITE (§17.1.2).

Theory of operation (rules 1 to 7 of ``machine.py`` apply; these add to them)
=================================================================================

1. The constructor is the ``SEND_REQUEST`` input: it queues the request and
   arms the first timers. There is no other way to send a request.
2. The caller feeds every response that matches the transaction (§17.1.3) to
   ``receive_response(response, status_code, now=...)``; the status code picks
   the input (``RECV_1XX``, ``RECV_2XX`` or ``RECV_300_699``).
3. Retransmission happens on unreliable transports only: Timer A doubles
   without bound (§17.1.1.2); Timer E doubles up to T2, and once a provisional
   response has arrived it is reset to T2 (§17.1.2.2).
4. The INVITE client builds the ACK for a 300-699 response itself, through the
   ``ack_factory(request, response)`` it was given (§17.1.1.3 says what that
   ACK holds), and resends that same ACK for each retransmitted final response
   without telling the TU. A callback returning a value is used instead of an
   event so that the ACK stays inside the transaction that owns its branch.
5. A 2xx moves the INVITE client to ACCEPTED (RFC 6026 §7.2): every 2xx that
   arrives until Timer M fires goes to the TU, which sends the ACK for each in
   a transaction of its own (§13.2.2.4).
6. Timer B runs in CALLING only: once a provisional response has arrived, an
   INVITE waits for its final response as long as the TU lets it (§17.1.1.2);
   the TU gives up with CANCEL.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from relay.sip.transaction.machine import (
    RequestT,
    ResponseReceived,
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

_RESPONSE_INPUTS = {1: I.RECV_1XX, 2: I.RECV_2XX, 3: I.RECV_300_699}


class _ClientTransaction(Transaction[RequestT, ResponseT, RequestT]):
    """Turn received responses into inputs; shared actions of both client machines."""

    def receive_response(
        self, response: ResponseT, status_code: int, *, now: float
    ) -> TransactionState:
        """Feed a response that matched this transaction (RFC 3261 §17.1.3).

        Returns:
            The new state.

        Raises:
            TransactionError: if ``status_code`` is not in 100..699.
        """
        return self._handle(_RESPONSE_INPUTS[status_class(status_code)], now, response)

    def _pass_to_tu(self, now: float, response: ResponseT | None) -> None:
        assert response is not None
        self._emit(ResponseReceived(response))


# Shared actions under short names, so that the tables below read like the figures.
_pass_to_tu = _ClientTransaction._pass_to_tu
_report_transport_error = Transaction._report_transport_error


class InviteClientTransaction(_ClientTransaction[RequestT, ResponseT]):
    """Send an INVITE and see it to its final response (RFC 3261 §17.1.1, RFC 6026 §7.2).

    Args:
        request: The INVITE, queued for sending at once.
        reliable: Whether the transport is reliable (no Timer A, Timer D is 0).
        timers: T1, T2, T4 and the timers derived from them.
        now: Monotonic seconds at creation.
        ack_factory: Builds the ACK for a 300-699 response from ``(request,
            response)`` as RFC 3261 §17.1.1.3 describes.
    """

    def __init__(
        self,
        request: RequestT,
        *,
        reliable: bool,
        timers: Timers,
        now: float,
        ack_factory: Callable[[RequestT, ResponseT], RequestT],
    ) -> None:
        super().__init__(request, reliable=reliable, timers=timers, state=S.CALLING)
        self._ack_factory = ack_factory
        self._ack: RequestT | None = None
        self._interval_s = timers.A
        self._send(request)
        if not reliable:
            self._arm(I.TIMER_A, now, self._interval_s)
        self._arm(I.TIMER_B, now, timers.B)

    def _retransmit(self, now: float, _: object) -> None:
        self._send(self._request)
        self._interval_s *= 2
        self._arm(I.TIMER_A, now, self._interval_s)

    def _time_out(self, now: float, _: object) -> None:
        self._emit(TransactionTimedOut("B"))

    def _accept(self, now: float, response: ResponseT | None) -> None:
        self._pass_to_tu(now, response)
        self._arm(I.TIMER_M, now, self._timers.M)

    def _complete(self, now: float, response: ResponseT | None) -> None:
        assert response is not None
        self._ack = self._ack_factory(self._request, response)
        self._send(self._ack)
        self._pass_to_tu(now, response)
        self._arm(I.TIMER_D, now, self._timers.D(reliable=self._reliable))

    def _resend_ack(self, now: float, _: object) -> None:
        assert self._ack is not None
        self._send(self._ack)

    _TIMERS_BY_STATE: ClassVar[TimersByState] = {
        S.CALLING: frozenset({I.TIMER_A, I.TIMER_B}),
        S.COMPLETED: frozenset({I.TIMER_D}),
        S.ACCEPTED: frozenset({I.TIMER_M}),
    }

    _TRANSITIONS: ClassVar[Transitions] = {
        (S.CALLING, I.TIMER_A): (_retransmit, S.CALLING),
        (S.CALLING, I.TIMER_B): (_time_out, S.TERMINATED),
        (S.CALLING, I.RECV_1XX): (_pass_to_tu, S.PROCEEDING),
        (S.CALLING, I.RECV_2XX): (_accept, S.ACCEPTED),
        (S.CALLING, I.RECV_300_699): (_complete, S.COMPLETED),
        (S.CALLING, I.TRANSPORT_ERROR): (_report_transport_error, S.TERMINATED),
        (S.PROCEEDING, I.RECV_1XX): (_pass_to_tu, S.PROCEEDING),
        (S.PROCEEDING, I.RECV_2XX): (_accept, S.ACCEPTED),
        (S.PROCEEDING, I.RECV_300_699): (_complete, S.COMPLETED),
        (S.PROCEEDING, I.TRANSPORT_ERROR): (None, S.PROCEEDING),  # nothing sent here
        (S.COMPLETED, I.RECV_1XX): (None, S.COMPLETED),  # stray
        (S.COMPLETED, I.RECV_2XX): (None, S.COMPLETED),  # stray: only ACCEPTED passes 2xx up
        (S.COMPLETED, I.RECV_300_699): (_resend_ack, S.COMPLETED),  # not passed to the TU
        (S.COMPLETED, I.TIMER_D): (None, S.TERMINATED),
        (S.COMPLETED, I.TRANSPORT_ERROR): (_report_transport_error, S.TERMINATED),
        (S.ACCEPTED, I.RECV_1XX): (None, S.ACCEPTED),  # stray
        (S.ACCEPTED, I.RECV_2XX): (_pass_to_tu, S.ACCEPTED),  # TU re-ACKs
        (S.ACCEPTED, I.RECV_300_699): (None, S.ACCEPTED),  # stray
        (S.ACCEPTED, I.TIMER_M): (None, S.TERMINATED),
        (S.ACCEPTED, I.TRANSPORT_ERROR): (None, S.ACCEPTED),  # the TU sends the 2xx ACK
        (S.TERMINATED, I.RECV_1XX): (None, S.TERMINATED),
        (S.TERMINATED, I.RECV_2XX): (None, S.TERMINATED),
        (S.TERMINATED, I.RECV_300_699): (None, S.TERMINATED),
        (S.TERMINATED, I.TRANSPORT_ERROR): (None, S.TERMINATED),
    }


class NonInviteClientTransaction(_ClientTransaction[RequestT, ResponseT]):
    """Send a non-INVITE request and see it to its final response (RFC 3261 §17.1.2).

    Args:
        request: The request (not INVITE, not ACK), queued for sending at once.
        reliable: Whether the transport is reliable (no Timer E, Timer K is 0).
        timers: T1, T2, T4 and the timers derived from them.
        now: Monotonic seconds at creation.
    """

    def __init__(self, request: RequestT, *, reliable: bool, timers: Timers, now: float) -> None:
        super().__init__(request, reliable=reliable, timers=timers, state=S.TRYING)
        self._interval_s = timers.E
        self._send(request)
        if not reliable:
            self._arm(I.TIMER_E, now, self._interval_s)
        self._arm(I.TIMER_F, now, timers.F)

    def _retransmit_backing_off(self, now: float, _: object) -> None:
        self._send(self._request)
        self._interval_s = min(2 * self._interval_s, self._timers.T2)
        self._arm(I.TIMER_E, now, self._interval_s)

    def _retransmit_at_t2(self, now: float, _: object) -> None:
        self._send(self._request)
        self._interval_s = self._timers.T2
        self._arm(I.TIMER_E, now, self._interval_s)

    def _time_out(self, now: float, _: object) -> None:
        self._emit(TransactionTimedOut("F"))

    def _complete(self, now: float, response: ResponseT | None) -> None:
        self._pass_to_tu(now, response)
        self._arm(I.TIMER_K, now, self._timers.K(reliable=self._reliable))

    _TIMERS_BY_STATE: ClassVar[TimersByState] = {
        S.TRYING: frozenset({I.TIMER_E, I.TIMER_F}),
        S.PROCEEDING: frozenset({I.TIMER_E, I.TIMER_F}),
        S.COMPLETED: frozenset({I.TIMER_K}),
    }

    _TRANSITIONS: ClassVar[Transitions] = {
        (S.TRYING, I.TIMER_E): (_retransmit_backing_off, S.TRYING),
        (S.TRYING, I.TIMER_F): (_time_out, S.TERMINATED),
        (S.TRYING, I.RECV_1XX): (_pass_to_tu, S.PROCEEDING),
        (S.TRYING, I.RECV_2XX): (_complete, S.COMPLETED),
        (S.TRYING, I.RECV_300_699): (_complete, S.COMPLETED),
        (S.TRYING, I.TRANSPORT_ERROR): (_report_transport_error, S.TERMINATED),
        (S.PROCEEDING, I.TIMER_E): (_retransmit_at_t2, S.PROCEEDING),
        (S.PROCEEDING, I.TIMER_F): (_time_out, S.TERMINATED),
        (S.PROCEEDING, I.RECV_1XX): (_pass_to_tu, S.PROCEEDING),
        (S.PROCEEDING, I.RECV_2XX): (_complete, S.COMPLETED),
        (S.PROCEEDING, I.RECV_300_699): (_complete, S.COMPLETED),
        (S.PROCEEDING, I.TRANSPORT_ERROR): (_report_transport_error, S.TERMINATED),
        (S.COMPLETED, I.RECV_1XX): (None, S.COMPLETED),  # stray
        (S.COMPLETED, I.RECV_2XX): (None, S.COMPLETED),  # retransmission, absorbed
        (S.COMPLETED, I.RECV_300_699): (None, S.COMPLETED),  # retransmission, absorbed
        (S.COMPLETED, I.TIMER_K): (None, S.TERMINATED),
        (S.COMPLETED, I.TRANSPORT_ERROR): (None, S.COMPLETED),  # nothing sent here
        (S.TERMINATED, I.RECV_1XX): (None, S.TERMINATED),
        (S.TERMINATED, I.RECV_2XX): (None, S.TERMINATED),
        (S.TERMINATED, I.RECV_300_699): (None, S.TERMINATED),
        (S.TERMINATED, I.TRANSPORT_ERROR): (None, S.TERMINATED),
    }
