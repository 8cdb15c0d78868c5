"""The local stack (``scripts.localstack``) for a test session, on ports chosen to be free.

Its processes bind the ports they are given a moment after they were probed
(tests/support/ports.py): when one was taken since and a process reports it, the whole stack is
stopped and started again on fresh ports, at most ``ATTEMPTS`` times.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from scripts.localstack import Credentials, LocalStack
from tests.support.ports import (
    RELAY_RTP_PORTS,
    PortTaken,
    address_in_use,
    free_port,
    free_port_range,
    free_sip_port,
    with_fresh_ports,
)

__all__ = ["ATTEMPTS", "local_stack"]

ATTEMPTS = 3
RELAY_RTP_WINDOW = 200


def _fresh(home: Path) -> LocalStack:
    sip_port = free_sip_port()
    singles: list[int] = [sip_port]
    for _ in range(4):
        singles.append(free_port(avoid=singles))
    moto_port, api_port, tls_port, agent_port = singles[1:]
    log_dir = home / "logs"
    shutil.rmtree(log_dir, ignore_errors=True)  # an earlier attempt's logs would mislead
    return LocalStack(
        Credentials.load_or_create(home / "credentials.json"),
        moto_port=moto_port,
        api_port=api_port,
        log_dir=log_dir,
        state_dir=home,
        sip_port=sip_port,
        tls_port=tls_port,
        rtp_ports=free_port_range(RELAY_RTP_WINDOW, RELAY_RTP_PORTS),
        agent_port=agent_port,
    )


def _start(home: Path, *, relay: bool) -> LocalStack:
    local = _fresh(home)
    try:
        local.start()
        if relay:
            local.start_demo_agent()
            local.start_relay()
        for process in local.processes:  # not answered by someone else's process on our port
            if process.poll() is not None:
                raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
    except (RuntimeError, TimeoutError) as error:
        local.stop()
        logs = "\n".join(log.read_text(errors="replace") for log in local.log_dir.glob("*.log"))
        if address_in_use(logs) or " is in use" in str(error):
            raise PortTaken(f"{error}\n{logs[-2000:]}") from error
        raise
    return local


@contextmanager
def local_stack(home: Path, *, relay: bool = False) -> Iterator[LocalStack]:
    """Run moto + ``chalice local`` (and with ``relay``, the demo agent and the relay) in ``home``."""
    local = with_fresh_ports(lambda: _start(home, relay=relay), attempts=ATTEMPTS)
    try:
        yield local
    finally:
        local.stop()
