"""The relay's control-plane client against an in-process fake on 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import pytest

from chalicelib.contracts import (
    CallEvent,
    CallEventBatch,
    InviteAccepted,
    InviteRejected,
    InviteWebhook,
)
from relay.control.webhooks import (
    ControlPlaneClient,
    ControlPlaneUnavailable,
    RequestRefused,
)
from tests.integration.relay.control.fake_control_plane import (
    ALLOWLIST,
    REJECT,
    SECRET,
    FakeControlPlane,
    Reply,
)
from tests.support.fakes import invite_body
from tests.support.virtual_time import run_in_virtual_time

T = TypeVar("T")
TIMEOUT_S = 0.3


def run(scenario: Callable[[FakeControlPlane, ControlPlaneClient], Awaitable[T]], **fake: Any) -> T:
    """Run ``scenario`` with a started fake and a client of it, bounded by 10 s."""

    async def main() -> T:
        plane = FakeControlPlane(**fake)
        await plane.start()
        client = ControlPlaneClient(plane.url, SECRET, decision_timeout_s=TIMEOUT_S)
        try:
            async with client:
                return await asyncio.wait_for(scenario(plane, client), 10)
        finally:
            await plane.stop()

    return run_in_virtual_time(main)  # the timeouts asserted are exact on a simulated clock


def invite() -> InviteWebhook:
    return InviteWebhook.model_validate(invite_body())


def test_decide_posts_the_signed_invite_and_returns_the_acceptance() -> None:
    async def scenario(plane: FakeControlPlane, client: ControlPlaneClient) -> None:
        decision = await client.decide(invite())
        assert isinstance(decision, InviteAccepted)
        assert decision.call_id == "call-1"
        assert decision.template_context == {"customer_name": "Bob"}
        assert plane.invites == [invite()]  # the fake verified the signature first

    run(scenario)


def test_decide_returns_a_rejection_with_its_sip_status() -> None:
    async def scenario(plane: FakeControlPlane, client: ControlPlaneClient) -> None:
        decision = await client.decide(invite())
        assert isinstance(decision, InviteRejected)
        assert (decision.sip_status, decision.reason) == (403, "source_ip_not_allowed")

    run(scenario, decision=REJECT)


def test_decisions_reuse_one_kept_alive_connection() -> None:
    async def scenario(plane: FakeControlPlane, client: ControlPlaneClient) -> None:
        for _ in range(3):
            await client.decide(invite())
        assert plane.requests == 3
        assert len(plane.peers) == 1

    run(scenario)


def _unavailable_within_timeout(reply: Reply) -> ControlPlaneUnavailable:
    async def scenario(plane: FakeControlPlane, client: ControlPlaneClient) -> Any:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(ControlPlaneUnavailable) as raised:
            await client.decide(invite())
        elapsed = loop.time() - started
        # A slow plane is given up on at the timeout; any other failure at once.
        assert elapsed == pytest.approx(TIMEOUT_S if reply.delay_s > TIMEOUT_S else 0.0, abs=1e-9)
        return raised.value

    return run(scenario, script=lambda path: reply)  # type: ignore[no-any-return]


def test_decide_gives_up_within_its_timeout_when_the_control_plane_is_slow() -> None:
    error = _unavailable_within_timeout(Reply(200, b"{}", delay_s=5))
    assert error.status is None
    assert error.retry_after_s == 5
    assert "no answer within 0.3s" in error.reason


def test_decide_raises_unavailable_on_a_5xx() -> None:
    error = _unavailable_within_timeout(Reply(500, b"boom"))
    assert error.status == 500
    assert not isinstance(error, RequestRefused)


def test_a_503_retry_after_in_seconds_is_passed_on_capped() -> None:
    assert (
        _unavailable_within_timeout(Reply(503, b"", headers={"Retry-After": "17"})).retry_after_s
        == 17
    )
    assert (
        _unavailable_within_timeout(Reply(503, b"", headers={"Retry-After": "9999"})).retry_after_s
        == 300
    )


def test_decide_raises_unavailable_on_an_answer_that_does_not_parse() -> None:
    assert _unavailable_within_timeout(Reply(200, b"<html>gateway</html>")).status == 200
    assert _unavailable_within_timeout(Reply(200, b'{"action": "maybe"}')).status == 200


def test_a_4xx_is_a_refusal_logged_as_a_bug(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="relay.control.webhooks"):
        error = _unavailable_within_timeout(Reply(400, b'{"code": "invalid_input"}'))
    assert isinstance(error, RequestRefused) and error.status == 400
    assert "refuses what the edge sent (a bug)" in caplog.text


def test_a_wrong_secret_is_unavailable_and_logged_loudly(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario(plane: FakeControlPlane, client: ControlPlaneClient) -> None:
        wrong = ControlPlaneClient(plane.url, "not-the-secret", decision_timeout_s=TIMEOUT_S)
        async with wrong:
            with pytest.raises(ControlPlaneUnavailable) as raised:
                await wrong.decide(invite())
        assert raised.value.status == 401
        assert not isinstance(raised.value, RequestRefused)

    with caplog.at_level(logging.ERROR, logger="relay.control.webhooks"):
        run(scenario)
    assert "check that SIPLINE_WEBHOOK_SECRET matches" in caplog.text


def test_decide_raises_unavailable_at_once_when_nothing_listens() -> None:
    async def main() -> None:
        with socket.socket() as bound_not_listening:  # held: nobody else can take the port
            bound_not_listening.bind(("127.0.0.1", 0))
            port = bound_not_listening.getsockname()[1]
            async with ControlPlaneClient(
                f"http://127.0.0.1:{port}", SECRET, decision_timeout_s=TIMEOUT_S
            ) as client:
                loop = asyncio.get_running_loop()
                started = loop.time()
                with pytest.raises(ControlPlaneUnavailable) as raised:
                    await client.decide(invite())
                assert loop.time() == started  # refused at once, no timeout waited for
                assert raised.value.status is None
                assert "ClientConnectorError" in raised.value.reason

    run_in_virtual_time(main)


def test_post_events_returns_the_acknowledgement() -> None:
    event = CallEvent(
        event_id="ev-1",
        type="answered",
        occurred_at=datetime(2026, 11, 25, 10, 0, tzinfo=UTC),
        call_id="call-1",
    )

    async def scenario(plane: FakeControlPlane, client: ControlPlaneClient) -> None:
        first = await client.post_events(CallEventBatch(events=[event]))
        again = await client.post_events(CallEventBatch(events=[event]))
        assert (first.applied, first.duplicates) == (1, 0)
        assert (again.applied, again.duplicates) == (0, 1)
        assert plane.applied["ev-1"]["occurredAt"] == "2026-11-25T10:00:00Z"

    run(scenario)


def test_fetch_allowlist_signs_an_empty_body_and_parses_the_snapshot() -> None:
    async def scenario(plane: FakeControlPlane, client: ControlPlaneClient) -> None:
        snapshot = await client.fetch_allowlist()
        assert snapshot.allowed_cidr_ranges == ALLOWLIST["allowedCidrRanges"]
        assert snapshot.version == 3

    run(scenario)
