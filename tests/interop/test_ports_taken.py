"""A port probed free and taken before the child binds it: SIPp, baresip and the local stack
start again on fresh ports instead of failing by luck (tests/support/ports.py).

Each test hands the helper, as its first choice, a port this test holds: the race, made certain.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import pairwise
from pathlib import Path

import pytest

from tests.interop import baresip, sipp
from tests.interop.stack import InteropStack
from tests.support import localstack, ports

pytestmark = pytest.mark.interop


@contextmanager
def first_choice_taken(
    monkeypatch: pytest.MonkeyPatch, module: object, helper: str, kind: socket.SocketKind
) -> Iterator[int]:
    """Make ``module.helper`` first return a port held here (bound with ``kind``), then free ones."""
    real = getattr(module, helper)
    with socket.socket(socket.AF_INET, kind) as held:
        held.bind((ports.LOOPBACK, real()))
        taken = held.getsockname()[1]
        chosen = iter([taken])
        monkeypatch.setattr(module, helper, lambda **kw: next(chosen, None) or real(**kw))
        yield taken


def test_every_pool_lies_below_the_ephemeral_range_and_apart_from_the_others() -> None:
    pools = sorted([ports.SINGLE_PORTS, ports.RELAY_RTP_PORTS, ports.WINDOW_PORTS])
    assert all(a[1] <= b[0] for a, b in pairwise(pools))
    assert pools[-1][1] <= ports.ephemeral_range()[0]  # 32768 on Linux by default
    first, last = ports.free_port_range(20)
    assert ports.WINDOW_PORTS[0] <= first < last < ports.WINDOW_PORTS[1]
    assert (first % 2, last - first) == (0, 19)


def test_sipp_is_started_again_when_its_port_was_taken(
    stack: InteropStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with first_choice_taken(monkeypatch, sipp, "free_sip_port", socket.SOCK_DGRAM):
        options = sipp.scenario("options.xml", tmp_path)
        run = sipp.run_sipp(stack, tmp_path, service="anyone", scenario_file=options)

    assert run.returncode == 0, run.explain()


def test_baresip_is_started_again_when_its_port_was_taken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with (
        first_choice_taken(monkeypatch, baresip, "free_sip_port", socket.SOCK_DGRAM) as taken,
        baresip.Baresip(tmp_path) as phone,
    ):
        assert phone.sip_port != taken
        assert "Address already in use" not in phone.log  # the log is the second start's


def test_the_local_stack_is_started_again_when_a_port_was_taken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with (
        first_choice_taken(monkeypatch, localstack, "free_port", socket.SOCK_STREAM) as taken,
        localstack.local_stack(tmp_path) as local,
    ):
        assert taken not in (local.moto_port, local.api_port)
        assert local.processes and all(p.poll() is None for p in local.processes)
