"""The four RFC 3261 §17 transaction state machines, with RFC 6026's Accepted state.

Messages are opaque to transactions, so these tests use tiny stand-ins
(``Req``, ``Resp``) and compare by identity where retransmission matters. Time
is an explicit ``now``; nothing sleeps.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relay.sip.transaction.client import InviteClientTransaction, NonInviteClientTransaction
from relay.sip.transaction.machine import (
    LOCAL_INPUTS,
    REMOTE_INPUTS,
    TIMER_INPUTS,
    AckReceived,
    RequestReceived,
    ResponseReceived,
    Transaction,
    TransactionError,
    TransactionInput,
    TransactionState,
    TransactionTerminated,
    TransactionTimedOut,
    TransportFailed,
)
from relay.sip.transaction.server import InviteServerTransaction, NonInviteServerTransaction
from relay.sip.transaction.timers import Timers

S = TransactionState
TIMERS = Timers()


@dataclass(frozen=True, eq=False)
class Req:
    method: str


@dataclass(frozen=True, eq=False)
class Resp:
    status_code: int


def make_ack(request: Req, response: Resp) -> Req:
    return Req("ACK")


def invite_client(
    *, reliable: bool = False, now: float = 0.0
) -> InviteClientTransaction[Req, Resp]:
    return InviteClientTransaction(
        Req("INVITE"), reliable=reliable, timers=TIMERS, now=now, ack_factory=make_ack
    )


def non_invite_client(
    *, reliable: bool = False, now: float = 0.0
) -> NonInviteClientTransaction[Req, Resp]:
    return NonInviteClientTransaction[Req, Resp](
        Req("OPTIONS"), reliable=reliable, timers=TIMERS, now=now
    )


def invite_server(*, reliable: bool = False) -> InviteServerTransaction[Req, Resp]:
    return InviteServerTransaction[Req, Resp](Req("INVITE"), reliable=reliable, timers=TIMERS)


def non_invite_server(*, reliable: bool = False) -> NonInviteServerTransaction[Req, Resp]:
    return NonInviteServerTransaction[Req, Resp](Req("BYE"), reliable=reliable, timers=TIMERS)


def events(tx: Transaction[Any, Any, Any]) -> list[object]:
    drained: list[object] = []
    while (event := tx.next_event()) is not None:
        drained.append(event)
    return drained


def run_timers(
    tx: Transaction[Any, Any, Any], *, until: float = 1e9
) -> list[tuple[float, list[Any]]]:
    """Fire timers one deadline at a time; return (time, messages queued) for each."""
    fired = []
    while (deadline := tx.get_timer()) is not None and deadline <= until:
        tx.handle_timer(deadline)
        fired.append((deadline, tx.messages_to_send()))
    return fired


def send_times(fired: list[tuple[float, list[Any]]]) -> list[float]:
    return [at for at, messages in fired if messages]


# --- INVITE client (RFC 3261 §17.1.1, RFC 6026 §7.2) ---------------------------------------


def test_invite_client_sends_the_request_when_created() -> None:
    tx = invite_client()

    assert [m.method for m in tx.messages_to_send()] == ["INVITE"]
    assert tx.state is S.CALLING
    assert events(tx) == []


def test_invite_client_retransmits_on_timer_a_until_timer_b() -> None:
    tx = invite_client()
    request = tx.messages_to_send()[0]

    fired = run_timers(tx)

    assert send_times(fired) == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert all(messages == [request] for _, messages in fired if messages)
    assert fired[-1][0] == 32.0
    assert events(tx) == [TransactionTimedOut("B"), TransactionTerminated()]
    assert tx.state is S.TERMINATED


def test_invite_client_doubles_timer_a_past_t2_without_cap() -> None:
    tx = invite_client()

    times = send_times(run_timers(tx))

    intervals = [b - a for a, b in zip([0.0, *times], times, strict=False)]
    assert intervals == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0]


def test_invite_client_stops_retransmitting_after_a_provisional_response() -> None:
    tx = invite_client()
    tx.messages_to_send()
    ringing = Resp(180)

    assert tx.receive_response(ringing, 180, now=0.2) is S.PROCEEDING

    assert events(tx) == [ResponseReceived(ringing)]
    assert tx.get_timer() is None  # Timer B runs in Calling only (Figure 5)
    assert tx.messages_to_send() == []


def test_invite_client_passes_every_provisional_response_to_the_tu() -> None:
    tx = invite_client()
    trying, ringing = Resp(100), Resp(180)

    tx.receive_response(trying, 100, now=0.1)
    tx.receive_response(ringing, 180, now=0.2)

    assert events(tx) == [ResponseReceived(trying), ResponseReceived(ringing)]


@pytest.mark.parametrize("state_before", [S.CALLING, S.PROCEEDING])
def test_invite_client_acks_a_300_699_response_and_passes_it_to_the_tu(
    state_before: TransactionState,
) -> None:
    tx = invite_client()
    if state_before is S.PROCEEDING:
        tx.receive_response(Resp(180), 180, now=0.1)
    events(tx)
    tx.messages_to_send()
    busy = Resp(486)

    assert tx.receive_response(busy, 486, now=1.0) is S.COMPLETED

    assert [m.method for m in tx.messages_to_send()] == ["ACK"]
    assert events(tx) == [ResponseReceived(busy)]


def test_invite_client_resends_the_same_ack_for_a_retransmitted_final_without_telling_the_tu() -> (
    None
):
    tx = invite_client()
    tx.messages_to_send()
    tx.receive_response(Resp(486), 486, now=1.0)
    (ack,) = tx.messages_to_send()
    events(tx)

    tx.receive_response(Resp(486), 486, now=1.5)

    assert tx.messages_to_send() == [ack]
    assert tx.messages_to_send() == []
    assert events(tx) == []


def test_invite_client_terminates_on_timer_d_32_seconds_after_a_final_response() -> None:
    tx = invite_client()
    tx.receive_response(Resp(486), 486, now=1.0)
    events(tx)

    assert tx.get_timer() == 33.0
    run_timers(tx)

    assert tx.state is S.TERMINATED
    assert events(tx) == [TransactionTerminated()]


def test_invite_client_on_reliable_transport_terminates_at_once_after_a_final_response() -> None:
    tx = invite_client(reliable=True)
    tx.receive_response(Resp(603), 603, now=2.0)

    assert tx.get_timer() == 2.0  # Timer D is zero: due now
    tx.handle_timer(2.0)

    assert tx.state is S.TERMINATED


def test_invite_client_enters_accepted_on_2xx_and_passes_each_2xx_to_the_tu() -> None:
    tx = invite_client()
    ok, ok_again, ok_other_fork = Resp(200), Resp(200), Resp(200)

    assert tx.receive_response(ok, 200, now=1.0) is S.ACCEPTED
    tx.receive_response(ok_again, 200, now=1.5)
    tx.receive_response(ok_other_fork, 200, now=2.0)

    assert events(tx) == [
        ResponseReceived(ok),
        ResponseReceived(ok_again),
        ResponseReceived(ok_other_fork),
    ]
    assert tx.messages_to_send() == [tx.request]  # no ACK: the TU sends the 2xx ACK


def test_invite_client_terminates_on_timer_m_after_2xx() -> None:
    tx = invite_client()
    tx.messages_to_send()
    tx.receive_response(Resp(200), 200, now=1.0)
    events(tx)

    assert tx.get_timer() == 33.0  # Timer M = 64*T1; Timers A and B are cancelled
    assert run_timers(tx) == [(33.0, [])]
    assert events(tx) == [TransactionTerminated()]


def test_invite_client_absorbs_stray_responses_after_a_final_response() -> None:
    tx = invite_client()
    tx.receive_response(Resp(486), 486, now=1.0)
    tx.messages_to_send()
    events(tx)

    tx.receive_response(Resp(180), 180, now=1.1)
    tx.receive_response(Resp(200), 200, now=1.2)

    assert (tx.state, events(tx), tx.messages_to_send()) == (S.COMPLETED, [], [])


def test_invite_client_absorbs_non_2xx_responses_in_accepted() -> None:
    tx = invite_client()
    tx.receive_response(Resp(200), 200, now=1.0)
    events(tx)

    tx.receive_response(Resp(180), 180, now=1.1)
    tx.receive_response(Resp(500), 500, now=1.2)

    assert (tx.state, events(tx)) == (S.ACCEPTED, [])


def test_invite_client_reports_a_transport_error_and_terminates() -> None:
    tx = invite_client()

    assert tx.transport_error(0.1) is S.TERMINATED

    assert events(tx) == [TransportFailed(), TransactionTerminated()]
    assert tx.get_timer() is None


def test_invite_client_stays_in_its_state_when_the_ack_factory_raises() -> None:
    def broken_factory(request: Req, response: Resp) -> Req:
        raise ValueError("no To tag")

    tx = InviteClientTransaction(
        Req("INVITE"), reliable=False, timers=TIMERS, now=0.0, ack_factory=broken_factory
    )
    tx.messages_to_send()

    with pytest.raises(ValueError, match="no To tag"):
        tx.receive_response(Resp(486), 486, now=0.1)

    assert (tx.state, tx.get_timer(), tx.messages_to_send(), events(tx)) == (
        S.CALLING,
        0.5,
        [],
        [],
    )


def test_client_transaction_rejects_a_status_code_outside_100_699() -> None:
    tx = invite_client()

    with pytest.raises(TransactionError, match="status code 700 is outside 100-699"):
        tx.receive_response(Resp(700), 700, now=0.1)
    assert tx.state is S.CALLING


# --- non-INVITE client (RFC 3261 §17.1.2) ----------------------------------------------------


def test_non_invite_client_caps_retransmit_interval_at_t2() -> None:
    tx = non_invite_client()

    fired = run_timers(tx)

    assert send_times(fired) == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert events(tx) == [TransactionTimedOut("F"), TransactionTerminated()]


def test_non_invite_client_retransmits_every_t2_in_proceeding() -> None:
    tx = non_invite_client()
    tx.messages_to_send()
    tx.receive_response(Resp(100), 100, now=0.2)

    fired = run_timers(tx)

    assert send_times(fired) == [0.5, 4.5, 8.5, 12.5, 16.5, 20.5, 24.5, 28.5]
    assert all(messages == [tx.request] for _, messages in fired if messages)


def test_non_invite_client_times_out_on_timer_f_in_proceeding() -> None:
    tx = non_invite_client()
    trying = Resp(100)
    tx.receive_response(trying, 100, now=0.2)

    run_timers(tx)

    assert events(tx) == [
        ResponseReceived(trying),
        TransactionTimedOut("F"),
        TransactionTerminated(),
    ]


@pytest.mark.parametrize("status_code", [200, 404])
def test_non_invite_client_passes_the_final_response_to_the_tu_and_absorbs_its_retransmissions(
    status_code: int,
) -> None:
    tx = non_invite_client()
    final = Resp(status_code)

    assert tx.receive_response(final, status_code, now=1.0) is S.COMPLETED
    tx.receive_response(Resp(status_code), status_code, now=2.0)

    assert events(tx) == [ResponseReceived(final)]
    assert tx.get_timer() == 6.0  # Timer K = T4


def test_non_invite_client_terminates_on_timer_k() -> None:
    tx = non_invite_client()
    tx.receive_response(Resp(200), 200, now=1.0)
    tx.messages_to_send()

    assert run_timers(tx) == [(6.0, [])]
    assert tx.state is S.TERMINATED


def test_non_invite_client_reports_a_transport_error_and_terminates() -> None:
    tx = non_invite_client()
    tx.receive_response(Resp(100), 100, now=0.1)
    events(tx)

    assert tx.transport_error(0.6) is S.TERMINATED
    assert events(tx) == [TransportFailed(), TransactionTerminated()]


# --- INVITE server (RFC 3261 §17.2.1, RFC 6026 §7.1) -----------------------------------------


def test_invite_server_passes_the_request_to_the_tu_and_leaves_100_trying_to_the_caller() -> None:
    tx = invite_server()

    assert tx.state is S.PROCEEDING
    assert events(tx) == [RequestReceived(tx.request)]
    assert tx.messages_to_send() == []
    assert tx.get_timer() is None


def test_invite_server_resends_the_latest_provisional_response_on_a_retransmitted_invite() -> None:
    tx = invite_server()
    trying, ringing = Resp(100), Resp(180)
    tx.send_response(trying, 100, now=0.0)
    tx.send_response(ringing, 180, now=0.1)
    assert tx.messages_to_send() == [trying, ringing]

    tx.receive_request(Req("INVITE"), now=0.5)

    assert tx.messages_to_send() == [ringing]
    assert events(tx) == [RequestReceived(tx.request)]  # the retransmission is not passed up


def test_invite_server_absorbs_a_retransmitted_invite_before_any_response() -> None:
    tx = invite_server()

    tx.receive_request(Req("INVITE"), now=0.5)

    assert (tx.state, tx.messages_to_send()) == (S.PROCEEDING, [])


def test_invite_server_retransmits_a_non_2xx_final_on_timer_g_capped_at_t2_until_timer_h() -> None:
    tx = invite_server()
    busy = Resp(486)
    assert tx.send_response(busy, 486, now=0.0) is S.COMPLETED
    assert tx.messages_to_send() == [busy]
    events(tx)

    fired = run_timers(tx)

    assert send_times(fired) == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert all(messages == [busy] for _, messages in fired if messages)
    assert events(tx) == [TransactionTimedOut("H"), TransactionTerminated()]


def test_invite_server_resends_the_final_response_on_a_retransmitted_invite_in_completed() -> None:
    tx = invite_server()
    busy = Resp(486)
    tx.send_response(busy, 486, now=0.0)
    tx.messages_to_send()

    tx.receive_request(Req("INVITE"), now=0.2)

    assert tx.messages_to_send() == [busy]


def test_invite_server_absorbs_the_ack_to_a_non_2xx_final_and_stops_retransmitting() -> None:
    tx = invite_server()
    tx.send_response(Resp(486), 486, now=0.0)
    events(tx)

    assert tx.receive_ack(Req("ACK"), now=0.3) is S.CONFIRMED

    assert events(tx) == []
    assert tx.get_timer() == 5.3  # Timer I = T4; Timers G and H are cancelled


def test_invite_server_absorbs_ack_retransmissions_in_confirmed_until_timer_i() -> None:
    tx = invite_server()
    tx.send_response(Resp(486), 486, now=0.0)
    tx.receive_ack(Req("ACK"), now=0.3)
    tx.messages_to_send()
    events(tx)

    tx.receive_ack(Req("ACK"), now=0.8)
    tx.receive_request(Req("INVITE"), now=0.9)
    fired = run_timers(tx)

    assert fired == [(5.3, [])]
    assert events(tx) == [TransactionTerminated()]


def test_invite_server_absorbs_retransmitted_invite_in_accepted() -> None:
    tx = invite_server()
    ok = Resp(200)
    assert tx.send_response(ok, 200, now=1.0) is S.ACCEPTED
    tx.messages_to_send()
    events(tx)

    tx.receive_request(Req("INVITE"), now=1.5)

    assert (tx.state, tx.messages_to_send(), events(tx)) == (S.ACCEPTED, [], [])


def test_invite_server_sends_the_tus_2xx_retransmissions_but_none_of_its_own() -> None:
    tx = invite_server()
    ok = Resp(200)
    tx.send_response(ok, 200, now=0.0)
    tx.messages_to_send()

    tx.send_response(ok, 200, now=0.5)

    assert tx.messages_to_send() == [ok]
    assert run_timers(tx) == [(32.0, [])]  # only Timer L, no Timer G


def test_invite_server_passes_the_ack_to_a_2xx_to_the_tu_in_accepted() -> None:
    tx = invite_server()
    tx.send_response(Resp(200), 200, now=0.0)
    events(tx)
    ack = Req("ACK")

    assert tx.receive_ack(ack, now=0.1) is S.ACCEPTED

    assert events(tx) == [AckReceived(ack)]


def test_invite_server_terminates_on_timer_l() -> None:
    tx = invite_server()
    tx.send_response(Resp(200), 200, now=1.0)
    events(tx)

    run_timers(tx)

    assert tx.state is S.TERMINATED
    assert events(tx) == [TransactionTerminated()]


@pytest.mark.parametrize(("status_code", "state"), [(180, S.PROCEEDING), (486, S.COMPLETED)])
def test_invite_server_reports_a_transport_error_and_keeps_absorbing_retransmissions(
    status_code: int, state: TransactionState
) -> None:
    tx = invite_server()
    tx.send_response(Resp(status_code), status_code, now=0.0)
    events(tx)

    assert tx.transport_error(0.1) is state  # RFC 6026 §7.1: not destroyed

    assert events(tx) == [TransportFailed()]


@pytest.mark.parametrize(("first", "second"), [(486, 200), (486, 180), (200, 486), (200, 180)])
def test_invite_server_refuses_a_response_after_a_final_response(first: int, second: int) -> None:
    tx = invite_server()
    tx.send_response(Resp(first), first, now=0.0)
    tx.messages_to_send()
    state = tx.state

    with pytest.raises(TransactionError, match=f"from TU' is not allowed in state {state.value}"):
        tx.send_response(Resp(second), second, now=0.1)

    assert (tx.state, tx.messages_to_send()) == (state, [])


# --- non-INVITE server (RFC 3261 §17.2.2) ----------------------------------------------------


def test_non_invite_server_discards_a_retransmitted_request_in_trying() -> None:
    tx = non_invite_server()

    assert tx.receive_request(Req("BYE"), now=0.5) is S.TRYING

    assert tx.messages_to_send() == []
    assert events(tx) == [RequestReceived(tx.request)]


def test_non_invite_server_resends_the_latest_provisional_response_in_proceeding() -> None:
    tx = non_invite_server()
    trying = Resp(100)
    assert tx.send_response(trying, 100, now=0.0) is S.PROCEEDING
    tx.messages_to_send()

    tx.receive_request(Req("BYE"), now=0.5)

    assert tx.messages_to_send() == [trying]


def test_non_invite_server_resends_the_final_response_in_completed_until_timer_j() -> None:
    tx = non_invite_server()
    ok = Resp(200)
    assert tx.send_response(ok, 200, now=0.0) is S.COMPLETED
    tx.messages_to_send()
    events(tx)

    tx.receive_request(Req("BYE"), now=10.0)
    assert tx.messages_to_send() == [ok]

    assert run_timers(tx) == [(32.0, [])]  # Timer J = 64*T1
    assert events(tx) == [TransactionTerminated()]


def test_non_invite_server_on_reliable_transport_terminates_at_once_after_the_final() -> None:
    tx = non_invite_server(reliable=True)
    tx.send_response(Resp(200), 200, now=3.0)

    tx.handle_timer(3.0)  # Timer J is zero

    assert tx.state is S.TERMINATED


def test_non_invite_server_refuses_a_second_final_response() -> None:
    tx = non_invite_server()
    tx.send_response(Resp(200), 200, now=0.0)
    tx.messages_to_send()

    with pytest.raises(TransactionError, match="'2xx from TU' is not allowed in state Completed"):
        tx.send_response(Resp(200), 200, now=0.1)
    assert tx.messages_to_send() == []


def test_non_invite_server_reports_a_transport_error_and_terminates() -> None:
    tx = non_invite_server()
    tx.send_response(Resp(200), 200, now=0.0)
    events(tx)

    assert tx.transport_error(0.1) is S.TERMINATED
    assert events(tx) == [TransportFailed(), TransactionTerminated()]


# --- all four ------------------------------------------------------------------------------


def _drive_to_completion(tx: Transaction[Any, Any, Any]) -> Transaction[Any, Any, Any]:
    """Give each machine a final response so that every timer it has gets to run."""
    if isinstance(tx, InviteServerTransaction | NonInviteServerTransaction):
        tx.send_response(Resp(486), 486, now=0.0)
    tx.messages_to_send()
    return tx


@pytest.mark.parametrize(
    "make",
    [invite_client, non_invite_client, invite_server, non_invite_server],
    ids=["invite_client", "non_invite_client", "invite_server", "non_invite_server"],
)
def test_reliable_transport_never_retransmits(
    make: Callable[..., Transaction[Any, Any, Any]],
) -> None:
    tx = _drive_to_completion(make(reliable=True))

    fired = run_timers(tx)

    assert fired and send_times(fired) == []
    assert tx.state is S.TERMINATED


def test_terminated_transaction_has_no_timer_absorbs_late_responses_and_refuses_sends() -> None:
    client, server = invite_client(), invite_server()
    client.transport_error(0.0)
    server.send_response(Resp(200), 200, now=0.0)
    run_timers(server)

    assert client.receive_response(Resp(200), 200, now=1.0) is S.TERMINATED
    assert server.receive_request(Req("INVITE"), now=40.0) is S.TERMINATED
    with pytest.raises(TransactionError):
        server.send_response(Resp(200), 200, now=40.0)
    assert client.get_timer() is server.get_timer() is None


def test_late_handle_timer_fires_due_timers_in_order_without_a_burst() -> None:
    tx = invite_client()
    tx.messages_to_send()

    tx.handle_timer(2.0)  # Timer A was due at 0.5; one retransmission, re-armed from now

    assert len(tx.messages_to_send()) == 1
    assert tx.get_timer() == 3.0


def test_invite_pair_recovers_a_lost_invite_and_completes_a_rejection() -> None:
    """A UAC and a UAS in memory; the first INVITE is lost (RFC 3261 §17.1.1.1)."""
    client = invite_client()
    client.messages_to_send()  # dropped on the wire
    client.handle_timer(0.5)
    (invite,) = client.messages_to_send()
    server = InviteServerTransaction[Req, Resp](invite, reliable=False, timers=TIMERS)
    server.send_response(Resp(486), 486, now=0.5)

    for response in server.messages_to_send():
        client.receive_response(response, response.status_code, now=0.6)
    (ack,) = client.messages_to_send()
    server.receive_ack(ack, now=0.7)

    assert (client.state, server.state) == (S.COMPLETED, S.CONFIRMED)
    assert [type(e) for e in events(server)] == [RequestReceived]
    assert [type(e) for e in events(client)] == [ResponseReceived]


# --- the tables themselves -----------------------------------------------------------------

MACHINES: list[type[Transaction[Any, Any, Any]]] = [
    InviteClientTransaction,
    NonInviteClientTransaction,
    InviteServerTransaction,
    NonInviteServerTransaction,
]


@pytest.mark.parametrize("machine", MACHINES, ids=lambda m: m.__name__)
def test_every_remote_input_a_machine_can_receive_has_an_entry_in_every_state(
    machine: type[Transaction[Any, Any, Any]],
) -> None:
    table = machine._TRANSITIONS
    states = {state for state, _ in table} | {next_state for _, next_state in table.values()}
    alphabet = {input_ for _, input_ in table if input_ in REMOTE_INPUTS}

    missing = {(s, i) for s in states for i in alphabet if (s, i) not in table}

    assert TransactionInput.TRANSPORT_ERROR in alphabet
    assert missing == set()


@pytest.mark.parametrize("machine", MACHINES, ids=lambda m: m.__name__)
def test_timers_fire_exactly_in_the_states_that_run_them(
    machine: type[Transaction[Any, Any, Any]],
) -> None:
    table = machine._TRANSITIONS
    entries = {(s, i) for s, i in table if i in TIMER_INPUTS}
    running = {(s, t) for s, timers in machine._TIMERS_BY_STATE.items() for t in timers}

    assert entries == running


def test_only_server_machines_take_responses_from_the_tu() -> None:
    for machine in MACHINES:
        local = {i for _, i in machine._TRANSITIONS if i in LOCAL_INPUTS}
        is_server = issubclass(machine, InviteServerTransaction | NonInviteServerTransaction)
        assert bool(local) is is_server, machine
        assert TransactionInput.SEND_REQUEST not in local


# --- Hypothesis: any sequence of inputs ---------------------------------------------------

FACTORIES: dict[str, Callable[..., Transaction[Any, Any, Any]]] = {
    "invite_client": invite_client,
    "non_invite_client": non_invite_client,
    "invite_server": invite_server,
    "non_invite_server": non_invite_server,
}

operations = st.lists(
    st.one_of(
        st.tuples(st.just("advance"), st.floats(0.0, 40.0)),
        st.tuples(st.just("fire"), st.just(0)),
        st.tuples(st.just("response"), st.integers(100, 699)),
        st.tuples(st.just("send"), st.integers(100, 699)),
        st.tuples(st.just("request"), st.just(0)),
        st.tuples(st.just("ack"), st.just(0)),
        st.tuples(st.just("transport_error"), st.just(0)),
    ),
    max_size=40,
)


def _apply(tx: Transaction[Any, Any, Any], op: str, arg: float, now: float) -> float:
    """Apply one public operation; return the new ``now``."""
    if op == "advance":
        now += arg
        tx.handle_timer(now)
    elif op == "fire":
        deadline = tx.get_timer()
        now = now if deadline is None else max(now, deadline)
        tx.handle_timer(now)
    elif op == "transport_error":
        tx.transport_error(now)
    elif op == "response" and hasattr(tx, "receive_response"):
        tx.receive_response(Resp(int(arg)), int(arg), now=now)
    elif op == "send" and hasattr(tx, "send_response"):
        tx.send_response(Resp(int(arg)), int(arg), now=now)
    elif op == "request" and hasattr(tx, "receive_request"):
        tx.receive_request(Req("retransmission"), now=now)
    elif op == "ack" and hasattr(tx, "receive_ack"):
        tx.receive_ack(Req("ACK"), now=now)
    return now


@pytest.mark.parametrize("kind", sorted(FACTORIES))
@given(ops=operations, reliable=st.booleans())
def test_any_sequence_of_calls_keeps_the_machine_consistent(
    kind: str, ops: list[tuple[str, float]], reliable: bool
) -> None:
    tx = FACTORIES[kind](reliable=reliable)
    tx.messages_to_send()
    now, seen_terminated = 0.0, False
    for op, arg in ops:
        before = tx.state
        try:
            now = _apply(tx, op, arg, now)
        except TransactionError:
            assert op == "send", "only the TU's own calls may be refused"
            assert tx.state is before
        sent_by_timer = tx.messages_to_send() if op in ("advance", "fire") else []
        tx.messages_to_send()
        drained = events(tx)
        deadline = tx.get_timer()

        assert isinstance(tx.state, TransactionState)
        assert deadline is None or deadline >= now, "a deadline in the past"
        if op in ("advance", "fire"):
            assert deadline is None or deadline > now, "a due timer was left unfired"
        if reliable:
            assert sent_by_timer == [], "retransmission on a reliable transport"
        assert not (seen_terminated and drained), "an event after TransactionTerminated"
        if tx.state is S.TERMINATED:
            assert deadline is None
            assert seen_terminated or drained[-1] == TransactionTerminated()
            seen_terminated = True
        assert TransactionTerminated() not in drained[:-1]


@pytest.mark.parametrize("kind", sorted(FACTORIES))
@given(inputs=st.lists(st.sampled_from(TransactionInput), max_size=30), reliable=st.booleans())
def test_any_input_in_any_state_yields_a_state_or_a_transaction_error(
    kind: str, inputs: list[TransactionInput], reliable: bool
) -> None:
    tx = FACTORIES[kind](reliable=reliable)
    alphabet = {i for _, i in tx._TRANSITIONS if i in REMOTE_INPUTS}
    for now, input_ in enumerate(inputs, start=1):
        try:
            state = tx._handle(input_, float(now), Resp(500))
        except TransactionError:
            assert input_ not in alphabet, "a receivable remote input raised"
        else:
            assert isinstance(state, TransactionState)


# --- sans-I/O ------------------------------------------------------------------------------

FORBIDDEN_IMPORTS = {"asyncio", "socket", "ssl", "time", "random", "secrets"}
TRANSACTION_DIR = Path(__file__).resolve().parents[5] / "relay" / "sip" / "transaction"


@pytest.mark.parametrize("module", ["timers.py", "machine.py", "client.py", "server.py"])
def test_transaction_modules_import_no_io_clock_or_randomness(module: str) -> None:
    tree = ast.parse((TRANSACTION_DIR / module).read_text())
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {
        (node.module or "").split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
    }

    assert imported & FORBIDDEN_IMPORTS == set()
