"""Building ``relay/Dockerfile`` and running it, without a Docker engine: buildah + podman.

This machine has no Docker engine and no registry of base images, so the image is built the way
the recipe measured here does it (docs/deployment.md, "The relay image"):

1. **The base** (``BASE_IMAGE``) is Debian 12 bootstrapped from the machine's own apt source with
   ``debootstrap --variant=minbase --include=python3,python3-venv`` and imported with
   ``podman import`` (about 45 s, 275 MB). The machine's CA bundle is copied into it and named by
   ``PIP_CERT``, so that pip inside the build trusts what the host trusts. It is made once and
   kept in podman's store: later runs reuse it.
2. **The image** (``IMAGE``) is ``buildah bud --layers`` of ``relay/Dockerfile`` with
   ``--build-arg BASE=<the base>``, in Docker format (the OCI format drops HEALTHCHECK). The
   layers are cached: a run after a change to ``relay/`` or ``chalicelib/`` only copies them
   again and recompiles; a change to the requirements reinstalls them (bounded by
   ``BUILD_TIMEOUT_S``).
3. **The container** runs with ``podman run --network host`` (the relay binds the host's
   127.0.0.1, where the test's control plane and agent listen), ``--read-only`` (podman mounts a
   tmpfs on /tmp, /run and /var/tmp), and no volume of the test's: the image's ``VOLUME`` makes
   podman give the spool a fresh volume filled from the image's directory, owner included, as a
   Fargate bind mount at that path is filled (so the spool's writability is the image's doing). ``runc``
   and ``cgroupfs`` because crun refuses this machine's hybrid cgroups; ``vfs`` storage because
   no overlay is available; a ``containers.conf`` with no default ulimits because podman's are
   refused here.

After a build, the layers of earlier builds that no tag reaches are removed (``prune``): vfs keeps
a full copy of the image per layer. The base and the current build's cache stay.

Every command is bounded by a timeout; a missing tool fails the test (``require``), never skips it.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from scripts.localstack import ROOT, LocalStack, wait_sip
from tests.interop.stack import require

BASE_IMAGE = "localhost/sipline-base:bookworm"
IMAGE = "localhost/sipline-relay:test"
IMAGE_LABEL = "org.opencontainers.image.title=sipline-relay"
"""Every layer of the relay's builds carries it (relay/Dockerfile): what ``prune`` may remove."""
CONTAINER_UID = 10001
"""The relay's user in the image (relay/Dockerfile)."""
SPOOL_IN_IMAGE = "/var/lib/sipline/spool"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
APT_SOURCES = (Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list"))
BOOTSTRAP_TIMEOUT_S = 600
BUILD_TIMEOUT_S = 900
"""Bound on one build: the first one (requirements from the registry) took ~3 min here."""
COMMAND_TIMEOUT_S = 60
START_TIMEOUT_S = 60
STOP_TIMEOUT_S = 15
_RELAY_VARIABLES = ("SIPLINE_", "AWS_")
_NOT_IN_CONTAINER = {"SIPLINE_TLS_CERT", "SIPLINE_TLS_KEY", "SIPLINE_SPOOL_DIR"}
"""The host relay's files: the container keeps the image's spool and runs without TLS."""


def engine_args(workdir: Path) -> tuple[list[str], dict[str, str]]:
    """Return the global podman/buildah options and the environment they need (module docstring)."""
    conf = workdir / "containers.conf"
    conf.write_text("[containers]\ndefault_ulimits = []\n")
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
    return ["--storage-driver", "vfs"], {**env, "CONTAINERS_CONF": str(conf)}


def run(args: list[str], env: dict[str, str], timeout_s: float) -> subprocess.CompletedProcess[str]:
    """Run one command, bounded; its output is kept for the failure message."""
    return subprocess.run(
        args, env=env, capture_output=True, text=True, errors="replace", timeout=timeout_s
    )


def apt_mirror() -> str:
    """The Debian mirror apt uses on this machine (debootstrap bootstraps from it)."""
    for path in APT_SOURCES:
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            words = line.split()
            if words[:1] == ["URIs:"] and "security" not in words[1]:
                return words[1]
            if words[:1] == ["deb"] and "security" not in words[1]:
                return words[1]
    raise AssertionError(f"no Debian mirror in {[str(path) for path in APT_SOURCES]}")


def ensure_base(workdir: Path) -> None:
    """Make ``BASE_IMAGE`` unless podman's store has it already (step 1 of the docstring)."""
    podman = require("podman")
    storage, env = engine_args(workdir)
    if (
        run([podman, *storage, "image", "exists", BASE_IMAGE], env, COMMAND_TIMEOUT_S).returncode
        == 0
    ):
        return
    rootfs = workdir / "rootfs"
    bootstrap = [require("debootstrap"), "--variant=minbase", "--include=python3,python3-venv"]
    made = run([*bootstrap, "bookworm", str(rootfs), apt_mirror()], env, BOOTSTRAP_TIMEOUT_S)
    assert made.returncode == 0, f"debootstrap failed:\n{made.stdout[-3000:]}{made.stderr[-3000:]}"
    (rootfs / "etc/ssl/certs").mkdir(parents=True, exist_ok=True)
    (rootfs / "etc/ssl/certs/ca-certificates.crt").write_bytes(HOST_CA_BUNDLE.read_bytes())
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    change = f"ENV PIP_CERT={HOST_CA_BUNDLE}"
    imported = subprocess.run(
        [podman, *storage, "import", "--change", change, "-", BASE_IMAGE],
        stdin=tar.stdout,
        env=env,
        capture_output=True,
        text=True,
        timeout=BOOTSTRAP_TIMEOUT_S,
    )
    assert tar.stdout is not None
    tar.stdout.close()
    tar.wait(timeout=COMMAND_TIMEOUT_S)
    assert imported.returncode == 0, f"podman import failed:\n{imported.stderr[-3000:]}"
    subprocess.run(["rm", "-rf", str(rootfs)], check=True, timeout=COMMAND_TIMEOUT_S)


def build_image(workdir: Path) -> float:
    """Build ``IMAGE`` from ``relay/Dockerfile`` (step 2); return how long it took, in seconds."""
    ensure_base(workdir)
    buildah = require("buildah")
    storage, env = engine_args(workdir)
    started = time.monotonic()
    built = run(
        [
            buildah,
            *storage,
            "bud",
            "--isolation",
            "chroot",
            "--layers",
            "--format",
            "docker",
            "--build-arg",
            f"BASE={BASE_IMAGE}",
            "-f",
            str(ROOT / "relay" / "Dockerfile"),
            "-t",
            IMAGE,
            str(ROOT),
        ],  # fmt: skip
        env,
        BUILD_TIMEOUT_S,
    )
    assert built.returncode == 0, (
        f"buildah bud failed:\n{built.stdout[-4000:]}{built.stderr[-3000:]}"
    )
    return time.monotonic() - started


def container_environment(local: LocalStack) -> dict[str, str]:
    """The relay's environment as the local stack gives it, less the host's own variables."""
    return {
        name: value
        for name, value in local.relay_environment().items()
        if name.startswith(_RELAY_VARIABLES) and name not in _NOT_IN_CONTAINER
    }


@contextmanager
def relay_container(local: LocalStack, workdir: Path, name: str) -> Iterator[list[str]]:
    """Run ``IMAGE`` as the local stack's relay (step 3) until the with-block ends.

    Its output goes to the stack's ``relay.log``. Yields the podman command prefix (with the
    global options) for ``exec``, ``inspect`` and ``healthcheck`` calls on container ``name``.
    """
    podman = require("podman")
    require("runc")
    storage, env = engine_args(workdir)
    prefix = [podman, *storage, "--runtime", "runc", "--cgroup-manager", "cgroupfs"]
    env_file = workdir / "relay.env"
    env_file.touch(mode=0o600)
    env_file.write_text(
        "".join(f"{key}={value}\n" for key, value in container_environment(local).items())
    )
    run([*prefix, "rm", "-f", name], env, COMMAND_TIMEOUT_S)  # one a killed run left behind
    local.log_dir.mkdir(parents=True, exist_ok=True)
    log = open(local.log_dir / "relay.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [
            *prefix,
            "run",
            "--rm",
            "--name",
            name,
            "--network",
            "host",
            "--read-only",
            "--env-file",
            str(env_file),
            IMAGE,
        ],  # fmt: skip
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_sip(local.sip_port, START_TIMEOUT_S, process)
        yield prefix
    finally:
        run([*prefix, "stop", "-t", "10", name], env, COMMAND_TIMEOUT_S)
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            run([*prefix, "rm", "-f", name], env, COMMAND_TIMEOUT_S)
            process.kill()
            process.wait(timeout=STOP_TIMEOUT_S)
        log.close()
