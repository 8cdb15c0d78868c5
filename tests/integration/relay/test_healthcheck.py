"""``python -m relay.healthcheck`` (the image's HEALTHCHECK) against a real relay and against none.

Expected values come from docs/deployment.md ("The relay image": exit 0 on a 200, 1 on no
answer or another status, 2 when the environment does not parse) and RFC 3261 §11.2 (a UAS
answers OPTIONS outside a dialog with 200).
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from relay import healthcheck
from tests.integration.relay.harness import ControlPlane, run, running, settings_for

LOOPBACK = "127.0.0.1"


def _env(monkeypatch: pytest.MonkeyPatch, host: str, port: int | str) -> None:
    monkeypatch.setenv("SIPLINE_SIP_HOST", host)
    monkeypatch.setenv("SIPLINE_SIP_PORT", str(port))


def test_a_running_relay_is_healthy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int | None] = []

    async def scenario() -> None:
        control = ControlPlane()
        await control.start()
        try:
            async with running(settings_for(control.url, tmp_path / "spool")) as relay:
                seen.append(await asyncio.to_thread(healthcheck.probe, LOOPBACK, relay.port))
                _env(monkeypatch, "0.0.0.0", relay.port)  # a wildcard is probed on loopback
                seen.append(await asyncio.to_thread(healthcheck.main))
        finally:
            await control.stop()

    run(scenario, timeout_s=60)

    assert seen == [200, 0]


def test_nothing_listening_is_unhealthy(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as held:  # bound, never read
        held.bind((LOOPBACK, 0))
        _env(monkeypatch, LOOPBACK, held.getsockname()[1])

        assert healthcheck.main() == 1


def test_a_refused_environment_is_exit_2(monkeypatch: pytest.MonkeyPatch) -> None:
    _env(monkeypatch, LOOPBACK, "not-a-port")

    assert healthcheck.main() == 2


def test_an_answer_to_another_probe_is_not_taken() -> None:
    answer = b"SIP/2.0 200 OK\r\nCall-ID: earlier@healthcheck\r\nContent-Length: 0\r\n\r\n"

    assert healthcheck.answer_status(answer, "earlier@healthcheck") == 200
    assert healthcheck.answer_status(answer, "this@healthcheck") is None
    assert healthcheck.answer_status(b"OPTIONS sip:x SIP/2.0\r\n\r\n", "this@healthcheck") is None
